"""Partner systems and their keys.

Trust in a partner is set up by an operator: ``yuekang exchange partner add`` fetches the
partner's key document, prints every key's thumbprint for comparison with the partner's notice,
and stores the keys; ``sync`` fetches again. Nothing received in a package or a request can add a
key.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.audit import service as audit
from yuekang.clock import epoch, from_epoch
from yuekang.codec import formats
from yuekang.codec.bundle import BundleIssuer
from yuekang.codec.errors import InvalidKey
from yuekang.codec.exchange import EncryptionPublicKey
from yuekang.codec.keys import VerificationKey
from yuekang.exceptions import NotFound, ValidationFailed
from yuekang.exchange import adapters
from yuekang.exchange.models import Partner, PartnerKey
from yuekang.principals import Actor

MAX_KEYS = 32


@dataclass(frozen=True)
class DocumentKey:
    kid: str
    purpose: str
    use: str
    state: str
    jwk: dict[str, Any]
    not_before: int | None
    not_after: int | None


@dataclass(frozen=True)
class KeyDocument:
    issuer: str
    format: str
    keys: tuple[DocumentKey, ...]


def parse_key_document(document: Any) -> KeyDocument:
    """Validate a partner's key document (docs/EXCHANGE.md, section 1); each key must load, and
    its ``kid`` must be its thumbprint."""
    if not isinstance(document, Mapping):
        raise ValidationFailed("the key document is not a JSON object", code="bad_key_document")
    issuer, fmt, keys = document.get("issuer"), document.get("format"), document.get("keys")
    if not isinstance(issuer, str) or not 1 <= len(issuer) <= 64:
        raise ValidationFailed("the key document names no issuer", code="bad_key_document")
    if not isinstance(fmt, str) or (fmt != "YK1" and fmt not in formats.registered()):
        raise ValidationFailed(f"unknown code format {fmt!r}", code="bad_key_document")
    if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_KEYS:
        raise ValidationFailed("the key document lists no keys", code="bad_key_document")
    parsed = []
    for entry in keys:
        if not isinstance(entry, Mapping):
            raise ValidationFailed("each key must be an object", code="bad_key_document")
        purpose, use, state = entry.get("purpose"), entry.get("use"), entry.get("state")
        if (purpose, use) not in (("code", "sig"), ("exchange", "sig"), ("exchange", "enc")):
            raise ValidationFailed(
                f"a key must be a code or exchange key, not {purpose!r}/{use!r}",
                code="bad_key_document",
            )
        if state not in ("active", "retired"):
            raise ValidationFailed(f"unknown key state {state!r}", code="bad_key_document")
        jwk = {k: v for k, v in entry.items() if k not in ("purpose", "state", "nbf", "exp")}
        try:
            kid = (
                EncryptionPublicKey.from_jwk(jwk).kid
                if use == "enc"
                else VerificationKey.from_jwk(jwk).kid
            )
        except InvalidKey as exc:
            raise ValidationFailed(f"a key does not load: {exc}", code="bad_key_document") from exc
        if use == "sig" and jwk.get("alg") != "ES256":
            raise ValidationFailed("partner signing keys must be ES256", code="bad_key_document")
        window = [entry.get("nbf"), entry.get("exp")]
        if any(v is not None and (not isinstance(v, int) or isinstance(v, bool)) for v in window):
            raise ValidationFailed("nbf and exp are UTC seconds", code="bad_key_document")
        parsed.append(
            DocumentKey(
                kid=kid,
                purpose=str(purpose),
                use=str(use),
                state=str(state),
                jwk={**jwk, "kid": kid},
                not_before=window[0],
                not_after=window[1],
            )
        )
    return KeyDocument(issuer=issuer, format=fmt, keys=tuple(parsed))


@dataclass(frozen=True)
class PartnerView:
    """What the exchange needs of a partner, loaded once per request."""

    id: str
    issuer: str
    code_format: str
    base_url: str
    circuit_open_until: dt.datetime | None
    sig_keys: dict[str, VerificationKey] = field(default_factory=dict)
    retired_sig: frozenset[str] = frozenset()
    enc_key: EncryptionPublicKey | None = None
    code_keys: dict[str, VerificationKey] = field(default_factory=dict)
    """Retired code keys are here as compromised: their codes are judged ``key_not_valid``."""


def circuit_open_until(open_until: dt.datetime | None, at: dt.datetime) -> dt.datetime | None:
    """Until when a partner's delivery circuit is open at ``at``; None while it is closed."""
    return open_until if open_until is not None and open_until > at else None


def code_key(record: PartnerKey, issuer: str) -> VerificationKey:
    base = VerificationKey.from_jwk(json.loads(record.public_jwk), issuer=issuer)
    return VerificationKey(
        kid=base.kid,
        alg=base.alg,
        public_key=base.public_key,
        issuer=issuer,
        not_before=None if record.not_before is None else epoch(record.not_before),
        not_after=None if record.not_after is None else epoch(record.not_after),
        compromised=record.state != "active",
    )


async def load(session: AsyncSession, partner_id: str) -> PartnerView | None:
    partner = await session.get(Partner, partner_id)
    if partner is None:
        return None
    records = (
        await session.execute(select(PartnerKey).where(PartnerKey.partner_id == partner_id))
    ).scalars()
    sig: dict[str, VerificationKey] = {}
    retired: set[str] = set()
    enc: EncryptionPublicKey | None = None
    code: dict[str, VerificationKey] = {}
    for record in records:
        if record.purpose == "code":
            code[record.kid] = code_key(record, partner.issuer)
        elif record.use == "sig":
            sig[record.kid] = VerificationKey.from_jwk(
                json.loads(record.public_jwk), issuer=partner.issuer
            )
            if record.state != "active":
                retired.add(record.kid)
        elif record.state == "active":
            enc = EncryptionPublicKey.from_jwk(json.loads(record.public_jwk))
    return PartnerView(
        id=partner.id,
        issuer=partner.issuer,
        code_format=partner.code_format,
        base_url=partner.base_url,
        circuit_open_until=partner.circuit_open_until,
        sig_keys=sig,
        retired_sig=frozenset(retired),
        enc_key=enc,
        code_keys=code,
    )


