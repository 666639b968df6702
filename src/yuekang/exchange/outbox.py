"""The transactional outbox: delivering conversions to a partner exactly once.

A message is written in the transaction that decided to send it, so nothing is sent for a request
that rolled back and nothing decided is forgotten. Every server process runs :func:`run` and
claims due messages with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer
anyway), so two processes never send the same message at the same time. Each attempt carries the
message id as its ``Idempotency-Key``: the partner answers a repeat with its first answer, which
is what makes delivery exactly once even when we crash between its answer and our commit.

Failures (network, timeout, ``5xx``) back off exponentially with full jitter; a partner's circuit
opens after ``circuit_failures`` consecutive failures, shared by every process through the
``partners`` row, and messages wait while it is open. A ``4xx`` answer is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from yuekang import logs, tracing
from yuekang.audit import service as audit
from yuekang.clock import Clock, epoch, from_epoch
from yuekang.codec.exchange import REQUEST_PROOF_HEADER, new_jti, seal_package, sign_request
from yuekang.config import ExchangeSettings
from yuekang.db import database_unavailable
from yuekang.exceptions import YuekangError
from yuekang.exchange import keys as exchange_keys
from yuekang.exchange import messages, partners
from yuekang.exchange.common import ExchangeDeps, partner_terms
from yuekang.exchange.models import Conversion, OutboxMessage, Partner
from yuekang.exchange.outbound import check_outbound
from yuekang.exchange.records import audit_conversion
from yuekang.health_codes import service as health_codes
from yuekang.health_status import service as health_status
from yuekang.health_status.models import HealthStatus
from yuekang.health_status.rulebook import RuleBook
from yuekang.principals import Actor
from yuekang.residents.documents import local_date
from yuekang.residents.models import Identity, Resident
from yuekang.rules import RuleSet

log = logging.getLogger(__name__)
INBOUND_PATH = "/v1/exchange/guangdong/inbound"


@dataclass(frozen=True)
class Prepared:
    message_id: uuid.UUID
    url: str
    body: bytes
    headers: dict[str, str]
    partner_id: str
    request_id: str | None
    """The request that queued the message: the attempt's log lines and the partner see it."""


async def recent(
    session: AsyncSession, *, state: str | None, limit: int = 200
) -> list[OutboxMessage]:
    """The newest messages (in ``state``, if given), for staff watching delivery."""
    query = select(OutboxMessage).order_by(OutboxMessage.created_at.desc()).limit(limit)
    if state is not None:
        query = query.where(OutboxMessage.state == state)
    return list((await session.execute(query)).scalars())


def backoff(attempts: int, settings: ExchangeSettings, rng: random.Random) -> float:
    """Seconds before the next attempt: exponential, capped, with jitter (between half the base
    and the ceiling) so a partner that comes back is not met by every queued message at once."""
    ceiling = min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2 ** (attempts - 1))
    return rng.uniform(
        settings.backoff_base_seconds / 2, max(ceiling, settings.backoff_base_seconds)
    )


async def claim(
    session: AsyncSession, *, now: dt.datetime, lease: dt.timedelta, token: str, limit: int = 10
) -> list[uuid.UUID]:
    """Due messages, leased to the holder of ``token`` until ``now + lease``."""
    query = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.state == "pending",
            OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now),
        )
        .order_by(OutboxMessage.next_attempt_at)
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list((await session.execute(query)).scalars())
    if ids:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(locked_until=now + lease, lease=token)
        )
    return ids


async def _finish(
    session: AsyncSession,
    message: OutboxMessage,
    conversion: Conversion,
    *,
    state: str,
    conversion_state: str,
    error: str | None,
    now: dt.datetime,
    action: str,
) -> None:
    message.state = state
    _release(message)
    message.last_error = error
    conversion.state = conversion_state
    conversion.error_code = error
    conversion.completed_at = now
    await audit_conversion(
        session,
        actor=Actor.system("outbox"),
        action=action,
        conversion=conversion,
        consent=None if conversion.consent_id is None else str(conversion.consent_id),
        now=now,
        extra={"attempts": message.attempts, **({"code": error} if error else {})},
    )


def _release(message: OutboxMessage) -> None:
    message.locked_until = None
    message.lease = None


def _later(
    message: OutboxMessage,
    *,
    error: str,
    now: dt.datetime,
    delay: float,
) -> None:
    """Try again after ``delay`` seconds, keeping why."""
    _release(message)
    message.last_error = error[:200]
    message.next_attempt_at = now + dt.timedelta(seconds=delay)


