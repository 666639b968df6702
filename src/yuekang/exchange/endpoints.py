"""The exchange with partner systems (docs/EXCHANGE.md): our key document, inbound packages,
outbound conversions for signed-in residents, and what operators see of the outbox. Every
partner route is ``/v1/exchange/{partner_id}/…`` for a partner an installed adapter knows
(:mod:`yuekang.exchange.adapters`); Macao's are ``/v1/exchange/macao/…``."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from pydantic import ValidationError

from yuekang.codec.exchange import REQUEST_PROOF_HEADER
from yuekang.db import after_commit
from yuekang.deps import Context, CurrentResident, Now, SessionDep, StaffOperator
from yuekang.exceptions import BadRequest, NotFound, Refusal, UnsupportedMediaType
from yuekang.exchange import adapters, partners, repository
from yuekang.exchange import consent as exchange_consent
from yuekang.exchange import inbound as exchange_inbound
from yuekang.exchange import keys as exchange_keys
from yuekang.exchange import outbound as exchange_outbound
from yuekang.exchange import outbox as outbox_service
from yuekang.exchange.adapters import PartnerAdapter
from yuekang.exchange.models import Conversion, OutboxMessage
from yuekang.exchange.schemas import (
    ConsentScreen,
    ConversionRead,
    InboundPackage,
    OutboundRequest,
    OutboxRead,
    PartnerRead,
)
from yuekang.health_codes import qr
from yuekang.openapi import errors
from yuekang.schemas import IDEMPOTENCY_KEY

router = APIRouter(tags=["exchange"])
admin = APIRouter(prefix="/v1/admin", tags=["admin: exchange"])


def _adapter(
    partner_id: Annotated[
        str, Path(description="The partner's id here, e.g. `macao`", examples=["macao"])
    ],
) -> PartnerAdapter:
    # No pattern on the parameter: an id no adapter knows, however it is spelt, is not found.
    adapter = adapters.get(partner_id)
    if adapter is None:
        raise NotFound("no such partner here", code="partner_not_found")
    return adapter


Adapter = Annotated[PartnerAdapter, Depends(_adapter)]


def _takes_conversions(adapter: Adapter) -> PartnerAdapter:
    if not adapter.outbound:
        raise NotFound(
            f"the partner {adapter.id!r} takes no conversions from here", code="partner_not_found"
        )
    return adapter


OutboundAdapter = Annotated[PartnerAdapter, Depends(_takes_conversions)]


def _idempotency_key(value: str | None, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise BadRequest(
                "an Idempotency-Key header is required", code="idempotency_key_required"
            )
        return None
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise BadRequest(
            "Idempotency-Key must be 1-128 printable ASCII characters",
            code="invalid_idempotency_key",
        )
    return value


@router.get("/v1/exchange/keys", responses=errors())
async def key_document(session: SessionDep, context: Context, now: Now) -> dict[str, Any]:
    """Our key document (docs/EXCHANGE.md, section 1): health-code keys (`purpose: code`) and
    exchange keys (`purpose: exchange`, `use: sig` or `enc`). Partners register it once, out of
    band, and re-fetch it to learn rotations."""
    view = await context.keyring.view(now)
    # Our retired keys still verify the codes they signed, so partners treat them as active.
    published = view.jwks.get("keys", [])
    assert isinstance(published, list)
    code_keys = [{**jwk, "purpose": "code", "state": "active"} for jwk in published]
    entries = exchange_keys.document_entries(await exchange_keys.records(session))
    return {"issuer": context.settings.issuer, "format": "YK1", "keys": code_keys + entries}


async def _inbound_body(request: Request) -> tuple[str, bool, bytes]:
    """The package, whether it came as a direct (JSON) call, and the raw body."""
    body = await request.body()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json":
        try:
            parsed = InboundPackage.model_validate_json(body)
        except ValidationError as exc:
            raise BadRequest(
                'the body must be {"package": "<JWE>"}', code="package_malformed"
            ) from exc
        return parsed.package, True, body
    if media == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(body.decode("ascii"), strict_parsing=True, max_num_fields=4)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest("the form is not readable", code="package_malformed") from exc
        values = form.get("package", [])
        if len(values) != 1 or not values[0]:
            raise BadRequest("the form needs one 'package' field", code="package_malformed")
        return values[0], False, body
    raise UnsupportedMediaType(
        "send application/json (a partner) or application/x-www-form-urlencoded (a browser)",
        code="unsupported_media_type",
    )


@router.post(
    "/v1/exchange/{partner_id}/inbound",
    status_code=201,
    response_model=dict[str, Any],
    responses=errors(401, 409, 415, 422, 503),
)
async def inbound(
    adapter: Adapter,
    request: Request,
    response: Response,
    session: SessionDep,
    context: Context,
    now: Now,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> dict[str, Any] | Response:
    """A conversion package from the partner (e.g. Macao): sent by the partner's system itself
    (`application/json` `{"package": …}` with `Yuekang-Signature` and `Idempotency-Key`), or
    carried by the person's browser (a form post of `package`). Answers 201 with the converted
    Guangdong code, whose `source` names the partner's code it came from; a repeated
    `Idempotency-Key` with the same package answers the same (200). Every refusal code is
    listed in docs/EXCHANGE.md, section 7."""
    package, direct, body = await _inbound_body(request)
    key = _idempotency_key(idempotency_key, required=False)
    signed = (
        exchange_inbound.Signed(
            proof=request.headers.get(REQUEST_PROOF_HEADER),
            method=request.method,
            path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            body=body,
        )
        if direct
        else None
    )
    answer = await exchange_inbound.receive_inbound(
        session,
        partner_id=adapter.id,
        package=package,
        signed=signed,
        idempotency_key=key,
        deps=context.exchange_deps(),
        rules=await context.rulebook.current(),
        now=now,
    )
    if isinstance(answer, Refusal):
        return answer.response()
    response.status_code = answer.status_code
    response.headers["Cache-Control"] = "no-store"
    return answer.body


@router.get(
    "/v1/exchange/{partner_id}/consent", response_model=ConsentScreen, responses=errors(404)
)
async def consent_screen(adapter: OutboundAdapter, session: SessionDep) -> ConsentScreen:
    """What the consent screen for a conversion to the partner (e.g. Macao) must show: the
    recipient, every field sent, and the text (zh-Hans, zh-Hant, en, pt). `available` is false
    until the partner is registered."""
    partner = await partners.load(session, adapter.id)
    return ConsentScreen.model_validate(exchange_consent.consent_screen(partner, adapter.id))


def _read(conversion: Conversion, message: OutboxMessage | None) -> ConversionRead:
    return ConversionRead(
        id=conversion.id,
        direction=conversion.direction,
        partner=conversion.partner_id,
        state=conversion.state,
        fields=json.loads(conversion.fields),
        consent_id=conversion.consent_id,
        created_at=conversion.created_at,
        completed_at=conversion.completed_at,
        error_code=conversion.error_code,
        attempts=None if message is None else message.attempts,
        next_attempt_at=None
        if message is None or message.state != "pending"
        else message.next_attempt_at,
        partner_code=conversion.partner_code,
        partner_code_expires_at=conversion.partner_code_expires_at,
        code_id=conversion.code_id,
    )


@router.post(
    "/v1/exchange/{partner_id}/outbound",
    status_code=202,
    response_model=ConversionRead,
    responses=errors(401, 404, 409, 422, 503),
)
async def outbound(
    adapter: OutboundAdapter,
    body: OutboundRequest,
    response: Response,
    resident_id: CurrentResident,
    session: SessionDep,
    context: Context,
    now: Now,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> ConversionRead | Response:
    """Convert the signed-in resident's green code into the partner's code (e.g. a Macao code).
    The consent must name the recipient (Macao: `MO`) and exactly the fields of
    `GET /v1/exchange/{partner_id}/consent`. Checked now
    (status green, a negative test within the window, no travel outside the region) and again
    when the message leaves; answered 202 with the conversion `queued`, delivered by the outbox
    (retried while the partner is down). Poll `GET /v1/exchange/{partner_id}/outbound/{id}` for
    the partner's code.
    A repeated `Idempotency-Key` answers the same conversion (200)."""
    key = _idempotency_key(idempotency_key, required=True)
    assert key is not None
    queued = await exchange_outbound.request_outbound(
        session,
        partner_id=adapter.id,
        resident_id=resident_id,
        consent=exchange_consent.OutboundConsent(
            recipient=body.consent.recipient,
            fields=body.consent.fields,
            accepted=body.consent.accepted,
            text_version=body.consent.text_version,
        ),
        idempotency_key=key,
        deps=context.exchange_deps(),
        rules=await context.rulebook.current(),
        now=now,
    )
    if isinstance(queued, Refusal):
        return queued.response()
    conversion, replayed = queued
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    else:
        after_commit(session, context.outbox.kick)
    _, message = await exchange_outbound.get_outbound(
        session, resident_id=resident_id, partner_id=adapter.id, conversion_id=conversion.id
    )
    return _read(conversion, message)


@router.get(
    "/v1/exchange/{partner_id}/outbound/{conversion_id}.png",
    responses={**errors(401, 404), 200: {"content": {"image/png": {}}}},
    response_class=Response,
)
async def outbound_code_image(
    adapter: OutboundAdapter,
    conversion_id: uuid.UUID,
    resident_id: CurrentResident,
    session: SessionDep,
) -> Response:
    """The delivered partner's code as a QR image, for the resident who asked for it (404 until
    it is delivered). The code is the partner's, signed by the partner: we only draw it."""
    conversion, _ = await exchange_outbound.get_outbound(
        session, resident_id=resident_id, partner_id=adapter.id, conversion_id=conversion_id
    )
    if conversion.partner_code is None:
        raise NotFound("the partner's code has not arrived yet", code="conversion_not_delivered")
    colour = "green" if conversion.state == "delivered" else "red"
    image = await asyncio.to_thread(qr.render_png, conversion.partner_code, colour)
    return Response(image, media_type="image/png", headers={"Cache-Control": "private, no-store"})


