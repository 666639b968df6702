from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, Field

from yuekang.schemas import StrictModel


class InboundPackage(StrictModel):
    package: str = Field(min_length=1, max_length=64 * 1024)


class ConsentGiven(StrictModel):
    recipient: str = Field(min_length=1, max_length=64, description="The partner's issuer id")
    fields: list[str] = Field(max_length=32, description="Exactly the fields sent")
    accepted: bool
    text_version: str = Field(min_length=1, max_length=32)


class OutboundRequest(StrictModel):
    consent: ConsentGiven


class ConsentScreen(BaseModel):
    recipient: str | None
    recipient_name: str
    purpose: str
    fields: list[str]
    text_version: str
    text: dict[str, str]
    available: bool


class ConversionRead(BaseModel):
    id: uuid.UUID
    direction: str
    partner: str
    state: str
    fields: list[str]
    consent_id: uuid.UUID | None
    created_at: dt.datetime
    completed_at: dt.datetime | None
    error_code: str | None
    attempts: int | None = None
    next_attempt_at: dt.datetime | None = None
    partner_code: str | None = Field(
        None, description="Outbound, once delivered: the partner's code (its QR text)"
    )
    partner_code_expires_at: dt.datetime | None = None
    code_id: str | None = Field(None, description="Inbound: the code issued here")


class OutboxRead(BaseModel):
    id: uuid.UUID
    partner: str
    conversion_id: uuid.UUID
    state: str
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str | None
    last_attempt_at: dt.datetime | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None


class PartnerRead(BaseModel):
    id: str
    issuer: str
    code_format: str
    base_url: str
    circuit: str = Field(description="closed, or open until `circuit_open_until`")
    circuit_open_until: dt.datetime | None
    keys: list[dict[str, Any]]
