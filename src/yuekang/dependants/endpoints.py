"""Family members' paths: the guardian's (/v1/me/dependants), the adult family member's own
(/v1/me/guardians) and counter staff's (/v1/admin/dependants)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response, status

from yuekang.auth.endpoints import client_address
from yuekang.auth.service import normalize_phone
from yuekang.codec.reasons import pick_language
from yuekang.dependants import service
from yuekang.dependants.schemas import (
    ConsentCode,
    CounterConsent,
    DependantCreate,
    DependantRead,
    DependantRules,
    GuardianRead,
)
from yuekang.deps import Context, CurrentResident, Now, SessionDep, StaffOperator
from yuekang.exceptions import NotFound, Refusal
from yuekang.fastlane import direct, nothing_to_list
from yuekang.health_codes import service as health_codes
from yuekang.health_codes.endpoints import code_response, image_response
from yuekang.health_codes.schemas import CodeRead
from yuekang.health_status import service as health_status
from yuekang.health_status.endpoints import status_answer
from yuekang.health_status.schemas import MyStatusRead
from yuekang.openapi import errors
from yuekang.principals import Actor

router = APIRouter(prefix="/v1/me", tags=["family members"])
admin = APIRouter(prefix="/v1/admin/dependants", tags=["admin: family members"])


def _read(view: service.DependantView) -> DependantRead:
    return DependantRead.model_validate(asdict(view))


@router.get("/dependants", response_model=list[DependantRead], responses=errors(401))
@direct(nothing_to_list(service.ANY_LIVE))
async def list_dependants(
    resident_id: CurrentResident, session: SessionDep, context: Context, now: Now
) -> list[DependantRead]:
    """The family members this account holds codes for, each with their status colour."""
    views = await service.listing(
        session, guardian_id=resident_id, rules=await context.rulebook.current(), now=now
    )
    return [_read(v) for v in views]


@router.get("/dependants/rules", response_model=DependantRules, responses=errors(401))
async def dependant_rules(resident_id: CurrentResident, context: Context) -> DependantRules:
    """What this service allows: how many family members, from what age they consent."""
    settings = context.settings.dependants
    return DependantRules(
        max_per_guardian=settings.max_per_guardian,
        adult_age=settings.adult_age,
        consent_ttl_seconds=settings.consent_ttl_seconds,
    )


@router.post(
    "/dependants",
    response_model=DependantRead,
    status_code=status.HTTP_201_CREATED,
    responses=errors(401, 403, 409, 422, 429, 503),
)
async def add_dependant(
    body: DependantCreate,
    request: Request,
    resident_id: CurrentResident,
    context: Context,
    now: Now,
) -> DependantRead | Response:
    """Add a family member (亲友代办): a child, or an elderly relative without a smartphone.

    The family member is proved against the population register like anyone (422
    `identity_mismatch`; 503 `proofing_unavailable`; 429 `rate_limited`). Your own identity must
    be proved (403 `guardian_unverified`) and you must be an adult (403 `guardian_not_adult`);
    an account holds at most five family members by default (409 `dependant_limit`). A document
    bound to an account that proved it is not taken (409 `document_already_bound`).

    A child is `active` at once. An adult is `pending_consent` until they agree: with `phone`
    (their own number, which the carrier must confirm is registered to them, or 422
    `phone_not_registered_to_holder`) they get a code by SMS to read out to you, entered at
    `POST /v1/me/dependants/{id}/consent`; without it, at a service counter.
    """
    phone = normalize_phone(body.phone) if body.phone else None
    view = await service.add(
        context.proofing_deps(),
        guardian_id=resident_id,
        name=body.name,
        doc_type=body.doc_type,
        doc_number=body.doc_number,
        birth_date=body.birth_date,
        relationship=body.relationship,
        phone=phone,
        client_address=client_address(request),
        settings=context.settings.dependants,
        otp_secret=context.secrets.otp_secret,
        rules=await context.rulebook.current(),
        now=now,
    )
    if isinstance(view, Refusal):
        return view.response()
    return _read(view)


@router.get("/dependants/{dependant_id}", response_model=DependantRead, responses=errors(401, 404))
async def read_dependant(
    dependant_id: uuid.UUID,
    resident_id: CurrentResident,
    session: SessionDep,
    context: Context,
    now: Now,
) -> DependantRead:
    """One family member; someone else's is a 404."""
    view = await service.view(
        session,
        guardian_id=resident_id,
        guardianship_id=dependant_id,
        rules=await context.rulebook.current(),
        now=now,
    )
    return _read(view)


