from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field

from yuekang.residents.schemas import IdentityBind
from yuekang.schemas import PlainText, StrictModel

Relationship = Literal["child", "parent", "spouse", "grandparent", "grandchild", "sibling", "other"]


class DependantCreate(IdentityBind):
    relationship: Relationship = Field(description="What the family member is to you, declared")
    phone: str | None = Field(
        default=None,
        max_length=32,
        description="An adult family member's own mobile number, for their consent by SMS; it "
        "must be registered to them at their carrier. Without it, an adult consents at a "
        "service counter. Ignored for children.",
        examples=["+8613700137000"],
    )


class ConsentCode(StrictModel):
    code: str = Field(pattern=r"^[0-9]{6}$", description="The code sent to the family member")


class CounterConsent(StrictModel):
    reason: PlainText = Field(min_length=3, max_length=300, description="What staff saw; audited")


class DependantRead(BaseModel):
    id: uuid.UUID = Field(description="The arrangement's id, in every path about this person")
    relationship: Relationship
    state: Literal["pending_consent", "active"]
    consent: Literal["minor", "sms", "counter"] | None = Field(
        description="How it was agreed: a child needs none; an adult by SMS or at a counter"
    )
    masked_name: str
    doc_type: str
    assurance: str
    status: Literal["green", "yellow", "red"] | None = Field(
        description="The family member's status; null until they consent"
    )
    reason_codes: list[str]
    valid_until: dt.datetime | None
    created_at: dt.datetime
    consent_by_sms: bool = Field(
        description="A phone was given for the adult's consent: enter the code sent to it "
        "(otherwise they consent at a service counter)"
    )
    consent_expires_at: dt.datetime | None = Field(
        description="While consent is pending by SMS: when the code sent runs out"
    )


class DependantRules(BaseModel):
    max_per_guardian: int = Field(description="Family members one account may hold")
    adult_age: int = Field(description="From this age a family member must consent")
    consent_ttl_seconds: int


class GuardianRead(BaseModel):
    id: uuid.UUID
    relationship: Relationship
    state: Literal["pending_consent", "active"]
    guardian_masked_name: str
    created_at: dt.datetime
