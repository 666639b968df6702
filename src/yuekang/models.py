"""Every table, imported in one place so Alembic and the schema tests see the whole metadata."""

from yuekang.appeals.models import Appeal
from yuekang.audit.models import AuditEvent, SelfRead
from yuekang.auth.models import OtpChallenge, RateLimitCounter, ResidentSession
from yuekang.checkpoints.models import Checkpoint
from yuekang.db import Base
from yuekang.dependants.models import Guardianship
from yuekang.exchange.models import (
    ConsentReceipt,
    Conversion,
    ExchangeKey,
    ExchangeNonce,
    OutboxMessage,
    Partner,
    PartnerKey,
)
from yuekang.feeds.models import (
    CaseRecord,
    FeedBatch,
    FeedClient,
    NatRecord,
    RiskAreaRecord,
    TravelRecord,
    VaccinationRecord,
)
from yuekang.health_codes.models import HealthCode, Revocation
from yuekang.health_status.models import (
    HealthStatus,
    RuleSetRecord,
    StatusChange,
    StatusOverride,
)
from yuekang.keyring.models import SigningKeyRecord
from yuekang.maintenance import MaintenanceLease
from yuekang.operators.models import Operator
from yuekang.residents.models import Identity, ProofingAttempt, Resident
from yuekang.scans.models import ScanRecord
from yuekang.trust.models import AnchorKey, TrustBundleRecord

__all__ = [
    "AnchorKey",
    "Appeal",
    "AuditEvent",
    "Base",
    "CaseRecord",
    "Checkpoint",
    "ConsentReceipt",
    "Conversion",
    "ExchangeKey",
    "ExchangeNonce",
    "FeedBatch",
    "FeedClient",
    "Guardianship",
    "HealthCode",
    "HealthStatus",
    "Identity",
    "MaintenanceLease",
    "NatRecord",
    "Operator",
    "OtpChallenge",
    "OutboxMessage",
    "Partner",
    "PartnerKey",
    "ProofingAttempt",
    "RateLimitCounter",
    "Resident",
    "ResidentSession",
    "Revocation",
    "RiskAreaRecord",
    "RuleSetRecord",
    "ScanRecord",
    "SelfRead",
    "SigningKeyRecord",
    "StatusChange",
    "StatusOverride",
    "TravelRecord",
    "TrustBundleRecord",
    "VaccinationRecord",
]
