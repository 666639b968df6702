from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, Field

from yuekang.feeds.rows import FeedKind
from yuekang.schemas import StrictModel


class RowError(BaseModel):
    row: int = Field(description="1-based line of the body (a CSV header is line 1)")
    field: str | None = Field(description="The field at fault; null when the line is unreadable")
    reason: str = Field(description="A stable reason code; see docs/FEEDS.md")
    message: str


class BatchRead(BaseModel):
    batch_id: uuid.UUID
    kind: FeedKind
    idempotency_key: str
    received_at: dt.datetime
    rows_total: int
    rows_accepted: int
    rows_rejected: int
    errors: list[RowError]
    errors_truncated: bool = Field(description="More problems were found than are listed")
    persons_recomputed: int = Field(description="Registered people whose status was decided again")
    statuses_changed: int
    codes_revoked: int


class FeedClientCreate(StrictModel):
    # 64: the name is written as the actor ("feed:<name>") of every status change it causes.
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    kinds: list[FeedKind] = Field(min_length=1)


class FeedClientRead(BaseModel):
    id: uuid.UUID
    name: str
    kinds: list[FeedKind]
    created_at: dt.datetime
    disabled_at: dt.datetime | None


class FeedClientCreated(FeedClientRead):
    api_key: str = Field(description="Shown once; only its hash is stored")