async def prepare(
    session: AsyncSession,
    message_id: uuid.UUID,
    *,
    token: str,
    deps: ExchangeDeps,
    settings: ExchangeSettings,
    rules: RuleSet,
    now: dt.datetime,
) -> Prepared | None:
    """Everything for one attempt, or None when the message needs no attempt now (delivered
    meanwhile, circuit open, too old, or the person no longer qualifies)."""
    message = await session.get(
        OutboxMessage, message_id, with_for_update=True, populate_existing=True
    )
    if message is None or message.state != "pending" or message.lease != token:
        return None  # delivered meanwhile, or our lease ran out and another process holds it
    # The lease runs from now: an attempt (one request, bounded by its timeout) ends well
    # within it, so nobody else can take the message while we send it.
    message.locked_until = now + dt.timedelta(seconds=settings.lease_seconds)
    conversion = await session.get(Conversion, message.conversion_id)
    assert conversion is not None
    assert conversion.resident_id is not None
    partner = await partners.load(session, message.partner_id)
    if now - message.created_at > dt.timedelta(seconds=settings.max_age_seconds):
        await _finish(
            session,
            message,
            conversion,
            state="failed",
            conversion_state="failed",
            error="partner_unreachable",
            now=now,
            action="exchange.outbound.failed",
        )
        return None
    if partner is None or partner.enc_key is None:
        _later(
            message,
            error="partner_not_configured",
            now=now,
            delay=settings.backoff_max_seconds,
        )
        return None
    open_until = partners.circuit_open_until(partner.circuit_open_until, now)
    if open_until is not None:
        _release(message)
        message.next_attempt_at = open_until
        return None
    # The person must still qualify when the message leaves, not only when it was queued: a
    # status that turned red while the partner was down must not become a green code there.
    try:
        await check_outbound(
            session,
            resident_id=conversion.resident_id,
            status=await health_status.current(
                session, conversion.resident_id, rules=rules, now=now
            ),
            terms=partner_terms(rules, partner.id),
            now=now,
        )
        issued = await health_codes.issue_code(
            session,
            resident_id=conversion.resident_id,
            idempotency_key=None,
            keyring=deps.keyring,
            issuer=deps.issuer,
            lifetime=deps.code_lifetime,
            rules=rules,
            now=now,
            # Each attempt sends a code made for it, with its whole lifetime ahead.
            reuse=False,
        )
    except YuekangError as exc:
        if exc.status_code >= 500:
            # Ours to fix (no signing key, say), not the person's: try again later.
            _later(message, error=exc.code, now=now, delay=settings.backoff_max_seconds)
            return None
        await _finish(
            session,
            message,
            conversion,
            state="refused",
            conversion_state="refused",
            error=exc.code,
            now=now,
            action="exchange.outbound.refused",
        )
        return None
    ours = await exchange_keys.our_keys(
        session, passphrase=deps.passphrase, cache=deps.key_cache, now=now
    )
    if ours is None:
        _later(message, error="no_exchange_keys", now=now, delay=settings.backoff_max_seconds)
        return None
    payload = json.loads(
        deps.pii.decrypt(
            message.payload_ct, key_id=message.key_id, context=f"outbox.payload:{message.id}"
        )
    )
    subject = await _subject(session, conversion.resident_id, deps=deps, now=now)
    status = issued.code
    record = await _status_record(session, conversion.resident_id)
    request = messages.ConversionRequest.model_validate(
        {
            "cid": str(conversion.id),
            "subject": subject,
            "source": {"code": status.qr_text},
            "nat": record,
            "travel": {"outside_region_14d": False},
            "consent": payload["consent"],
        }
    )
    claims = messages.conversion_claims(
        request,
        iss=deps.issuer,
        aud=partner.issuer,
        iat=epoch(now),
        exp=epoch(now) + settings.package_lifetime_seconds,
        jti=new_jti(),
    )
    with tracing.span("yuekang.exchange.seal", partner=partner.id):
        package = seal_package(claims, signer=ours.signer, recipient=partner.enc_key)
        body = messages.package_body(package)
        key = str(message.id)
        proof = sign_request(
            signer=ours.signer,
            issuer=deps.issuer,
            method="POST",
            path=INBOUND_PATH,
            body=body,
            idempotency_key=key,
            now=epoch(now),
        )
    message.attempts += 1
    message.last_attempt_at = now
    conversion.state = "delivering"
    await audit_conversion(
        session,
        actor=Actor.system("outbox"),
        action="exchange.outbound.sent",
        conversion=conversion,
        consent=payload["consent"]["id"],
        now=now,
        extra={"attempt": message.attempts, "code": status.code_id},
    )
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": key,
        REQUEST_PROOF_HEADER: proof,
    }
    if message.request_id is not None:
        headers[logs.REQUEST_ID_HEADER] = message.request_id
    return Prepared(
        message_id=message.id,
        url=partner.base_url + INBOUND_PATH,
        body=body,
        headers=headers,
        partner_id=partner.id,
        request_id=message.request_id,
    )


