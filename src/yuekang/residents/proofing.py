"""Identity proofing behind one small port: is this a real person, and is this phone theirs?

``IdentityProofing.check`` asks an identity registry (population data and the carriers'
real-name registrations, docs/IDENTITY.md) about one person and, optionally, one phone, and
answers match / no match -- never a record. Three implementations:

- :class:`HttpProofing` speaks the ``YKP1`` protocol (:mod:`yuekang.codec.proofing`) to an
  external verification service: signed requests, a timeout per attempt, retries within a total
  budget, signed answers bound to the request;
- the built-in development registry (``yuekang_reference.registry``), the same reference registry
  that ``yuekang partner registry serve`` runs as its own process, used in-process so that
  ``yuekang serve`` works out of the box (production refuses it);
- :class:`MemoryProofing`, an in-memory fake for tests.

Every failure to get an answer is :class:`ProofingUnavailable`: the caller binds nothing and says
``503 proofing_unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import httpx

from yuekang.codec import proofing as wire
from yuekang.codec.proofing import Person, PhoneAnswer, Purpose, Subscription

log = logging.getLogger("yuekang.proofing")


class ProofingUnavailable(Exception):
    """No answer could be had from the registry (down, slow, refusing us, or answering
    something that does not verify)."""


@dataclass(frozen=True, slots=True)
class ProofingResult:
    identity_matches: bool
    phone: PhoneAnswer
    reference: str
    """The check's id, kept in our audit trail and the registry's log alike."""

    @property
    def phone_matches(self) -> bool:
        return self.phone == "match"


class IdentityProofing(Protocol):
    name: str
    """Which backend answered, for the audit trail (``http``, ``builtin``, ``memory``)."""

    async def check(
        self, *, person: Person, phone: str | None, purpose: Purpose
    ) -> ProofingResult: ...


@runtime_checkable
class Managed(Protocol):
    """A backend with a lifetime of its own (the built-in registry's database)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def new_check(person: Person, phone: str | None, purpose: Purpose) -> wire.CheckRequest:
    return wire.CheckRequest(
        check_id=str(uuid.uuid4()), purpose=purpose, person=person, phone=phone
    )


@dataclass
class MemoryProofing:
    """A registry held in memory, answering by the protocol's own rule (:func:`wire.judge`).
    ``available = False`` makes every check fail as a registry that is down would."""

    people: dict[tuple[str, str], Person] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    available: bool = True
    checks: list[wire.CheckRequest] = field(default_factory=list)
    name: str = "memory"

    def add(self, person: Person, *, phone: str | None = None) -> None:
        """A person in the population register and, with ``phone``, the number registered to
        them at their carrier."""
        self.people[(person.doc_type, person.doc_number)] = person
        if phone is not None:
            self.subscriptions[phone] = Subscription(
                phone, person.doc_type, person.doc_number, person.name
            )

    async def check(self, *, person: Person, phone: str | None, purpose: Purpose) -> ProofingResult:
        if not self.available:
            raise ProofingUnavailable("the registry is down")
        request = new_check(person, phone, purpose)
        self.checks.append(request)
        identity, phone_answer = wire.judge(
            request,
            self.people.get((person.doc_type, person.doc_number)),
            self.subscriptions.get(phone) if phone else None,
        )
        return ProofingResult(identity == "match", phone_answer, request.check_id)


_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass
class HttpProofing:
    """The ``YKP1`` client (docs/IDENTITY.md). Each attempt has ``timeout`` seconds; failures
    that may pass (no connection, a timeout, 429, 5xx) are retried with a short backoff while the
    whole call stays within ``budget`` seconds; anything else is :class:`ProofingUnavailable` at
    once, and logged, since it means we and the registry disagree about the protocol."""

    client: httpx.AsyncClient
    url: str
    client_id: str
    secret: bytes
    timeout: float = 2.0
    attempts: int = 3
    budget: float = 5.0
    backoff: float = 0.2
    name: str = "http"

    async def check(self, *, person: Person, phone: str | None, purpose: Purpose) -> ProofingResult:
        request = new_check(person, phone, purpose)
        body = request.to_json()
        deadline = time.monotonic() + self.budget
        last = "no attempt was made"
        for attempt in range(self.attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                answer = await self._attempt(request, body, seconds=min(self.timeout, remaining))
            except _Retry as retry:
                last = retry.why
                wait = max(retry.after, self.backoff * 2**attempt)
                if attempt + 1 < self.attempts and time.monotonic() + wait < deadline:
                    await asyncio.sleep(wait)
                    continue
                break
            return ProofingResult(answer.identity == "match", answer.phone, request.check_id)
        log.warning("identity registry unavailable: %s", last)
        raise ProofingUnavailable(last)

    async def _attempt(
        self, request: wire.CheckRequest, body: bytes, *, seconds: float
    ) -> wire.CheckAnswer:
        date = int(time.time())
        nonce = secrets.token_urlsafe(16)
        headers = {
            "Content-Type": "application/json",
            wire.CLIENT_HEADER: self.client_id,
            wire.DATE_HEADER: str(date),
            wire.NONCE_HEADER: nonce,
            wire.SIGNATURE_HEADER: wire.request_signature(
                self.secret,
                method="POST",
                path=wire.PATH,
                client=self.client_id,
                date=date,
                nonce=nonce,
                body=body,
            ),
        }
        try:
            # httpx's timeout bounds each read, not the answer: a registry that trickles bytes
            # would outlast the budget without the outer bound.
            async with asyncio.timeout(seconds):
                response = await self.client.post(
                    self.url.rstrip("/") + wire.PATH,
                    content=body,
                    headers=headers,
                    timeout=seconds,
                )
        except TimeoutError as exc:
            raise _Retry("the registry did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise _Retry(f"{exc.__class__.__name__} from the registry") from exc
        if response.status_code in _RETRYABLE_STATUS:
            raise _Retry(f"the registry answered {response.status_code}", _retry_after(response))
        if response.status_code != 200:
            # Only the status and the registry's error code: a registry that echoes the
            # request in its refusal would put a name and a document number in the log.
            log.error(
                "the identity registry refused our check (%d, %s)",
                response.status_code,
                _error_code(response),
            )
            raise ProofingUnavailable(f"the registry refused the check ({response.status_code})")
        expected = wire.response_signature(
            self.secret, status=200, nonce=nonce, body=response.content
        )
        if not wire.signature_matches(expected, response.headers.get(wire.SIGNATURE_HEADER)):
            log.error("the identity registry's answer does not carry our nonce's signature")
            raise ProofingUnavailable("the registry's answer is not signed for this check")
        try:
            return wire.parse_check_answer(response.content, check_id=request.check_id)
        except wire.ProofingProtocolError as exc:
            log.error("the identity registry's answer is malformed: %s", exc.message)
            raise ProofingUnavailable("the registry's answer is malformed") from exc


class _Retry(Exception):
    def __init__(self, why: str, after: float = 0.0) -> None:
        super().__init__(why)
        self.why = why
        self.after = after


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isascii() and value.isdigit() else 0.0


_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,40}")


def _error_code(response: httpx.Response) -> str:
    """The registry's error code (YKP1's ``{"error": {"code": ...}}``) when it is a short token,
    else "no code": never its message or anything else it sent back."""
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return "no code"
    if isinstance(code, str) and _ERROR_CODE.fullmatch(code):
        return code
    return "no code"
