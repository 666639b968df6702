"""Checkpoint keys accepted for trust-bundle syncs, remembered for as long as the bundle itself.

Nearly every sync is a 304 from the bundle this process already holds (``trust.BundleCache``);
what was left of its cost was the checkpoint's key, a database round trip per sync. A key the
database accepted is remembered here for ``seconds`` -- the same ``trust.serve_cached_seconds``
within which a revocation or key change may reach a sync late -- so a key disabled or replaced
through any process stops getting bundles at most that much later. What is remembered is the
SHA-256 the database holds, compared in constant time with the one of the secret presented; a
secret that does not match it is asked of the database (a key rotated a moment ago works at once,
and the old one stops then).

Online verification does not use this: a scan's key is checked in the scan's own statement
(``checkpoints.online``), and a disabled key is refused by the next scan.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from yuekang import apikeys
from yuekang.principals import CheckpointPrincipal


@dataclass(slots=True)
class _Accepted:
    key_hash: bytes
    principal: CheckpointPrincipal
    at: float


@dataclass
class CheckpointKeyCache:
    seconds: float
    max_entries: int = 100_000
    """A province's checkpoints number in the tens of thousands; past this, start again."""
    monotonic: Callable[[], float] = time.monotonic
    _accepted: dict[uuid.UUID, _Accepted] = field(default_factory=dict)

    async def authenticate(
        self,
        key: tuple[uuid.UUID, str],
        lookup: Callable[[uuid.UUID], Awaitable[tuple[bytes, CheckpointPrincipal] | None]],
    ) -> CheckpointPrincipal | None:
        """The checkpoint whose key ``key`` (id, secret) is, or None. ``lookup`` reads an
        enabled checkpoint's stored key hash and principal from the database."""
        checkpoint_id, secret = key
        presented = apikeys.secret_hash(secret)
        now = self.monotonic()
        known = self._accepted.get(checkpoint_id)
        if (
            known is not None
            and now - known.at < self.seconds
            and apikeys.same_hash(known.key_hash, presented)
        ):
            return known.principal
        found = await lookup(checkpoint_id)
        if found is None:
            self._accepted.pop(checkpoint_id, None)
            return None
        # What the database holds now, whichever secret was presented: a wrong one must not
        # make the right one ask again.
        if self.seconds > 0:
            if len(self._accepted) >= self.max_entries:
                self._accepted.clear()
            self._accepted[checkpoint_id] = _Accepted(found[0], found[1], now)
        return found[1] if apikeys.same_hash(found[0], presented) else None