async def _subject(
    session: AsyncSession, resident_id: uuid.UUID, *, deps: ExchangeDeps, now: dt.datetime
) -> dict[str, str]:
    """The person's identity in the exchange vocabulary; every decryption is audited."""
    identity = await session.get(Identity, resident_id)
    resident = await session.get(Resident, resident_id)
    assert identity is not None
    assert resident is not None
    # check_outbound refused anyone without a phone of their own (a family member's record).
    assert resident.phone_ct is not None
    assert resident.phone_key_id is not None

    def read(column: str, ciphertext: bytes) -> str:
        return deps.pii.decrypt(
            ciphertext, key_id=identity.key_id, context=f"identities.{column}:{resident_id}"
        )

    subject = {
        "name": read("name", identity.name_ct),
        "doc_type": identity.doc_type,
        "doc_number": read("doc_number", identity.doc_number_ct),
        "birth_date": read("birth_date", identity.birth_date_ct),
        "phone": deps.pii.decrypt(
            resident.phone_ct,
            key_id=resident.phone_key_id,
            context=f"residents.phone:{resident_id}",
        ),
    }
    await audit.record(
        session,
        actor=Actor.system("outbox"),
        action="identity.read",
        subject_type="resident",
        subject_id=str(resident_id),
        now=now,
        detail={"fields": ["name", "doc_number", "birth_date", "phone"], "purpose": "exchange"},
    )
    return subject


async def _status_record(session: AsyncSession, resident_id: uuid.UUID) -> dict[str, str] | None:
    status = await session.get(HealthStatus, resident_id)
    if status is None or status.nat_sampled_at is None or status.nat_result is None:
        return None
    return {
        "sampled_on": local_date(status.nat_sampled_at).isoformat(),
        "result": status.nat_result,
    }


RETRY_STATUSES = frozenset({408, 425, 429})
"""Answers below 500 that say "not now" rather than "no"."""
KEY_TROUBLE = frozenset(
    {"wrong_recipient_key", "unknown_sender_key", "retired_sender_key", "request_too_old"}
)
"""Refusals that mean the two sides' keys (or clocks) disagree -- a rotation not yet synced by
an operator -- not that the person does not qualify: retried until fixed or too old."""


