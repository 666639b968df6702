from __future__ import annotations

from fastapi import APIRouter, Response, status

from yuekang.deps import Context, CurrentResident, Now, SessionDep
from yuekang.exceptions import NotFound
from yuekang.health_status import service as health_status
from yuekang.openapi import errors
from yuekang.principals import Actor
from yuekang.residents import service
from yuekang.residents.schemas import IdentityBind, IdentityRead, MeRead, StatusSummary

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
    current = await health_status.current(
        session, resident_id, rules=await context.rulebook.current(), now=now
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
            reason=current.reason_text,
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
        200: {"model": IdentityRead, "description": "Already bound to this document"},
        **errors(401, 409, 422),
    },
)
async def bind_identity(
    body: IdentityBind,
    response: Response,
    resident_id: CurrentResident,
    session: SessionDep,
    context: Context,
    now: Now,
) -> IdentityRead:
    """Bind a real-name identity document to the signed-in resident.

    The document number is checked against its format and check digit (422 `invalid_document`
    with `fields[].field` = `doc_number` or `birth_date` and `fields[].reason` =
    `format` / `check_digit` / `region` / `date` / `birth_date_mismatch`). Name, document number
    and birth date are stored encrypted; only masked values come back. Binding is once: the same
    document again answers 200; another document answers 409.
    """
    result = await service.bind_identity(
        session,
        resident_id=resident_id,
        name=body.name,
        doc_type=body.doc_type,
        doc_number=body.doc_number,
        birth_date=body.birth_date,
        pii=context.pii,
        blind_index=context.blind_index,
        rules=await context.rulebook.current(),
        now=now,
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return IdentityRead.model_validate(result.identity, from_attributes=True)


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
