"""Reference systems that stand in for what yuekang talks to: partner health-code systems and
the identity registry. They run in development, in the tests and in interop drills, and are not
part of the service's wheel (pyproject.toml builds ``src/yuekang`` only), so a production image
does not ship test doubles.

Each is a small, separate application playing the other side of a protocol (docs/EXCHANGE.md,
docs/IDENTITY.md), so that Guangdong, and partners building their own side, have a real
counterpart to test against. They share the codec and the mapping table with the Guangdong
service and nothing else: no settings, no database, no keys. ``yuekang partner ...`` runs them,
and says so in one line where they are not installed."""
