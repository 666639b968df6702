"""What the authorities told us about one person, as the rules engine reads it.

Every fact carries ``received_at``, the moment the service learned it: an operator's override
(an accepted appeal) covers what was known when it was granted, and nothing that arrives later.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

Status = Literal["green", "yellow", "red"]
SEVERITY: dict[Status, int] = {"green": 0, "yellow": 1, "red": 2}
RiskLevel = Literal["high", "medium", "low"]
RISK_LEVELS: tuple[RiskLevel, ...] = ("high", "medium", "low")


def as_status(value: str) -> Status:
    """A stored status as a :data:`Status`. Anything else is a bug to report, never a green."""
    if value not in SEVERITY:
        raise ValueError(f"unknown status {value!r}")
    return value


def as_risk_level(value: str) -> RiskLevel:
    if value not in RISK_LEVELS:
        raise ValueError(f"unknown risk level {value!r}")
    return value


NatResult = Literal["negative", "positive"]


class CaseCategory(StrEnum):
    CONFIRMED = "confirmed"
    SUSPECTED = "suspected"
    ASYMPTOMATIC = "asymptomatic"
    CLOSE_CONTACT = "close_contact"
    SECONDARY_CONTACT = "secondary_contact"
    CENTRALISED_ISOLATION = "centralised_isolation"
    HOME_ISOLATION = "home_isolation"
    RELEASED = "released"
    """Ends, on its start date, every case and positive test that started on or before it."""


@dataclass(frozen=True, slots=True)
class CaseFact:
    category: CaseCategory
    start: dt.date
    end: dt.date | None
    """Last day of the episode (inclusive), when the authority knows it."""
    received_at: dt.datetime


@dataclass(frozen=True, slots=True)
class NatFact:
    sampled_at: dt.datetime
    result: NatResult
    received_at: dt.datetime


@dataclass(frozen=True, slots=True)
class VaccinationFact:
    dose: int
    date: dt.date
    product: str


@dataclass(frozen=True, slots=True)
class TravelFact:
    region: str
    date: dt.date
    received_at: dt.datetime


@dataclass(frozen=True, slots=True)
class RiskArea:
    region: str
    level: RiskLevel
    valid_from: dt.date
    valid_to: dt.date | None
    """Last day the level holds (inclusive); ``None`` until the authority lifts it."""
    received_at: dt.datetime | None = None
    """When the service learned of it: a trip becomes a finding only once the area is known."""


@dataclass(frozen=True, slots=True)
class Override:
    """An operator's decision, usually an accepted appeal: the status to show instead of what
    the facts known at ``granted_at`` say, until ``expires_at``."""

    status: Status
    reason: str
    granted_at: dt.datetime
    expires_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Facts:
    cases: tuple[CaseFact, ...] = ()
    nats: tuple[NatFact, ...] = ()
    vaccinations: tuple[VaccinationFact, ...] = ()
    travel: tuple[TravelFact, ...] = ()
    risk_areas: tuple[RiskArea, ...] = field(default=())
    """The risk areas relevant to this person's travel (the engine matches them itself)."""
    override: Override | None = None