async def record_result(
    session: AsyncSession,
    message_id: uuid.UUID,
    *,
    token: str,
    response: httpx.Response | None,
    error: str | None,
    settings: ExchangeSettings,
    rng: random.Random,
    now: dt.datetime,
) -> str:
    """Store what the attempt came to; the message's new state (``stale`` when the lease was
    lost meanwhile: the holder of the new lease records its own attempt)."""
    message = await session.get(
        OutboxMessage, message_id, with_for_update=True, populate_existing=True
    )
    assert message is not None
    if message.state != "pending" or message.lease != token:
        return "stale"
    conversion = await session.get(Conversion, message.conversion_id)
    partner = await session.get(Partner, message.partner_id, with_for_update=True)
    assert conversion is not None
    assert partner is not None
    status = None if response is None else response.status_code
    body = {} if response is None else _json(response)
    error_body = body.get("error")
    code = error_body.get("code") if isinstance(error_body, dict) else None
    if status is not None and status < 500 and status not in RETRY_STATUSES:
        # The partner answered: it is up, whatever it said.
        partner.circuit_failures = 0
        partner.circuit_open_until = None
        if status in (200, 201) and isinstance(body.get("code"), str):
            message.state = "delivered"
            message.delivered_at = now
            _release(message)
            message.last_error = None
            conversion.state = "delivered"
            conversion.completed_at = now
            conversion.partner_code = body["code"]
            expires = body.get("expires_at")
            if isinstance(expires, int) and not isinstance(expires, bool):
                conversion.partner_code_expires_at = from_epoch(expires)
            await audit_conversion(
                session,
                actor=Actor.system("outbox"),
                action="exchange.outbound.delivered",
                conversion=conversion,
                consent=None if conversion.consent_id is None else str(conversion.consent_id),
                now=now,
                extra={"attempts": message.attempts},
            )
            return "delivered"
        if 400 <= status < 500 and code not in KEY_TROUBLE:
            await _finish(
                session,
                message,
                conversion,
                state="refused",
                conversion_state="refused",
                error=str(code or f"http_{status}")[:64],
                now=now,
                action="exchange.outbound.refused",
            )
            return "refused"
        why = (
            f"partner_keys: {code}; run yuekang exchange partner sync" if code else f"http_{status}"
        )
    else:
        # Down, overloaded or unreachable: that is what the circuit counts.
        partner.circuit_failures += 1
        if partner.circuit_failures >= settings.circuit_failures:
            partner.circuit_open_until = now + dt.timedelta(seconds=settings.circuit_open_seconds)
        why = error or (f"http_{status}: {code}" if code else f"http_{status}")
    _later(message, error=why, now=now, delay=backoff(message.attempts, settings, rng))
    open_until = partners.circuit_open_until(partner.circuit_open_until, message.next_attempt_at)
    if open_until is not None:
        message.next_attempt_at = open_until
    conversion.state = "queued"
    return "retry"


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Outbox:
    """The delivery loop of one process."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        deps: ExchangeDeps,
        settings: ExchangeSettings,
        rulebook: RuleBook,
        clock: Clock,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._http = http
        self._deps = deps
        self._settings = settings
        self._rulebook = rulebook
        self._clock = clock
        self._wake = asyncio.Event()
        self._rng = random.Random()  # noqa: S311 -- jitter, not a secret

    def kick(self) -> None:
        """Look for work now instead of at the next poll (a message was just queued)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Attempt every due message once; how many were attempted."""
        now = self._clock.now()
        token = secrets.token_hex(16)
        async with self._sessionmaker() as session, session.begin():
            ids = await claim(
                session,
                now=now,
                lease=dt.timedelta(seconds=self._settings.lease_seconds),
                token=token,
            )
        attempted = 0
        for message_id in ids:
            try:
                attempted += await self._attempt(message_id, token)
            except Exception as exc:
                # One message that cannot be prepared (a corrupt payload, say) must not hold
                # back the others; its lease runs out and it is tried again later.
                if database_unavailable(exc):
                    log.warning("outbox message %s not attempted: database unavailable", message_id)
                else:
                    log.exception("outbox message %s could not be attempted", message_id)
        return attempted

    async def _attempt(self, message_id: uuid.UUID, token: str) -> int:
        with tracing.span("yuekang.outbox.deliver") as span:
            prepared = await self._prepare(message_id, token)
            if prepared is None:
                return 0
            if span is not None and prepared.request_id is not None:
                span.set_attribute(tracing.REQUEST_ID_ATTRIBUTE, prepared.request_id)
            await self._send(message_id, token, prepared)
        return 1

    async def _prepare(self, message_id: uuid.UUID, token: str) -> Prepared | None:
        now = self._clock.now()
        rules = await self._rulebook.current()
        async with self._sessionmaker() as session, session.begin():
            prepared = await prepare(
                session,
                message_id,
                token=token,
                deps=self._deps,
                settings=self._settings,
                rules=rules,
                now=now,
            )
        return prepared

    async def _send(self, message_id: uuid.UUID, token: str, prepared: Prepared) -> None:
        with logs.bound(prepared.request_id):
            response: httpx.Response | None = None
            error: str | None = None
            with tracing.span("yuekang.partner.call", partner=prepared.partner_id) as span:
                try:
                    response = await self._http.post(
                        prepared.url,
                        content=prepared.body,
                        headers=prepared.headers,
                        timeout=self._settings.request_timeout_seconds,
                    )
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"[:200]
                if span is not None and response is not None:
                    span.set_attribute("http.response.status_code", response.status_code)
            async with self._sessionmaker() as session, session.begin():
                outcome = await record_result(
                    session,
                    message_id,
                    token=token,
                    response=response,
                    error=error,
                    settings=self._settings,
                    rng=self._rng,
                    now=self._clock.now(),
                )
            log.info(
                "outbox message %s: %s",
                message_id,
                outcome,
                extra={"partner": prepared.partner_id, "outcome": outcome},
            )

    async def run(self) -> None:
        """Deliver until cancelled; one failing round never stops the loop."""
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if database_unavailable(exc):
                    # An outage is not a bug: one line, not a traceback per poll.
                    log.warning("outbox round skipped: the database is unavailable")
                else:
                    log.exception("outbox round failed; trying again")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.poll_seconds)
