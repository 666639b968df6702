from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from yuekang.residents.documents import DocType
from yuekang.schemas import PlainText, StrictModel


class StatusSet(StrictModel):
    status: Literal["green", "yellow", "red"]
    reason: PlainText = Field(min_length=3, max_length=500)
    valid_days: int | None = Field(
        None,
        ge=1,
        le=90,
        description="How long the decision overrides the facts known now; none: until replaced",
    )


class StatusRead(BaseModel):
    resident_id: uuid.UUID
    status: Literal["green", "yellow", "red"]
    reason: str | None
    updated_at: dt.datetime
    updated_by: str
    codes_revoked: int = 0


class ResidentLookup(StrictModel):
    doc_type: DocType
    doc_number: str = Field(min_length=1, max_length=32)
    reason: PlainText = Field(
        min_length=3, max_length=500, description="Why the lookup is needed; audited"
    )


class ResidentFound(BaseModel):
    resident_id: uuid.UUID


class FindingRead(BaseModel):
    reason: str = Field(description="A reason code of the rule set (or `override`)")
    status: Literal["green", "yellow", "red"]
    since: dt.datetime
    until: dt.datetime | None = Field(description="When it stops holding without new facts")


class NatRead(BaseModel):
    latest_result: Literal["negative", "positive"]
    latest_sampled_at: dt.datetime
    negative_within_hours: int | None = Field(
        description="The display bucket (24/48/72/168) of a negative latest test, else null"
    )


class VaccinationRead(BaseModel):
    doses: int
    last_dose_on: dt.date | None


class MyStatusRead(BaseModel):
    status: Literal["green", "yellow", "red"]
    reason_codes: list[str]
    explanation: list[str] = Field(description="One sentence per reason, worst first")
    language: str
    reasons: list[FindingRead]
    valid_until: dt.datetime | None = Field(
        description="When this decision lapses without new facts (a window ends)"
    )
    decided_at: dt.datetime
    rule_set_version: str | None
    nat: NatRead | None
    vaccination: VaccinationRead
    can_appeal: bool = Field(description="Red and yellow statuses can be contested")
    hotline: str | None = Field(
        None, description="The helpline to call about a status (setting `YUEKANG_HOTLINE`)"
    )


class RuleSetRead(BaseModel):
    version: str
    document: dict[str, Any] = Field(description="The rule set in its canonical JSON form")


class StatusChangeRead(BaseModel):
    at: dt.datetime
    old_status: Literal["green", "yellow", "red"] | None
    new_status: Literal["green", "yellow", "red"]
    reason_codes: list[str]
    rule_set_version: str | None
    findings: list[dict[str, Any]] = Field(description="The findings behind the new status")
    reason: str | None = Field(description="An operator's reason, for overrides")
    actor: str
