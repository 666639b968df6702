from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Annotated, Literal, cast, get_args

from fastapi import APIRouter, Header, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang import headers, replicas
from yuekang.codec.reasons import pick_language
from yuekang.conditional import etag_matches, release
from yuekang.context import AppContext
from yuekang.deps import (
    AnyStaff,
    Context,
    CurrentResident,
    Epidemiologist,
    Now,
    SessionDep,
    StaffOperator,
    session_claims,
)
from yuekang.exceptions import NotFound, Refusal, UnsupportedMediaType
from yuekang.fastlane import Direct, Ready, direct
from yuekang.health_status import rulebook, service
from yuekang.health_status.schemas import (
    FindingRead,
    MyStatusRead,
    NatRead,
    ResidentFound,
    ResidentLookup,
    RuleSetRead,
    StatusChangeRead,
    StatusRead,
    StatusSet,
    VaccinationRead,
)
from yuekang.openapi import errors
from yuekang.residents import service as residents
from yuekang.rules import RuleSet, explain, negative_within_hours
from yuekang.rules.facts import as_status
from yuekang.schemas import PlainLine


def status_answer(
    record: service.StatusFacts,
    *,
    rules: RuleSet,
    language: str,
    now: dt.datetime,
    hotline: str | None = None,
) -> MyStatusRead:
    """A person's status as they (or their guardian) read it: why, until when, their latest
    test and vaccinations, explained in ``language``."""
    nat = None
    if record.nat_sampled_at is not None and record.nat_result in ("negative", "positive"):
        nat = NatRead(
            latest_result="positive" if record.nat_result == "positive" else "negative",
            latest_sampled_at=record.nat_sampled_at,
            negative_within_hours=negative_within_hours(
                record.nat_sampled_at, record.nat_result, now=now, buckets=rules.nat_display_hours
            ),
        )
    findings = service.stored_findings(record)
    colour = as_status(record.status)
    return MyStatusRead(
        status=colour,
        reason_codes=record.reason_codes,
        explanation=explain(findings, rules, language),
        language=language,
        reasons=[
            FindingRead(reason=f.reason, status=f.status, since=f.since, until=f.until)
            for f in findings
        ],
        valid_until=record.valid_until,
        decided_at=record.updated_at,
        rule_set_version=record.rule_set_version,
        nat=nat,
        vaccination=VaccinationRead(doses=record.vaccine_doses, last_dose_on=record.vaccinated_on),
        can_appeal=colour != "green",
        hotline=hotline,
    )


def status_etag(
    record: service.StatusFacts,
    *,
    rules: RuleSet,
    language: str,
    now: dt.datetime,
    hotline: str | None = None,
) -> str:
    """The tag of :func:`status_answer` for the same arguments, made from what the answer is
    made of -- the row's facts, the rule set (its texts included), the language, the hotline,
    the test's display bucket that moves with the clock, and the code that makes it
    (``conditional.release``) -- so a 304 is decided without making the answer."""
    # None unless the latest test is negative and in a bucket, as the answer's NatRead says.
    bucket = negative_within_hours(
        record.nat_sampled_at, record.nat_result, now=now, buckets=rules.nat_display_hours
    )
    made_of = (
        record.status,
        record.reason_codes,
        record.findings,
        record.valid_until,
        record.updated_at,
        record.rule_set_version,
        record.nat_sampled_at,
        record.nat_result,
        record.vaccine_doses,
        record.vaccinated_on,
        bucket,
        rules.digest,
        language,
        hotline,
        release(),
    )
    return '"' + hashlib.blake2b(repr(made_of).encode(), digest_size=16).hexdigest() + '"'


