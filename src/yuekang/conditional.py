"""Conditional requests (RFC 9110, section 13.1.2): whether an ``If-None-Match`` names a tag."""

from __future__ import annotations


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """True when the header is ``*`` or lists ``etag``: the client's copy is still current."""
    if if_none_match is None:
        return False
    listed = {tag.strip() for tag in if_none_match.split(",")}
    return etag in listed or "*" in listed
