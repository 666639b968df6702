"""Feed clients and batch ingestion.

A batch is checked row by row as it streams in; good rows are written in chunks inside the
request's one transaction, bad rows are reported (line, field, reason). When the body ends, the
status of every registered person the batch touched is decided again -- still in that transaction
-- so the batch, its facts, the new statuses and the revoked codes commit together or not at all.
The client's ``Idempotency-Key`` names the batch: sending it again returns the first result.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang import apikeys
from yuekang.audit import service as audit
from yuekang.exceptions import BadRequest, Conflict, PayloadTooLarge, ValidationFailed
from yuekang.feeds import repository
from yuekang.feeds.models import FeedBatch, FeedClient
from yuekang.feeds.parse import BodyRejected, Format, Line, read_rows
from yuekang.feeds.rows import SPECS, FeedKind, RowContext, RowRejected, check_fully
from yuekang.health_status import service as health_status
from yuekang.pii import BlindIndex
from yuekang.principals import Actor
from yuekang.residents.documents import local_date
from yuekang.residents.service import doc_indexer
from yuekang.rules import RuleSet

KEY_PREFIX = "ykf_"
CHUNK_ROWS = 1000


@dataclass(frozen=True, slots=True)
class FeedPrincipal:
    id: uuid.UUID
    name: str
    kinds: frozenset[FeedKind]

    @property
    def actor(self) -> Actor:
        return Actor("feed", self.name)


async def create_client(
    session: AsyncSession, *, name: str, kinds: list[FeedKind], actor: Actor, now: dt.datetime
) -> tuple[FeedClient, str]:
    """A new feed client and its key (shown once; only its hash is kept)."""
    exists = await session.execute(select(FeedClient.id).where(FeedClient.name == name))
    if exists.scalar_one_or_none() is not None:
        raise Conflict(f"a feed client named {name!r} exists", code="feed_client_exists")
    client_id = uuid.uuid4()
    key, key_hash = apikeys.new_key(KEY_PREFIX, client_id)
    client = FeedClient(
        id=client_id,
        name=name,
        kinds=sorted(k.value for k in set(kinds)),
        key_hash=key_hash,
        created_at=now,
    )
    session.add(client)
    await audit.record(
        session,
        actor=actor,
        action="feed_client.create",
        subject_type="feed_client",
        subject_id=str(client_id),
        now=now,
        detail={"name": name, "kinds": client.kinds},
    )
    await session.flush()
    return client, key


async def authenticate(session: AsyncSession, token: str) -> FeedPrincipal | None:
    client = await apikeys.holder(
        session, FeedClient, KEY_PREFIX, token, stored_hash=lambda c: c.key_hash
    )
    if client is None:
        return None
    return FeedPrincipal(client.id, client.name, frozenset(FeedKind(k) for k in client.kinds))


@dataclass(frozen=True)
class Ingested:
    batch: FeedBatch
    replayed: bool


async def find_batch(
    session: AsyncSession, *, client_id: uuid.UUID, idempotency_key: str
) -> FeedBatch | None:
    result = await session.execute(
        select(FeedBatch).where(
            FeedBatch.client_id == client_id, FeedBatch.idempotency_key == idempotency_key
        )
    )
    return result.scalar_one_or_none()


async def client_batch(
    session: AsyncSession, *, client_id: uuid.UUID, batch_id: uuid.UUID
) -> FeedBatch | None:
    """One of this client's batches; another client's is as good as none."""
    batch = await session.get(FeedBatch, batch_id)
    return batch if batch is not None and batch.client_id == client_id else None


async def list_clients(session: AsyncSession) -> list[FeedClient]:
    """Every feed client, by name."""
    return list((await session.execute(select(FeedClient).order_by(FeedClient.name))).scalars())


def _replay(batch: FeedBatch, kind: FeedKind) -> Ingested:
    if batch.kind != kind.value:
        raise Conflict(
            f"this Idempotency-Key was used for a {batch.kind} batch", code="idempotency_key_reused"
        )
    return Ingested(batch, replayed=True)


async def ingest(
    session: AsyncSession,
    *,
    client: FeedPrincipal,
    kind: FeedKind,
    fmt: Format,
    content_type: str,
    idempotency_key: str,
    body: AsyncIterator[bytes],
    blind_index: BlindIndex,
    rules: RuleSet,
    max_rows: int,
    max_reported_errors: int,
    now: dt.datetime,
    clock: Callable[[], dt.datetime],
) -> Ingested:
    previous = await find_batch(session, client_id=client.id, idempotency_key=idempotency_key)
    if previous is not None:
        return _replay(previous, kind)
    batch = FeedBatch(
        id=uuid.uuid4(),
        client_id=client.id,
        kind=kind.value,
        idempotency_key=idempotency_key,
        content_type=content_type,
        rows_total=0,
        rows_accepted=0,
        rows_rejected=0,
        errors=[],
        errors_truncated=False,
        persons_recomputed=0,
        statuses_changed=0,
        codes_revoked=0,
        received_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(batch)
    except IntegrityError:
        # The same batch id is being applied by a concurrent request, which has now committed.
        previous = await find_batch(session, client_id=client.id, idempotency_key=idempotency_key)
        if previous is None:
            raise
        return _replay(previous, kind)

    spec = SPECS[kind]
    writer = repository.FactWriter(session, kind, batch_id=batch.id, now=now)
    context = RowContext(
        now=now,
        today=local_date(now),
        person=doc_indexer(blind_index),
    )
    errors: list[dict[str, Any]] = []
    good: list[tuple[Any, ...]] = []
    total = rejected = dropped = 0

    def full(line: Line) -> tuple[Any, ...] | None:
        """A row the plain path did not take: its tuple if the full checks accept it; otherwise
        None, with its problems reported."""
        nonlocal rejected, dropped
        number, values, problem = line
        if values is not None:
            try:
                return check_fully(spec, values, context)
            except RowRejected as exc:
                problems = exc.problems
        else:
            assert problem is not None
            problems = [problem]
        rejected += 1
        for problem in problems:
            if len(errors) >= max_reported_errors:
                dropped += 1
            else:
                errors.append(
                    {
                        "row": number,
                        "field": problem.field,
                        "reason": problem.reason,
                        "message": problem.message,
                    }
                )
        return None

    try:
        async for rows, accepted in read_rows(body, fmt, spec, context, full):
            total += rows
            if total > max_rows:
                raise PayloadTooLarge(
                    f"a batch holds at most {max_rows} rows; split it", code="batch_too_large"
                )
            good += accepted
            if len(good) >= CHUNK_ROWS:
                await writer.write(good)
                good = []
        if total == 0:
            raise BadRequest("the batch has no rows", code="empty_batch")
        await writer.write(good)
        await writer.finish()
    except BodyRejected as exc:
        raise ValidationFailed(exc.message, code=exc.code) from exc
    finally:
        # Whatever ended the body (a refusal, a client gone), no chunk may still be writing when
        # the transaction rolls back.
        await writer.close()

    window = max(
        (r.when.lasts_days or 0 for r in rules.rules if r.when.fact == "travel"), default=0
    )
    await repository.hold_decision_locks(session, kind)
    touched = await repository.touched_residents(
        session, kind, batch_id=batch.id, window_days=window, today=context.today
    )

    async def stamp(session: AsyncSession, people: Mapping[uuid.UUID, bytes]) -> dt.datetime:
        decided_at = max(clock(), now)
        await repository.restamp(
            session,
            kind,
            batch_id=batch.id,
            persons=list(people.values()),
            written_at=now,
            received_at=decided_at,
        )
        return decided_at

    outcome = await health_status.decide(
        session, resident_ids=touched, rules=rules, now=now, actor=client.actor, after_lock=stamp
    )
    batch.rows_total = total
    batch.rows_rejected = rejected
    batch.rows_accepted = total - rejected
    batch.errors = errors
    batch.errors_truncated = dropped > 0
    batch.persons_recomputed = outcome.persons
    batch.statuses_changed = outcome.changed
    batch.codes_revoked = outcome.revoked
    await session.flush()
    return Ingested(batch, replayed=False)
