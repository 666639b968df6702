"""Reading the facts about many people at once, for the rules engine."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.feeds.models import (
    CaseRecord,
    NatRecord,
    RiskAreaRecord,
    TravelRecord,
    VaccinationRecord,
)
from yuekang.health_status.models import StatusOverride
from yuekang.residents.models import Identity
from yuekang.rules import (
    CaseCategory,
    CaseFact,
    Facts,
    NatFact,
    Override,
    RiskArea,
    TravelFact,
    VaccinationFact,
)
from yuekang.rules.facts import NatResult, as_risk_level, as_status


async def persons(
    session: AsyncSession, resident_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, bytes]:
    """Each resident's document index: the key their facts are filed under. A binding never
    proved has no status: its account must not read the document's person's health data."""
    rows = await session.execute(
        select(Identity.resident_id, Identity.doc_index).where(
            Identity.resident_id.in_(resident_ids), Identity.assurance != "unverified"
        )
    )
    return {resident_id: index for resident_id, index in rows.all()}


async def load_facts(
    session: AsyncSession, people: dict[uuid.UUID, bytes], *, now: dt.datetime
) -> dict[uuid.UUID, Facts]:
    """Every fact about ``people`` (resident id -> document index), with the risk areas their
    travel could have touched and each one's latest override."""
    by_person: dict[bytes, uuid.UUID] = {index: rid for rid, index in people.items()}
    indexes = list(by_person)
    cases: dict[bytes, list[CaseFact]] = defaultdict(list)
    nats: dict[bytes, list[NatFact]] = defaultdict(list)
    doses: dict[bytes, list[VaccinationFact]] = defaultdict(list)
    trips: dict[bytes, list[TravelFact]] = defaultdict(list)
    for c in (
        await session.execute(
            select(
                CaseRecord.person,
                CaseRecord.category,
                CaseRecord.start_date,
                CaseRecord.end_date,
                CaseRecord.received_at,
            ).where(CaseRecord.person.in_(indexes))
        )
    ).all():
        cases[c[0]].append(CaseFact(CaseCategory(c[1]), c[2], c[3], c[4]))
    for n in (
        await session.execute(
            select(
                NatRecord.person, NatRecord.sampled_at, NatRecord.result, NatRecord.received_at
            ).where(NatRecord.person.in_(indexes))
        )
    ).all():
        result: NatResult = "positive" if n[2] == "positive" else "negative"
        nats[n[0]].append(NatFact(n[1], result, n[3]))
    for v in (
        await session.execute(
            select(
                VaccinationRecord.person,
                VaccinationRecord.dose,
                VaccinationRecord.date,
                VaccinationRecord.product,
            ).where(VaccinationRecord.person.in_(indexes))
        )
    ).all():
        doses[v[0]].append(VaccinationFact(v[1], v[2], v[3]))
    earliest: dt.date | None = None
    for t in (
        await session.execute(
            select(
                TravelRecord.person,
                TravelRecord.region_code,
                TravelRecord.date,
                TravelRecord.received_at,
            ).where(TravelRecord.person.in_(indexes))
        )
    ).all():
        trips[t[0]].append(TravelFact(t[1], t[2], t[3]))
        earliest = t[2] if earliest is None or t[2] < earliest else earliest
    areas: tuple[RiskArea, ...] = ()
    if earliest is not None:
        areas = tuple(
            RiskArea(a.region_code, as_risk_level(a.level), a.valid_from, a.valid_to, a.received_at)
            for a in (
                await session.execute(
                    select(RiskAreaRecord).where(
                        RiskAreaRecord.level != "low",
                        or_(RiskAreaRecord.valid_to.is_(None), RiskAreaRecord.valid_to >= earliest),
                    )
                )
            ).scalars()
        )
    overrides = await latest_overrides(session, people, now=now)
    return {
        rid: Facts(
            cases=tuple(cases[index]),
            nats=tuple(nats[index]),
            vaccinations=tuple(doses[index]),
            travel=tuple(trips[index]),
            risk_areas=areas if trips[index] else (),
            override=overrides.get(rid),
        )
        for rid, index in people.items()
    }


async def latest_overrides(
    session: AsyncSession, people: dict[uuid.UUID, bytes], *, now: dt.datetime
) -> dict[uuid.UUID, Override]:
    """The newest override of each resident's document (resident id -> document index): a new
    decision replaces the one before it, whichever account it was made on."""
    by_person = {index: rid for rid, index in people.items()}
    latest: dict[uuid.UUID, Override] = {}
    rows = await session.execute(
        select(StatusOverride)
        .where(StatusOverride.person.in_(list(by_person)), StatusOverride.granted_at <= now)
        .order_by(StatusOverride.granted_at, StatusOverride.id)
    )
    for row in rows.scalars():
        assert row.person is not None
        latest[by_person[row.person]] = Override(
            as_status(row.status), row.reason, row.granted_at, row.expires_at
        )
    return latest
