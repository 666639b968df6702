"""Reference partner systems: small, separate applications that play the other side of the
exchange protocol (docs/EXCHANGE.md) so that Guangdong, and partners building their own side,
have a real counterpart to test against. They share the codec and the mapping table with the
Guangdong service and nothing else: no settings, no database, no keys."""
