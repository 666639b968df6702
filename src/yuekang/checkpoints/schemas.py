from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from yuekang.residents.documents import DocType
from yuekang.schemas import PlainLine, StrictModel


class VerifyRequest(BaseModel):
    """Not a StrictModel: whatever a scanner read, NUL bytes included, is judged by the verifier
    (verdict ``malformed``) rather than refused, and it is never stored."""

    # Keyboard-wedge scanners end a scan with CR/LF.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    qr_text: str = Field(max_length=4096, description="The text read from the QR code")


class DocumentCheck(StrictModel):
    """A document typed at a checkpoint or read from the card."""

    doc_type: DocType
    doc_number: str = Field(min_length=1, max_length=32, examples=["11010519491231002X"])


class ReasonRead(BaseModel):
    code: str = Field(description="A stable reason code; see docs/API.md")
    message: str


class SourceRead(BaseModel):
    issuer: str
    kid: str
    digest: str = Field(description="First 128 bits of SHA-256 over the partner's code text")


class VerdictRead(BaseModel):
    verdict: Literal["valid", "invalid"]
    status: Literal["green", "yellow", "red"] | None
    reasons: list[ReasonRead]
    code_id: str | None
    issuer: str | None
    kid: str | None
    masked_name: str | None
    issued_at: int | None = Field(description="UTC seconds")
    expires_at: int | None = Field(description="UTC seconds")
    warnings: list[ReasonRead] = Field(
        default=[], description="Notes that do not change the verdict (offline: a stale bundle)"
    )
    decision: Literal["allow", "deny", "manual_check"] | None = Field(
        default=None, description="The checkpoint's policy applied to the verdict"
    )
    decision_reason: str | None = None
    origin: str | None = Field(
        default=None,
        description="`guangdong`, `converted_from_macao`, `issued_by_macao` (EXCHANGE.md) or "
        "`document_check` (a document checked instead of a code)",
    )
    source: SourceRead | None = Field(
        default=None, description="For a converted code: the partner code it came from"
    )
    assurance: Literal["proofed", "counter", "dependant", "partner"] | None = Field(
        default=None,
        description="How the holder's identity was proved (docs/IDENTITY.md); null when the "
        "code does not say (issued before proofing existed)",
    )


class CheckpointCreate(StrictModel):
    name: PlainLine = Field(min_length=1, max_length=128)
    kind: Literal["venue", "transport", "border"] = Field(
        "venue", description="Which policy applies at this place"
    )
    region_code: str | None = Field(default=None, pattern=r"^[0-9]{6}$")


class CheckpointCreated(BaseModel):
    id: uuid.UUID
    name: str
    kind: str = "venue"
    region_code: str | None = None
    created_at: dt.datetime
    api_key: str = Field(description="Shown once; only its hash is stored")


class CheckpointRead(BaseModel):
    id: uuid.UUID
    name: str
    kind: str
    region_code: str | None
    region_name: str | None = Field(description="The GB/T 2260 division's name, when known")
    enabled: bool
    created_at: dt.datetime
    disabled_at: dt.datetime | None
    last_scan_at: dt.datetime | None = Field(
        description="The latest scan on record (records are purged after the retention period)"
    )
