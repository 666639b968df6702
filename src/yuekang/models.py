"""Every table, imported in one place so Alembic and the schema tests see the whole metadata."""

from yuekang.audit.models import AuditEvent
from yuekang.auth.models import OtpChallenge, RateLimitCounter
from yuekang.checkpoints.models import Checkpoint
from yuekang.db import Base
from yuekang.health_codes.models import HealthCode, Revocation
from yuekang.health_status.models import HealthStatus, StatusChange
from yuekang.keyring.models import SigningKeyRecord
from yuekang.operators.models import Operator
from yuekang.residents.models import Identity, Resident

__all__ = [
    "AuditEvent",
    "Base",
    "Checkpoint",
    "HealthCode",
    "HealthStatus",
    "Identity",
    "Operator",
    "OtpChallenge",
    "RateLimitCounter",
    "Resident",
    "Revocation",
    "SigningKeyRecord",
    "StatusChange",
]
