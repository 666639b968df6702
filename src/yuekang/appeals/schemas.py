from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from yuekang.schemas import PlainText, StrictModel


class AppealCreate(StrictModel):
    text: PlainText = Field(min_length=5, max_length=1000, description="Why the status is wrong")


class AppealRead(BaseModel):
    id: uuid.UUID
    state: Literal["pending", "accepted", "rejected"]
    status_at_filing: Literal["yellow", "red"]
    reason_codes: list[str]
    filed_at: dt.datetime
    decided_at: dt.datetime | None
    decision_reason: str | None = Field(description="The reviewer's answer, for the resident")
    override_status: Literal["green", "yellow", "red"] | None
    override_expires_at: dt.datetime | None


class MyAppealRead(AppealRead):
    text: str = Field(description="What the resident wrote")


class AppealSummary(AppealRead):
    resident_id: uuid.UUID


class AppealDetail(AppealSummary):
    text: str = Field(description="The resident's words; reading them is audited")


class AppealDecision(StrictModel):
    decision: Literal["accept", "reject"]
    reason: PlainText = Field(min_length=3, max_length=500, description="Shown to the resident")
    status: Literal["green", "yellow"] = Field(
        "green", description="Accept only: the status to give instead"
    )
    valid_days: int = Field(14, ge=1, le=90, description="Accept only: how long the override holds")

    @model_validator(mode="after")
    def _reject_plain(self) -> AppealDecision:
        if self.decision == "reject" and "status" in self.model_fields_set:
            raise ValueError("a rejection gives no status")
        return self
