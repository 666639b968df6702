"""Moving personal data to the active PII key, so that an old key can be removed.

Every personal field is its own AES-GCM ciphertext with the key id in a column beside it
(``yuekang.pii``): a new active key takes effect for new writes at once, and rows written under
an older key stay readable for as long as that key is configured. Removing a key therefore
needs every row still under it re-encrypted first. :data:`SEALED` lists where the personal
fields are; a test checks that every ``*_ct`` column of the schema is in it.

The job is safe beside a running service:

- it works in batches, each in its own short transaction, selected by key id so a batch that is
  repeated (after a crash, or a second run) finds only what is left: resumable and idempotent;
- a batch locks its rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so it never waits for a
  request holding one, and a request never waits long for it;
- each row is written back only if it still holds the very ciphertexts that were read (and the
  same key id): a row a request rewrote in between -- a rebinding, a process still on the old
  active key -- is left as the request wrote it, counted as ``changed``, and taken by the next
  run if it is still under an old key.

It is not a read of personal data by a person: nothing decrypted leaves the process. Each batch
writes one audit event (``pii.reencrypt``, by the user who ran the command) with its table and
how many rows moved from which key, so the audit log says when personal data was re-encrypted
and by whom.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from yuekang.appeals.models import Appeal
from yuekang.audit import service as audit
from yuekang.db import Base
from yuekang.dependants.models import Guardianship
from yuekang.exchange.models import OutboxMessage
from yuekang.pii import PiiCipher, PiiDecryptionError
from yuekang.principals import Actor
from yuekang.residents.models import Identity, Resident


@dataclass(frozen=True)
class Sealed:
    """A table's encrypted personal fields, which share one key-id column. The associated data
    of each is ``<table>.<column without _ct>:<primary key>``, as the services write it."""

    model: type[Base]
    key_column: str
    columns: tuple[str, ...]

    @property
    def table(self) -> str:
        return str(self.model.__tablename__)

    def attribute(self, name: str) -> InstrumentedAttribute[Any]:
        attribute: InstrumentedAttribute[Any] = getattr(self.model, name)
        return attribute

    @property
    def primary_key(self) -> InstrumentedAttribute[Any]:
        (column,) = inspect(self.model).primary_key
        return self.attribute(str(column.key))

    def context(self, column: str, row_id: uuid.UUID) -> str:
        return f"{self.table}.{column.removesuffix('_ct')}:{row_id}"


SEALED: tuple[Sealed, ...] = (
    Sealed(Resident, "phone_key_id", ("phone_ct",)),
    Sealed(Identity, "key_id", ("name_ct", "doc_number_ct", "birth_date_ct")),
    Sealed(Guardianship, "phone_key_id", ("phone_ct",)),
    Sealed(Appeal, "key_id", ("text_ct",)),
    Sealed(OutboxMessage, "key_id", ("payload_ct",)),
)


async def rows_by_key(session: AsyncSession) -> dict[str, dict[str, int]]:
    """How many rows of each table are under each key id (tables with none left out)."""
    counts: dict[str, dict[str, int]] = {}
    for sealed in SEALED:
        key = sealed.attribute(sealed.key_column)
        result = await session.execute(
            select(key, func.count()).where(key.is_not(None)).group_by(key).order_by(key)
        )
        found = {str(kid): int(n) for kid, n in result.all()}
        if found:
            counts[sealed.table] = found
    return counts


async def keys_that_do_not_open(session: AsyncSession, cipher: PiiCipher) -> dict[str, str]:
    """Configured key ids whose key does not open a row stored under that id -- a key id given
    the wrong bytes -- each with the table where it failed. One row per table and key id is
    tried; its plaintext is dropped at once (a check of the key, not a read of the person).
    Counting key ids alone called such a database readable (hostile review)."""
    failing: dict[str, str] = {}
    for sealed in SEALED:
        pk, key = sealed.primary_key, sealed.attribute(sealed.key_column)
        column = sealed.columns[0]
        for kid in sorted(cipher.key_ids - set(failing)):
            row = (
                await session.execute(
                    select(pk, sealed.attribute(column))
                    .where(key == kid, sealed.attribute(column).is_not(None))
                    .limit(1)
                )
            ).first()
            if row is None:
                continue
            try:
                cipher.decrypt(row[1], key_id=kid, context=sealed.context(column, row[0]))
            except PiiDecryptionError:
                failing[kid] = sealed.table
    return failing


@dataclass(frozen=True)
class Batch:
    """What one batch did. ``last`` is where the next batch of the table starts (None: the
    table had nothing left after the start)."""

    last: uuid.UUID | None
    seen: int
    reencrypted: int
    changed: int
    unreadable: tuple[uuid.UUID, ...]


async def reencrypt_batch(
    session: AsyncSession,
    sealed: Sealed,
    *,
    cipher: PiiCipher,
    after: uuid.UUID | None,
    limit: int,
    actor: Actor,
    now: dt.datetime,
) -> Batch:
    """Re-encrypt under the active key up to ``limit`` rows of ``sealed`` that are under another
    configured key, in primary-key order after ``after``. Rows under a key id that is not
    configured cannot be read and are not selected (``rows_by_key`` shows them)."""
    old_keys = sorted(cipher.key_ids - {cipher.active_key_id})
    if not old_keys:
        return Batch(None, 0, 0, 0, ())
    pk, key = sealed.primary_key, sealed.attribute(sealed.key_column)
    columns = [sealed.attribute(c) for c in sealed.columns]
    query = (
        select(pk, key, *columns)
        .where(key.in_(old_keys))
        .order_by(pk)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if after is not None:
        query = query.where(pk > after)
    rows = (await session.execute(query)).all()
    moved: Counter[str] = Counter()
    changed = 0
    unreadable: list[uuid.UUID] = []
    for row in rows:
        row_id, kid, old = row[0], row[1], row[2:]
        try:
            plain = [
                None
                if ct is None
                else cipher.decrypt(ct, key_id=kid, context=sealed.context(c, row_id))
                for c, ct in zip(sealed.columns, old, strict=True)
            ]
        except PiiDecryptionError:
            unreadable.append(row_id)
            continue
        new = {
            c: None if p is None else cipher.encrypt(p, context=sealed.context(c, row_id))[0]
            for c, p in zip(sealed.columns, plain, strict=True)
        }
        unchanged = [
            column.is_(None) if ct is None else column == ct
            for column, ct in zip(columns, old, strict=True)
        ]
        written = await session.execute(
            update(sealed.model)
            .where(pk == row_id, key == kid, *unchanged)
            .values({sealed.key_column: cipher.active_key_id, **new})
            .execution_options(synchronize_session=False)
        )
        if getattr(written, "rowcount", 0) == 1:
            moved[kid] += 1
        else:
            changed += 1
    if moved:
        await audit.record(
            session,
            actor=actor,
            action="pii.reencrypt",
            subject_type=sealed.table,
            subject_id=cipher.active_key_id,
            now=now,
            detail={"from": dict(moved), "rows": sum(moved.values())},
        )
    return Batch(
        last=rows[-1][0] if rows else None,
        seen=len(rows),
        reencrypted=sum(moved.values()),
        changed=changed,
        unreadable=tuple(unreadable),
    )
