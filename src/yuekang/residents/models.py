from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import Base, UTCDateTime


class Resident(Base):
    """A person who signed in with a phone number. The phone is stored only encrypted, and found
    again through its blind index."""

    __tablename__ = "residents"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    phone_index: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    phone_ct: Mapped[bytes] = mapped_column(LargeBinary)
    phone_key_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Identity(Base):
    """The real-name document bound to a resident: every personal field encrypted with AES-GCM,
    the key id beside each ciphertext, the document findable only through a keyed blind index."""

    __tablename__ = "identities"

    resident_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True
    )
    doc_type: Mapped[str] = mapped_column(String(32))
    doc_index: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    name_ct: Mapped[bytes] = mapped_column(LargeBinary)
    doc_number_ct: Mapped[bytes] = mapped_column(LargeBinary)
    birth_date_ct: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(32))
    # The masked name is printed inside every code; keeping it beside the ciphertext saves a
    # decryption per issuance and reveals nothing the QR does not already show.
    masked_name: Mapped[str] = mapped_column(String(64))
    bound_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
