from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request, Response, status

from yuekang.auth.endpoints import client_address
from yuekang.auth.service import normalize_phone
from yuekang.deps import Context, CurrentResident, Now, SessionDep, StaffOperator
from yuekang.exceptions import NotFound, Refusal
from yuekang.health_status import service as health_status
from yuekang.openapi import errors
from yuekang.principals import Actor
from yuekang.residents import binding, service
from yuekang.residents.schemas import (
    AlertRead,
    CounterProofed,
    CounterProofing,
    IdentityBind,
    IdentityRead,
    MeRead,
    StatusSummary,
)

router = APIRouter(prefix="/v1/me", tags=["resident"])


@router.get("", response_model=MeRead, responses=errors(401))
async def read_me(
    resident_id: CurrentResident, session: SessionDep, context: Context, now: Now
) -> MeRead:
    """The signed-in resident: masked phone, masked identity, current status."""
    identity = await service.read_identity(
        session,
        resident_id=resident_id,
        actor=Actor.resident(resident_id),
        pii=context.pii,
        now=now,
    )
    # No lock: reading writes nothing unless the status must be decided again (which locks).
    current = await health_status.current(
        session, resident_id, rules=await context.rulebook.current(), now=now, lock=False
    )
    return MeRead(
        resident_id=resident_id,
        phone=await service.masked_phone(
            session,
            resident_id=resident_id,
            actor=Actor.resident(resident_id),
            pii=context.pii,
            now=now,
        ),
        identity=IdentityRead.model_validate(identity, from_attributes=True) if identity else None,
        status=StatusSummary(
            status=current.status,
            reason_codes=current.reason_codes,
            # An operator's note is for staff (the console shows it); the resident reads the
            # reason codes, in their language, from the status explanation.
            reason=None,
            updated_at=current.updated_at,
        )
        if current
        else None,
    )


@router.put(
    "/identity",
    response_model=IdentityRead,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": IdentityRead, "description": "Already bound to this document, proved"},
        **errors(401, 409, 422, 429, 503),
    },
)
async def bind_identity(
    body: IdentityBind,
    request: Request,
    response: Response,
    resident_id: CurrentResident,
    context: Context,
    now: Now,
) -> IdentityRead | Response:
    """Bind a real-name identity document to the signed-in resident, proved first.

    The document number is checked against its format and check digit (422 `invalid_document`
    with `fields[].field` = `doc_number` or `birth_date` and `fields[].reason` = `format` /
    `check_digit` / `region` / `date` / `birth_date_mismatch`). Then the identity registry is
    asked whether the population register knows this name, document and birth date, and whether
    the phone signed in is registered to that person at their carrier (docs/IDENTITY.md):

    - 201: proved and bound (`assurance` = `proofed`); 200: already bound to this account;
    - 422 `identity_mismatch`: the register does not know these details (one message whichever
      detail is wrong);
    - 422 `phone_not_registered_to_holder`: the person exists but this phone is not theirs; a
      family member can add them, or a service counter can verify them;
    - 409 `document_already_bound`: another account holds the document and passed proofing
      (a service counter settles it); 409 `identity_already_bound`: this account holds another
      proved document;
    - 429 `rate_limited` (with `Retry-After`): too many attempts for this account, document or
      address;
    - 503 `proofing_unavailable` (with `Retry-After`): the registry cannot be reached; nothing
      was bound.

    A document bound to an account that never passed the same proofing (bound before proofing
    existed, or a family member's record) is taken from it: its codes are revoked and both
    phones told (`reclaimed` is true). Name, document number and birth date are stored
    encrypted; only masked values come back.
    """
    bound = await binding.bind_proofed(
        context.proofing_deps(),
        resident_id=resident_id,
        name=body.name,
        doc_type=body.doc_type,
        doc_number=body.doc_number,
        birth_date=body.birth_date,
        client_address=client_address(request),
        rules=await context.rulebook.current(),
        now=now,
    )
    if isinstance(bound, Refusal):
        return bound.response()
    if not bound.created:
        response.status_code = status.HTTP_200_OK
    return IdentityRead.model_validate({**asdict(bound.identity), "reclaimed": bound.reclaimed})


@router.get("/identity", response_model=IdentityRead, responses=errors(401, 404))
async def read_identity(
    resident_id: CurrentResident, session: SessionDep, context: Context, now: Now
) -> IdentityRead:
    """The bound identity, masked. Each read is written to the audit log."""
    identity = await service.read_identity(
        session,
        resident_id=resident_id,
        actor=Actor.resident(resident_id),
        pii=context.pii,
        now=now,
    )
    if identity is None:
        raise NotFound("no identity is bound yet", code="identity_not_bound")
    return IdentityRead.model_validate(identity, from_attributes=True)


admin = APIRouter(prefix="/v1/admin/identity", tags=["admin: identity"])


@admin.post(
    "/counter",
    response_model=CounterProofed,
    status_code=status.HTTP_201_CREATED,
    responses=errors(401, 403, 409, 422),
)
async def prove_at_counter(
    body: CounterProofing,
    session: SessionDep,
    context: Context,
    now: Now,
    operator: StaffOperator,
) -> CounterProofed:
    """Counter staff bind a document they saw in person (柜台核验), for people the registry or
    their carrier cannot confirm: a foreigner, a new number, an elderly person without a phone.

    With `phone`, the document goes to that phone's account (made if the person never signed
    in; they are told by SMS); without it, to a record with no phone, whose document
    checkpoints can check. The document is taken from any other account holding it, which is
    told. The assurance is `counter`; `reason` is audited. 409 `identity_already_bound` when
    the phone's account holds another proved document.
    """
    bound = await binding.bind_at_counter(
        session,
        context.proofing_deps(),
        phone=normalize_phone(body.phone) if body.phone else None,
        name=body.name,
        doc_type=body.doc_type,
        doc_number=body.doc_number,
        birth_date=body.birth_date,
        reason=body.reason,
        actor=operator.actor,
        rules=await context.rulebook.current(),
        now=now,
    )
    return CounterProofed(
        resident_id=bound.resident_id,
        identity=IdentityRead.model_validate(bound.identity, from_attributes=True),
        new_account=bound.new_account,
        reclaimed=bound.reclaimed,
    )


@admin.get("/alerts", response_model=list[AlertRead], responses=errors(401, 403))
async def proofing_alerts(
    session: SessionDep, context: Context, now: Now, operator: StaffOperator
) -> list[AlertRead]:
    """Documents that failed proofing repeatedly within the alert window (3 times in 24 hours by
    default, `proofing.alert_failures`), from any accounts: someone may be trying another
    person's document. Masked numbers only; each read is audited."""
    found = await binding.alerts(
        session, settings=context.settings.proofing, actor=operator.actor, now=now
    )
    return [AlertRead.model_validate(alert, from_attributes=True) for alert in found]
