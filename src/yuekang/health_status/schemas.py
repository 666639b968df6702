from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field

from yuekang.residents.documents import DocType
from yuekang.schemas import StrictModel


class StatusSet(StrictModel):
    status: Literal["green", "yellow", "red"]
    reason: str = Field(min_length=3, max_length=500)
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
    reason: str = Field(
        min_length=3, max_length=500, description="Why the lookup is needed; audited"
    )


class ResidentFound(BaseModel):
    resident_id: uuid.UUID
