from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import Base, UTCDateTime


class Operator(Base):
    """A member of staff calling the admin API with a bearer token, stored only as a hash."""

    __tablename__ = "operators"
    __table_args__ = (
        CheckConstraint("role IN ('operator', 'epidemiologist', 'admin')", name="role"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
