"""Request and response bodies of the reference Macao system's own API."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from yuekang.exchange import messages

MacaoDocType = Literal["BIR", "PTM", "PASS", "OUTRO"]
ConsentField = Literal["name", "document", "birth_date", "phone", "status", "nat", "travel"]
CONSENT_FIELDS: tuple[ConsentField, ...] = (
    "name",
    "document",
    "birth_date",
    "phone",
    "status",
    "nat",
    "travel",
)
E164 = messages.E164
IsoDate = messages.Date
"""A declaration's dates have one spelling, as the exchange's do."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class DeclarationIn(_Strict):
    name: str = Field(min_length=1, max_length=100)
    doc_type: MacaoDocType
    doc_number: str = Field(min_length=1, max_length=32)
    birth_date: IsoDate
    phone: str = Field(pattern=E164)
    fever: StrictBool
    contact_14d: StrictBool
    travel_14d: StrictBool
    nat_negative_on: IsoDate | None = None


class CodeOut(BaseModel):
    person_id: uuid.UUID
    code: str
    colour: str
    expires_at: int


class ConsentIn(_Strict):
    recipient: str = Field(min_length=1, max_length=64)
    fields: list[ConsentField] = Field(min_length=1, max_length=len(CONSENT_FIELDS))
    accepted: StrictBool
    text_version: str = Field(min_length=1, max_length=32)


class ConversionIn(_Strict):
    person_id: uuid.UUID
    consent: ConsentIn
    delivery: Literal["direct", "browser"] = "direct"


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"