async def my_status(
    context: AppContext,
    resident_id: uuid.UUID,
    *,
    now: dt.datetime,
    language: str,
    if_none_match: str | None,
    seen: float | None,
) -> Response:
    """The answer to a resident reading their status, for the route and its direct handler
    alike."""
    rules = await context.rulebook.current()

    async def read(session: AsyncSession) -> service.StatusFacts:
        # No lock: a page reads this every few seconds, and only a decision made here writes.
        record = await service.current(session, resident_id, rules=rules, now=now, lock=False)
        if record is None:
            await residents.require_proved(session, resident_id)
            raise NotFound("bind an identity document first", code="identity_not_bound")
        return record

    # Nearly always the row stands as it is: kept in this process since it was last read and
    # not changed since (notices.py), or read with one statement outside any session -- the
    # ORM's load and the session were over half of this page's time (py-spy). A status that
    # must be decided again, or none, is the primary's.
    kept = context.statuses
    row = kept.get(resident_id)
    if row is None or not service.standing(cast(service.StatusFacts, row), rules=rules, now=now):
        stamp = kept.stamp()
        # Where rows are kept, from the primary: a replica behind a change already heard would
        # have its old row kept. Where they are not, a replica within the lag bound may answer,
        # if it holds everything this resident wrote and saw before (replicas.py).
        row = await context.read_row(
            service.STATUS_ROW, {"resident_id": resident_id}, seen=seen, replica=stamp is None
        )
        if row is not None and service.standing(
            cast(service.StatusFacts, row), rules=rules, now=now
        ):
            kept.put(resident_id, row, stamp)
        else:
            row = None
    record = (
        cast(service.StatusFacts, row)
        if row is not None
        else await context.bounded_read(read, seen=seen)
    )
    hotline = context.settings.hotline
    # The tag changes exactly when the answer does, and is known before the answer is made: a
    # 304 costs less than a 200.
    etag = status_etag(record, rules=rules, language=language, now=now, hotline=hotline)
    fields = [(b"etag", etag.encode()), _PRIVATE, _VARY]
    if etag_matches(if_none_match, etag):
        return Ready(status.HTTP_304_NOT_MODIFIED, fields)
    answer = status_answer(record, rules=rules, language=language, now=now, hotline=hotline)
    body = answer.model_dump_json().encode()
    return Ready(200, [*fields, (b"content-length", str(len(body)).encode()), _JSON], body)


# Private: the answer is one person's. no-cache: a cached copy is used only once revalidated.
_PRIVATE = (b"cache-control", b"private, no-cache")
_VARY = (b"vary", b"Accept-Language")
_JSON = (b"content-type", b"application/json")


Language = Literal["zh-Hans", "zh-Hant", "en", "pt"]
_LANGUAGES = frozenset(get_args(Language))


async def status_directly(request: Direct) -> Response | None:
    """``GET /v1/me/status`` without the router: a page polls it, and the router and dependency
    solver cost a quarter of its time (py-spy). A query other than one valid ``lang`` goes to
    the route, which gives its 422 (or reads a repeated parameter as FastAPI does)."""
    query = request.scope["query_string"]
    lang = None
    if query:
        name, _, value = query.decode("latin-1").partition("=")
        if name != "lang" or value not in _LANGUAGES:
            return None
        lang = value
    context = request.context
    now = context.clock.now()
    claims = await session_claims(request.bearer_token(), context, now)
    return await my_status(
        context,
        claims.resident_id,
        now=now,
        language=lang or pick_language(request.header(b"accept-language")),
        if_none_match=request.header(b"if-none-match"),
        seen=replicas.seen(headers.cookies(request.scope)),
    )


admin = APIRouter(prefix="/v1/admin/residents", tags=["admin: residents"])
resident = APIRouter(prefix="/v1/me", tags=["resident"])
rules_admin = APIRouter(prefix="/v1/admin/rule-sets", tags=["admin: rules"])


