from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import Base, UTCDateTime


class SigningKeyRecord(Base):
    """A health-code signing key. The private half is PKCS#8 encrypted with the key passphrase;
    the database alone never yields a usable key.

    States: ``pending`` (published, may not sign yet), ``active`` (signs), ``retired`` (signs no
    more; published until its last code expires), ``compromised`` (never trusted again).
    """

    __tablename__ = "signing_keys"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'active', 'retired', 'compromised')", name="state"),
        CheckConstraint("alg IN ('ES256', 'EdDSA')", name="alg"),
    )

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[str] = mapped_column(Text)
    private_pem: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    published_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime)