@router.post(
    "/dependants/{dependant_id}/consent",
    response_model=DependantRead,
    responses=errors(401, 404, 409, 422),
)
async def enter_consent_code(
    dependant_id: uuid.UUID,
    body: ConsentCode,
    resident_id: CurrentResident,
    session: SessionDep,
    context: Context,
    now: Now,
) -> DependantRead | Response:
    """The code the adult family member received by SMS, which they read out to you: their
    consent. 422 `consent_code_wrong` (counted: five tries), `consent_code_expired`,
    `consent_attempts_exceeded`; 409 `consent_not_pending`."""
    view = await service.consent_by_code(
        session,
        guardian_id=resident_id,
        guardianship_id=dependant_id,
        code=body.code,
        otp_secret=context.secrets.otp_secret,
        settings=context.settings.dependants,
        rules=await context.rulebook.current(),
        now=now,
    )
    if isinstance(view, Refusal):
        return view.response()
    return _read(view)


@router.post(
    "/dependants/{dependant_id}/consent/resend",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 404, 409),
)
async def resend_consent_code(
    dependant_id: uuid.UUID,
    resident_id: CurrentResident,
    session: SessionDep,
    context: Context,
    now: Now,
) -> None:
    """A new consent code to the family member's phone (at most one a minute; 409
    `consent_resend_too_soon`). 409 `consent_phone_missing` when no phone was given: they
    consent at a service counter."""
    await service.resend_consent(
        session,
        context.proofing_deps(),
        guardian_id=resident_id,
        guardianship_id=dependant_id,
        otp_secret=context.secrets.otp_secret,
        settings=context.settings.dependants,
        now=now,
    )


@router.delete(
    "/dependants/{dependant_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 404),
)
async def remove_dependant(
    dependant_id: uuid.UUID,
    resident_id: CurrentResident,
    session: SessionDep,
    context: Context,
    now: Now,
) -> None:
    """Stop holding this family member's codes: their live codes are revoked and their
    document is free to be bound again (by themselves, or another guardian)."""
    arrangement = await service.held(session, guardian_id=resident_id, guardianship_id=dependant_id)
    await service.end(
        session,
        context.proofing_deps(),
        arrangement=arrangement,
        actor=Actor.resident(resident_id),
        reason="removed_by_guardian",
        now=now,
    )


@router.post(
    "/dependants/{dependant_id}/codes",
    response_model=CodeRead,
    status_code=status.HTTP_201_CREATED,
    responses=errors(401, 404, 409, 503),
)
async def issue_dependant_code(
    dependant_id: uuid.UUID,
    request: Request,
    resident_id: CurrentResident,
    session: SessionDep,
    context: Context,
    now: Now,
) -> Response:
    """A code for a family member: it names them (masked), not you, and carries their status;
    201 with a new one, 200 with their live one again (as for your own). 409 `consent_pending`
    until an adult family member has consented."""
    arrangement = await service.held(
        session, guardian_id=resident_id, guardianship_id=dependant_id, active=True
    )
    issued = await health_codes.issue_code(
        session,
        resident_id=arrangement.dependant_id,
        idempotency_key=None,
        keyring=context.keyring,
        issuer=context.settings.issuer,
        lifetime=dt.timedelta(seconds=context.settings.codes.lifetime_seconds),
        rules=await context.rulebook.current(),
        now=now,
        reuse=context.settings.codes.reuse,
    )
    return code_response(
        issued.code,
        str(request.base_url),
        status_code=200 if issued.reused else 201,
        images=f"v1/me/dependants/{dependant_id}/codes/",
    )