@resident.get(
    "/status",
    response_model=MyStatusRead,
    responses={
        304: {"description": "Unchanged since the ETag sent in If-None-Match"},
        **errors(401, 404),
    },
)
@direct(status_directly)
async def read_my_status(
    request: Request,
    resident_id: CurrentResident,
    context: Context,
    now: Now,
    lang: Annotated[Language | None, Query(description="Overrides Accept-Language")] = None,
    accept_language: Annotated[str | None, Header(alias="Accept-Language")] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    """The resident's status and why: reason codes, an explanation in their language, when it
    lapses, the latest test result and vaccinations. 404 `identity_not_bound` before binding.
    `ETag` names this answer: `If-None-Match` with it answers 304 while nothing in it changed (a
    page polls this; a browser revalidates by itself)."""
    return await my_status(
        context,
        resident_id,
        now=now,
        language=lang or pick_language(accept_language),
        if_none_match=if_none_match,
        seen=replicas.seen(request.cookies),
    )


@admin.post("/lookup", response_model=ResidentFound, responses=errors(401, 403, 404, 422))
async def lookup_resident(
    body: ResidentLookup,
    session: SessionDep,
    context: Context,
    now: Now,
    operator: StaffOperator,
) -> ResidentFound | Response:
    """Find a resident by identity document (through the blind index). Audited with the reason."""
    resident_id = await residents.find_by_document(
        session,
        doc_type=body.doc_type,
        doc_number=body.doc_number,
        blind_index=context.blind_index,
        actor=operator.actor,
        reason=body.reason,
        now=now,
    )
    if isinstance(resident_id, Refusal):
        return resident_id.response()
    return ResidentFound(resident_id=resident_id)


@admin.put("/{resident_id}/status", response_model=StatusRead, responses=errors(401, 403, 404, 422))
async def set_status(
    resident_id: uuid.UUID,
    body: StatusSet,
    session: SessionDep,
    context: Context,
    now: Now,
    operator: StaffOperator,
) -> StatusRead:
    """Override a resident's status with a reason (audited). The override replaces what the facts
    known now say, for `valid_days` or until replaced; facts that arrive later still count. A
    worse status revokes every unexpired code of the resident at once."""
    record, revoked = await service.set_status(
        session,
        resident_id=resident_id,
        status=body.status,
        reason=body.reason,
        expires_at=None if body.valid_days is None else now + dt.timedelta(days=body.valid_days),
        rules=await context.rulebook.current(),
        actor=operator.actor,
        now=now,
    )
    return StatusRead(
        resident_id=resident_id,
        status=as_status(record.status),
        reason=record.reason_text,
        updated_at=record.updated_at,
        updated_by=record.updated_by,
        codes_revoked=revoked,
    )


@admin.get(
    "/{resident_id}/status-history",
    response_model=list[StatusChangeRead],
    responses=errors(401, 403, 404, 422),
)
async def read_status_history(
    resident_id: uuid.UUID,
    session: SessionDep,
    now: Now,
    operator: AnyStaff,
    reason: Annotated[PlainLine, Query(min_length=3, max_length=500, description="Why; audited")],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[StatusChangeRead]:
    """What changed a resident's status, when, from which findings under which rule-set version,
    newest first. Reading it is written to the audit log with `reason`."""
    changes = await service.history(
        session, resident_id=resident_id, actor=operator.actor, reason=reason, now=now, limit=limit
    )
    return [
        StatusChangeRead(
            at=c.at,
            old_status=None if c.old_status is None else as_status(c.old_status),
            new_status=as_status(c.new_status),
            reason_codes=list(c.detail.get("reason_codes", [])),
            rule_set_version=c.detail.get("rule_set_version"),
            findings=list(c.detail.get("findings", [])),
            reason=c.reason_text,
            actor=c.actor,
        )
        for c in changes
    ]


@rules_admin.get("/active", response_model=RuleSetRead, responses=errors(401, 403))
async def read_active_rule_set(context: Context, operator: AnyStaff) -> RuleSetRead:
    """The rule set in force in this process (at most `rules.refresh_seconds` old)."""
    rules = await context.rulebook.current()
    return RuleSetRead(version=rules.version, document=rules.document())


@rules_admin.post(
    "",
    response_model=RuleSetRead,
    status_code=status.HTTP_201_CREATED,
    responses=errors(401, 403, 409, 415, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/toml": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
)
async def activate_rule_set(
    request: Request, session: SessionDep, context: Context, now: Now, operator: Epidemiologist
) -> RuleSetRead:
    """Validate a rule set (TOML as `application/toml`, or its JSON form) and put it in force.
    An invalid one answers 422 `invalid_rule_set` listing every problem, and the rule set in
    force stays; a version that exists with other content answers 409."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in ("application/toml", "application/json"):
        raise UnsupportedMediaType("send application/toml or application/json")
    rules = rulebook.validated(
        await request.body(), fmt="toml" if media_type == "application/toml" else "json"
    )
    await rulebook.activate(session, rules=rules, actor=operator.actor, now=now)
    # Other processes see it within their refresh time; this one at once.
    context.rulebook.invalidate()
    return RuleSetRead(version=rules.version, document=rules.document())
