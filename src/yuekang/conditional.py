"""Conditional requests (RFC 9110, section 13.1.2): whether an ``If-None-Match`` names a tag."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """True when the header is ``*`` or lists ``etag``: the client's copy is still current."""
    if if_none_match is None:
        return False
    listed = {tag.strip() for tag in if_none_match.split(",")}
    return etag in listed or "*" in listed


@functools.cache
def release() -> str:
    """A digest of this release's code: every module of the package, as installed. A tag made
    from an answer's inputs (not from the answer) includes it, so a release that changes how an
    answer is made from the same inputs changes every tag; processes and nodes running the same
    release agree on it."""
    package = Path(__file__).parent
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