@router.get(
    "/v1/exchange/{partner_id}/outbound/{conversion_id}",
    response_model=ConversionRead,
    responses=errors(401, 404),
)
async def outbound_status(
    adapter: OutboundAdapter,
    conversion_id: uuid.UUID,
    resident_id: CurrentResident,
    session: SessionDep,
) -> ConversionRead:
    """A conversion to the partner: `queued`, `delivering`, `delivered` (with `partner_code`, the
    partner's code to show), `refused` (`error_code` says why) or `failed`."""
    conversion, message = await exchange_outbound.get_outbound(
        session, resident_id=resident_id, partner_id=adapter.id, conversion_id=conversion_id
    )
    return _read(conversion, message)


@router.get("/v1/exchange/conversions", response_model=list[ConversionRead], responses=errors(401))
async def my_conversions(resident_id: CurrentResident, session: SessionDep) -> list[ConversionRead]:
    """The signed-in resident's conversions, both ways, newest first."""
    return [
        _read(c, None) for c in await repository.list_conversions(session, resident_id=resident_id)
    ]


@admin.get("/exchange/outbox", response_model=list[OutboxRead], responses=errors(401, 403))
async def outbox(
    operator: StaffOperator, session: SessionDep, state: str | None = None
) -> list[OutboxRead]:
    """Messages to partners and their delivery state (newest first, at most 200): nothing
    personal, only ids, states, attempts and errors."""
    return [
        OutboxRead(
            id=m.id,
            partner=m.partner_id,
            conversion_id=m.conversion_id,
            state=m.state,
            attempts=m.attempts,
            next_attempt_at=m.next_attempt_at,
            last_error=m.last_error,
            last_attempt_at=m.last_attempt_at,
            created_at=m.created_at,
            delivered_at=m.delivered_at,
        )
        for m in await outbox_service.recent(session, state=state)
    ]


@admin.get("/exchange/partners", response_model=list[PartnerRead], responses=errors(401, 403))
async def list_partners(
    operator: StaffOperator, session: SessionDep, now: Now
) -> list[PartnerRead]:
    """Registered partners, their keys and the state of their delivery circuit."""
    result = []
    for view in await partners.all_partners(session):
        keys = await partners.key_records(session, view.id)
        open_until = partners.circuit_open_until(view.circuit_open_until, now)
        result.append(
            PartnerRead(
                id=view.id,
                issuer=view.issuer,
                code_format=view.code_format,
                base_url=view.base_url,
                circuit="closed" if open_until is None else "open",
                circuit_open_until=open_until,
                keys=[
                    {"kid": k.kid, "purpose": k.purpose, "use": k.use, "state": k.state}
                    for k in keys
                ],
            )
        )
    return result
