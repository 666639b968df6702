from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from yuekang.schemas import Instant, PlainLine, StrictModel


class ScanUpload(StrictModel):
    scan_id: str = Field(
        pattern=r"^[\x21-\x7e]{1,64}$", description="Chosen by the checkpoint; unique for it"
    )
    code_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{22}$",
        description="Null when the scan was unreadable",
    )
    scanned_at: Instant
    verdict: Literal["valid", "invalid", "cannot_verify"]
    reason: str | None = Field(default=None, pattern=r"^[a-z_]{1,32}$")
    decision: Literal["allow", "deny", "manual_check"] | None = Field(
        default=None,
        description="What the place's policy made of the verdict, as the device decided it; "
        "left out by devices older than it. A verdict that is not `valid` is always `deny` (or "
        "null); a `valid` one sent with null (the device could not decide) is refused.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ScanUpload:
        # A record a device could not have made is refused rather than counted: a valid verdict
        # is of a code that was read (its id) with nothing wrong with it (no reason); any other
        # verdict says why; and it is denied everywhere.
        if self.verdict == "valid":
            if self.code_id is None:
                raise PydanticCustomError(
                    "code_id_missing", "a valid verdict names the code it was given to"
                )
            if self.reason is not None:
                raise PydanticCustomError(
                    "reason_with_valid", "a valid verdict has no reason: leave reason out"
                )
        else:
            if self.decision not in (None, "deny"):
                raise PydanticCustomError(
                    "decision_not_deny", "a code that is not valid is denied everywhere"
                )
            if self.reason is None:
                raise PydanticCustomError(
                    "reason_missing", "a verdict that is not valid gives its reason"
                )
        return self

    @property
    def undecided(self) -> bool:
        """A valid verdict sent with ``"decision": null``: the device judged the code but could
        not decide (the browser scanner before its registration is synced). Left out, the
        decision is an older device's, which the statistics work out from the code's status;
        null must not be read so, as a pass, and no stored value stands for "undecided", so the
        upload sets such a scan aside in ``refused`` (docs/CHECKPOINTS.md)."""
        return self.verdict == "valid" and "decision" in self.model_fields_set and not self.decision


class ScanBatch(StrictModel):
    scans: list[ScanUpload] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _each_scan_once(self) -> ScanBatch:
        # A device numbers its scans: two records under one id in a batch are not two scans,
        # and storing either silently left the batch's counts not adding up (hostile review).
        ids = [scan.scan_id for scan in self.scans]
        if len(set(ids)) != len(ids):
            raise PydanticCustomError("scan_id_repeated", "each scan id appears once in a batch")
        return self


class ScanBatchResult(BaseModel):
    received: int
    stored: int = Field(description="New records")
    duplicates: int = Field(description="Already stored from an earlier upload: skipped")
    refused: list[str] = Field(
        default=[],
        description="Scan ids not stored: dated in the future or past retention, or a valid "
        "verdict whose decision is null (the device could not decide)",
    )


class ScanRead(BaseModel):
    checkpoint_id: uuid.UUID
    code_id: str | None
    scanned_at: dt.datetime
    verdict: str
    reason: str | None
    source: str
    method: Literal["code", "document"] = Field(
        description="`document`: the person's document was checked instead of a code (刷证核验)"
    )


class CaseReference(StrictModel):
    case_reference: PlainLine = Field(min_length=3, max_length=100, description="Audited")


class ResolvedPerson(BaseModel):
    resident_id: uuid.UUID