async def all_partners(session: AsyncSession) -> list[PartnerView]:
    ids = (await session.execute(select(Partner.id).order_by(Partner.id))).scalars().all()
    views = [await load(session, partner_id) for partner_id in ids]
    return [view for view in views if view is not None]


@dataclass(frozen=True)
class SyncResult:
    partner: str
    added: list[DocumentKey]
    retired: list[str]


async def save(
    session: AsyncSession,
    *,
    partner_id: str,
    base_url: str | None,
    document: KeyDocument,
    actor: Actor,
    now: dt.datetime,
) -> SyncResult:
    """Register a partner, or bring its keys up to date: new keys are added, keys the partner
    retired or no longer lists are retired here. A key is never brought back from retirement."""
    partner = await session.get(Partner, partner_id, with_for_update=True)
    if partner is None:
        if base_url is None:
            raise NotFound(f"no partner {partner_id!r}", code="partner_not_found")
        partner = Partner(
            id=partner_id,
            issuer=document.issuer,
            code_format=document.format,
            base_url=base_url.rstrip("/"),
            circuit_failures=0,
            created_at=now,
            synced_at=now,
        )
        session.add(partner)
        await session.flush()
    elif partner.issuer != document.issuer:
        raise ValidationFailed(
            f"partner {partner_id!r} is {partner.issuer!r}, the document speaks for "
            f"{document.issuer!r}",
            code="partner_issuer_mismatch",
        )
    else:
        partner.synced_at = now
        if base_url is not None:
            partner.base_url = base_url.rstrip("/")
    existing = {
        record.kid: record
        for record in (
            await session.execute(select(PartnerKey).where(PartnerKey.partner_id == partner_id))
        ).scalars()
    }
    listed = {key.kid: key for key in document.keys}
    added: list[DocumentKey] = []
    retired: list[str] = []
    for kid, key in listed.items():
        record = existing.get(kid)
        if record is None:
            session.add(
                PartnerKey(
                    partner_id=partner_id,
                    kid=kid,
                    purpose=key.purpose,
                    use=key.use,
                    state=key.state,
                    public_jwk=json.dumps(key.jwk, separators=(",", ":")),
                    not_before=None if key.not_before is None else from_epoch(key.not_before),
                    not_after=None if key.not_after is None else from_epoch(key.not_after),
                    added_at=now,
                    retired_at=now if key.state == "retired" else None,
                )
            )
            added.append(key)
        elif record.state == "active" and key.state == "retired":
            record.state, record.retired_at = "retired", now
            retired.append(kid)
    for kid, record in existing.items():
        if kid not in listed and record.state == "active":
            record.state, record.retired_at = "retired", now
            retired.append(kid)
    await audit.record(
        session,
        actor=actor,
        action="exchange.partner_sync",
        subject_type="partner",
        subject_id=partner_id,
        now=now,
        detail={"added": [k.kid for k in added], "retired": retired},
    )
    await session.flush()
    return SyncResult(partner=partner_id, added=added, retired=retired)


async def retire_key(
    session: AsyncSession, *, partner_id: str, kid: str, actor: Actor, now: dt.datetime
) -> None:
    """Retire a partner key here (say, on the partner's notice of a compromise)."""
    record = await session.get(PartnerKey, (partner_id, kid))
    if record is None:
        raise NotFound("no such partner key", code="partner_key_not_found")
    record.state, record.retired_at = "retired", now
    await audit.record(
        session,
        actor=actor,
        action="exchange.partner_key_retire",
        subject_type="partner",
        subject_id=partner_id,
        now=now,
        detail={"kid": kid},
    )


async def bundle_issuers(session: AsyncSession) -> tuple[BundleIssuer, ...]:
    """Partner issuers for the checkpoint trust bundle: each partner's code keys (retired ones
    marked, so checkpoints refuse their codes), its code format and the colour table of its
    adapter. A partner with no installed adapter is left out: nothing here could read its codes."""
    issuers = []
    for view in await all_partners(session):
        adapter = adapters.get(view.id)
        if adapter is None or not view.code_keys:
            continue
        issuers.append(
            BundleIssuer(
                id=view.id,
                issuer=view.issuer,
                format=view.code_format,
                keys=tuple(view.code_keys[kid] for kid in sorted(view.code_keys)),
                colours=dict(adapter.table(adapter.default_table).colours),
            )
        )
    return tuple(issuers)


def tables() -> list[str]:
    """The mapping tables the bundle's colours come from: part of what its content depends on."""
    return sorted(f"{a.id}:{a.default_table}" for a in adapters.registered().values())


async def fingerprint(session: AsyncSession) -> list[tuple[str, str, str]]:
    """Partner code keys and their states: part of what a trust bundle's content depends on."""
    rows = await session.execute(
        select(PartnerKey.partner_id, PartnerKey.kid, PartnerKey.state)
        .where(PartnerKey.purpose == "code")
        .order_by(PartnerKey.partner_id, PartnerKey.kid)
    )
    return [(p, k, s) for p, k, s in rows.all()]


async def key_records(session: AsyncSession, partner_id: str) -> list[PartnerKey]:
    return list(
        (
            await session.execute(
                select(PartnerKey)
                .where(PartnerKey.partner_id == partner_id)
                .order_by(PartnerKey.added_at, PartnerKey.kid)
            )
        ).scalars()
    )
