from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import Base, UTCDateTime


class AnchorKey(Base):
    """The trust anchor: the key that signs checkpoint trust bundles and nothing else. Its
    public half is handed to checkpoints out of band; the private half is PKCS#8-encrypted."""

    __tablename__ = "anchor_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(8))
    public_jwk: Mapped[str] = mapped_column(Text)
    private_pem: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class TrustBundleRecord(Base):
    """A signed bundle as served. A new version is made when its content changes, or when the
    latest is past half its lifetime (re-signed well before checkpoints would see it expire)."""

    __tablename__ = "trust_bundles"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    digest: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    text: Mapped[str] = mapped_column(Text)
