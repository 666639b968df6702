from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from yuekang.residents.documents import DocType
from yuekang.schemas import PlainText, StrictModel


class IdentityBind(StrictModel):
    name: str = Field(min_length=1, max_length=64, examples=["张小三"])
    doc_type: DocType
    doc_number: str = Field(min_length=1, max_length=32, examples=["11010519491231002X"])
    birth_date: dt.date = Field(examples=["1949-12-31"])

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(not ch.isprintable() for ch in value):
            raise ValueError("name contains control characters")
        return " ".join(value.split())

    @field_validator("birth_date")
    @classmethod
    def _plausible(cls, value: dt.date) -> dt.date:
        if value.year < 1900:
            raise ValueError("birth date before 1900")
        return value


class IdentityRead(BaseModel):
    doc_type: str
    masked_name: str
    masked_doc_number: str
    bound_at: dt.datetime
    assurance: str = Field(
        description="How the document was proved to be this person's: `proofed` (registry and "
        "carrier), `counter` (seen by staff), `dependant` (a family member's record), "
        "`partner:MO` (vouched for by Macao), or `unverified` (bound before proofing existed: "
        "no code until proved again)"
    )
    proofed_at: dt.datetime | None
    reclaimed: bool = Field(
        default=False,
        description="True when binding took the document from an account that had not proved it",
    )


class StatusSummary(BaseModel):
    status: Literal["green", "yellow", "red"]
    reason_codes: list[str]
    reason: str | None = Field(
        description="Always null: an operator's note is for staff (kept for clients that read it)"
    )
    updated_at: dt.datetime


class MeRead(BaseModel):
    resident_id: uuid.UUID
    phone: str = Field(description="Masked phone number")
    identity: IdentityRead | None
    status: StatusSummary | None


class CounterProofing(IdentityBind):
    """What counter staff record after seeing a person and their document."""

    phone: str | None = Field(
        default=None,
        max_length=32,
        description="The person's own mobile number: their account, made if they never signed "
        "in. Null for someone without a phone (their document can then be checked at "
        "checkpoints, 刷证核验).",
    )
    reason: PlainText = Field(min_length=3, max_length=300, description="What staff saw; audited")
    document_seen: Literal[True] = Field(
        description="Staff confirm they saw the original document in person"
    )


class CounterProofed(BaseModel):
    resident_id: uuid.UUID
    identity: IdentityRead
    new_account: bool
    reclaimed: bool = Field(description="The document was taken from another account")


class AlertRead(BaseModel):
    doc_type: str
    masked_doc_number: str
    failures: int = Field(description="Failed proofing attempts on this document in the window")
    accounts: int = Field(description="How many accounts tried it")
    first_at: dt.datetime
    last_at: dt.datetime
