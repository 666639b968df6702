"""What the console's dashboard and audit view read. Counts, checkpoint ids and states only: no
answer here names a resident, a document or a phone."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field


class DayCodes(BaseModel):
    day: dt.date = Field(description="A local day (UTC+8)")
    green: int
    yellow: int
    red: int


class DayPeople(BaseModel):
    day: dt.date = Field(description="A local day (UTC+8)")
    green: int = Field(description="Residents whose status was green at the end of the day")
    yellow: int
    red: int


class PeopleStats(BaseModel):
    current: dict[str, int] = Field(
        description="Residents by their current status (`green`, `yellow`, `red`): the last "
        "decision stored for each, one count per person however many codes they were issued"
    )
    days: list[DayPeople] = Field(
        description="The same counts at the end of each local day of the period (today: now), "
        "worked back from the status changes; every day listed"
    )


class CheckpointScans(BaseModel):
    checkpoint_id: uuid.UUID
    name: str
    kind: str
    valid: int = Field(description="Verdicts: the code (or document) checked out")
    invalid: int
    cannot_verify: int
    allow: int = Field(description="Decisions: the place's policy let the holder through")
    deny: int = Field(description="Turned away; every scan that was not `valid` is one")
    manual_check: int = Field(description="Sent to staff for a manual check")
    decision_unknown: int = Field(
        description="Valid scans whose record keeps no decision (made before decisions were "
        "kept, or uploaded by a device that does not send one) and whose policy also asks for "
        "a recent test, doses or assurance, which the record does not keep"
    )
    allowed_revoked: int = Field(
        description="Let through offline on a code the server had already revoked when it was "
        "scanned (the device's trust bundle was behind): what the device decided, kept, but not "
        "counted in `allow`"
    )


class ScanTotals(BaseModel):
    """Every scan of the period, over all checkpoints (not only the 50 listed)."""

    places: int = Field(description="Checkpoints with at least one scan in the period")
    valid: int
    invalid: int
    cannot_verify: int
    allow: int
    deny: int
    manual_check: int
    decision_unknown: int
    allowed_revoked: int


class DayFeeds(BaseModel):
    day: dt.date = Field(description="A local day (UTC+8)")
    batches: int
    rows_accepted: int
    rows_rejected: int


class BatchSummary(BaseModel):
    id: uuid.UUID
    kind: str
    client: str = Field(description="The feed client's name (an authority system)")
    received_at: dt.datetime
    rows_total: int
    rows_accepted: int
    rows_rejected: int = Field(description="Rows refused, each with an error in the batch report")
    errors_truncated: bool


class FeedStats(BaseModel):
    days: list[DayFeeds]
    latest: list[BatchSummary] = Field(description="The most recent batches, newest first")


class TrustBundleState(BaseModel):
    version: int
    issued_at: dt.datetime
    expires_at: dt.datetime
    age_seconds: int
    freshness: Literal["fresh", "aging", "expired"] = Field(
        description="`aging` past half its lifetime (no checkpoint has asked for a new one), "
        "`expired` past `expires_at`"
    )


class PartnerCircuit(BaseModel):
    partner: str
    circuit: Literal["open", "closed"]
    failures: int
    open_until: dt.datetime | None


class OutboxStats(BaseModel):
    states: dict[str, int] = Field(
        description="Messages by state: pending, delivered, refused, failed (all ever written)"
    )
    partners: list[PartnerCircuit]
    circuits_open: int


class Overview(BaseModel):
    generated_at: dt.datetime
    days: int
    utc_offset: str = Field(description="The offset the local days are counted in")
    first_day: dt.date
    last_day: dt.date
    people: PeopleStats
    codes: list[DayCodes] = Field(
        description="Codes issued per local day by colour, every day listed: a count of codes, "
        "not of people: one resident is issued many codes over a period"
    )
    scans: list[CheckpointScans] = Field(
        description="Scans in the period per checkpoint, busiest first (at most 50)"
    )
    scans_truncated: bool = Field(
        description="More checkpoints had scans than `scans` lists: add up `scan_totals`, "
        "not `scans`"
    )
    scan_totals: ScanTotals = Field(description="The scans of every checkpoint, summed")
    feeds: FeedStats
    trust_bundle: TrustBundleState | None = Field(description="None until a bundle was built")
    outbox: OutboxStats


class AuditEventRead(BaseModel):
    id: int
    at: dt.datetime
    actor_type: str
    actor_id: str
    action: str
    subject_type: str
    subject_id: str
    detail: dict[str, Any]


class AuditPage(BaseModel):
    events: list[AuditEventRead] = Field(description="Newest first")
    next_before_id: int | None = Field(
        description="Pass as `before_id` for the next (older) page; null on the last page"
    )


class StaffRead(BaseModel):
    id: uuid.UUID
    name: str
    role: str
