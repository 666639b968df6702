"""The reference registry answering in-process: what ``yuekang serve`` proofs against in
development, so that it works without a second process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from yuekang.clock import Clock, SystemClock, epoch
from yuekang.codec import proofing as wire
from yuekang.residents.proofing import ProofingResult, ProofingUnavailable, new_check
from yuekang_reference.registry.store import RegistryStore


@dataclass
class BuiltinProofing:
    """:class:`yuekang.residents.proofing.IdentityProofing` over a :class:`RegistryStore`,
    answering exactly as ``yuekang partner registry serve`` would over HTTP: the same rule, the
    same refusals, the same log. :meth:`start` (or the first check) makes the tables and loads
    the sample people into an empty register."""

    store: RegistryStore
    clock: Clock = field(default_factory=SystemClock)
    client: str = "builtin"
    """The caller as the registry's log names it."""
    name: str = "builtin"
    _ready: bool = field(default=False, init=False, repr=False)
    _ready_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def check(
        self, *, person: wire.Person, phone: str | None, purpose: wire.Purpose
    ) -> ProofingResult:
        request = new_check(person, phone, purpose)
        try:
            # Through the wire format and back: a request the served registry would refuse as
            # malformed is refused here too, instead of being judged.
            request = wire.parse_check_request(request.to_json())
        except wire.ProofingProtocolError as exc:
            raise ProofingUnavailable(f"the registry refused the check ({exc.code})") from exc
        try:
            await self.start()
            now = epoch(self.clock.now())
            answer = await self.store.answer(request, client=self.client, now=now)
        except SQLAlchemyError as exc:
            raise ProofingUnavailable("the built-in registry's database failed") from exc
        assert answer is not None  # no nonce: never a replay
        return ProofingResult(answer.identity == "match", answer.phone, request.check_id)

    async def start(self) -> None:
        """Make the tables and seed the samples; safe to call again."""
        async with self._ready_lock:
            if not self._ready:
                await self.store.start()
                await self.store.seed_samples()
                self._ready = True

    async def close(self) -> None:
        await self.store.close()