@router.get(
    "/dependants/{dependant_id}/codes/{code_id}.{fmt}",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}, "image/svg+xml": {}}},
        304: {"description": "Not modified"},
        **errors(401, 404),
    },
)
async def dependant_code_image(
    dependant_id: uuid.UUID,
    code_id: str,
    fmt: Literal["png", "svg"],
    request: Request,
    resident_id: CurrentResident,
    session: SessionDep,
    context: Context,
    now: Now,
) -> Response:
    """A family member's code as a PNG or SVG QR in its status colour; their guardian only."""
    arrangement = await service.held(session, guardian_id=resident_id, guardianship_id=dependant_id)
    code = await health_codes.get_owned_code(
        session, resident_id=arrangement.dependant_id, code_id=code_id
    )
    entry = await health_codes.render_image(code, fmt, context.images)
    return image_response(entry, code_id, fmt, now, request.headers.get("if-none-match"))


@router.get(
    "/dependants/{dependant_id}/status",
    response_model=MyStatusRead,
    responses=errors(401, 404, 409),
)
async def dependant_status(
    dependant_id: uuid.UUID,
    resident_id: CurrentResident,
    session: SessionDep,
    context: Context,
    now: Now,
    lang: Annotated[
        Literal["zh-Hans", "zh-Hant", "en", "pt"] | None,
        Query(description="Overrides Accept-Language"),
    ] = None,
    accept_language: Annotated[str | None, Header(alias="Accept-Language")] = None,
) -> MyStatusRead:
    """A family member's status and why, as they would read it themselves."""
    arrangement = await service.held(
        session, guardian_id=resident_id, guardianship_id=dependant_id, active=True
    )
    rules = await context.rulebook.current()
    record = await health_status.current(
        session, arrangement.dependant_id, rules=rules, now=now, lock=False
    )
    if record is None:
        raise NotFound("no status is recorded", code="status_missing")
    return status_answer(
        record,
        rules=rules,
        language=lang or pick_language(accept_language),
        now=now,
        hotline=context.settings.hotline,
    )


@router.get("/guardians", response_model=list[GuardianRead], responses=errors(401))
async def list_guardians(
    resident_id: CurrentResident, session: SessionDep, context: Context
) -> list[GuardianRead]:
    """The people holding codes for you: arrangements made with your phone number for your
    consent. You can end any of them."""
    index = await service.phone_index_of(session, resident_id)
    return [
        GuardianRead(
            id=arrangement.id,
            relationship=arrangement.relationship,
            state=arrangement.state,
            guardian_masked_name=name,
            created_at=arrangement.created_at,
        )
        for arrangement, name in await service.naming_phone(session, phone_index=index)
    ]


@router.delete(
    "/guardians/{guardianship_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 404),
)
async def end_guardianship(
    guardianship_id: uuid.UUID,
    resident_id: CurrentResident,
    session: SessionDep,
    context: Context,
    now: Now,
) -> None:
    """End an arrangement in which someone holds your codes: your record with them is
    released and its codes revoked; they are told by SMS."""
    arrangement = await service.holding_me(
        session, resident_id=resident_id, guardianship_id=guardianship_id
    )
    await service.end(
        session,
        context.proofing_deps(),
        arrangement=arrangement,
        actor=Actor.resident(resident_id),
        reason="ended_by_family_member",
        now=now,
    )


@admin.post(
    "/{dependant_id}/consent",
    response_model=DependantRead,
    responses=errors(401, 403, 404),
)
async def consent_at_counter(
    dependant_id: uuid.UUID,
    body: CounterConsent,
    session: SessionDep,
    context: Context,
    now: Now,
    operator: StaffOperator,
) -> DependantRead:
    """Counter staff record an adult family member's consent, seen in person with their
    document (the reason is audited)."""
    view = await service.consent_at_counter(
        session,
        guardianship_id=dependant_id,
        reason=body.reason,
        actor=operator.actor,
        rules=await context.rulebook.current(),
        now=now,
    )
    return _read(view)


@admin.delete(
    "/{dependant_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 403, 404),
)
async def end_at_counter(
    dependant_id: uuid.UUID,
    session: SessionDep,
    context: Context,
    now: Now,
    operator: StaffOperator,
) -> None:
    """Counter staff end an arrangement for a family member who cannot do it from a phone (a
    child's other parent, an elderly person); both sides are told."""
    arrangement = await service.live(session, dependant_id)
    await service.end(
        session,
        context.proofing_deps(),
        arrangement=arrangement,
        actor=operator.actor,
        reason="ended_at_counter",
        now=now,
    )
