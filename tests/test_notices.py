"""What a process keeps until the database says it changed (yuekang.notices): the rules of
keeping, and this process's own commits dropping what they change."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import importlib.util
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from yuekang.checkpoints.models import Checkpoint
from yuekang.db import create_engine, migrate, migrations_dir
from yuekang.notices import TRIGGERS, Watched, kept_here


def live(capacity: int = 10) -> Watched[str, str]:
    watched: Watched[str, str] = Watched(capacity)
    watched.listening(True)
    return watched


def test_a_row_read_is_kept_until_its_key_changes():
    watched = live()
    watched.put("a", "row a", watched.stamp())
    watched.put("b", "row b", watched.stamp())
    assert watched.get("a") == "row a"
    watched.changed("a")
    assert watched.get("a") is None
    assert watched.get("b") == "row b"


def test_a_read_that_raced_a_change_is_not_kept():
    watched = live()
    stamp = watched.stamp()  # the read begins
    watched.changed("a")  # a change is heard while it is under way
    watched.put("a", "old row", stamp)
    assert watched.get("a") is None
    # Another key's read, begun at the same time, is kept: the change was not to its row.
    watched.put("b", "row b", stamp)
    assert watched.get("b") == "row b"
    # A read begun after the change is kept.
    watched.put("a", "new row", watched.stamp())
    assert watched.get("a") == "new row"


def test_nothing_is_kept_unless_listening_and_a_lost_connection_drops_everything():
    watched: Watched[str, str] = Watched(10)
    assert watched.stamp() is None
    watched.put("a", "row", watched.stamp())
    assert watched.get("a") is None

    watched.listening(True)
    stamp = watched.stamp()
    watched.put("a", "row", stamp)
    watched.listening(False)  # changes may go unheard from now
    assert watched.get("a") is None
    watched.put("b", "row", stamp)
    assert watched.get("b") is None
    # Back up: a read begun while down is not kept, one begun after is.
    watched.listening(True)
    watched.put("b", "row", stamp)
    assert watched.get("b") is None
    watched.put("b", "row", watched.stamp())
    assert watched.get("b") == "row"


def test_the_oldest_entries_go_beyond_capacity():
    watched = live(capacity=2)
    for key in "abc":
        watched.put(key, f"row {key}", watched.stamp())
    assert [watched.get(key) for key in "abc"] == [None, "row b", "row c"]
    assert len(watched) == 2


def test_many_changes_refuse_every_read_in_flight_rather_than_forget_one():
    watched = live(capacity=20_000)
    stamp = watched.stamp()
    for n in range(10_001):
        watched.changed(f"other {n}")
    watched.put("a", "row", stamp)
    assert watched.get("a") is None


@dataclasses.dataclass
class Kept:
    """A SQLite database with a checkpoint ``gate`` whose key this process keeps."""

    sessions: async_sessionmaker[AsyncSession]
    watched: Watched[str, str]
    gate: Checkpoint
    now: dt.datetime


@pytest.fixture
async def kept(tmp_path: Path) -> AsyncIterator[Kept]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'yuekang.db'}"
    await asyncio.to_thread(migrate, url)
    engine = create_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    watched: Watched[str, str] = Watched(10)
    watched.listening(True)
    kept_here("checkpoints", watched)
    now = dt.datetime.now(dt.UTC)
    gate = Checkpoint(
        id=uuid.uuid4(), name="gate", kind="venue", key_hash=b"x" * 32, created_at=now
    )
    async with sessions() as session, session.begin():
        session.add(gate)
    watched.put(gate.id.hex, "key", watched.stamp())
    try:
        yield Kept(sessions, watched, gate, now)
    finally:
        await engine.dispose()


async def test_this_processs_own_commits_drop_what_they_change(kept: Kept):
    sessions, watched, gate, now = kept.sessions, kept.watched, kept.gate, kept.now
    other = uuid.uuid4()
    watched.put(other.hex, "other key", watched.stamp())

    # Changed and rolled back: kept.
    async with sessions() as session, session.begin():
        row = await session.get(Checkpoint, gate.id)
        assert row is not None
        row.disabled_at = now
        await session.flush()
        await session.rollback()
    assert watched.get(gate.id.hex) == "key"

    # Changed through the ORM and committed: dropped at once, the other kept.
    async with sessions() as session, session.begin():
        row = await session.get(Checkpoint, gate.id)
        assert row is not None
        row.disabled_at = now
    assert watched.get(gate.id.hex) is None
    assert watched.get(other.hex) == "other key"

    # A DELETE statement names its rows by a condition: everything kept is dropped.
    async with sessions() as session, session.begin():
        await session.execute(delete(Checkpoint).where(Checkpoint.id == uuid.uuid4()))
    assert watched.get(other.hex) is None


def test_nothing_is_served_past_the_last_proof_of_listening():
    watched: Watched[str, str] = Watched(10)
    watched.listening(True, until=time.monotonic() + 60)
    watched.put("a", "row", watched.stamp())
    assert watched.get("a") == "row"
    # The connection stopped proving itself (frozen, cut without a word): the row stays in
    # memory but is not served, and no new read is kept.
    watched.proved(time.monotonic() - 0.001)
    assert watched.get("a") is None
    assert watched.stamp() is None
    watched.proved(time.monotonic() + 60)
    assert watched.get("a") == "row"


async def test_a_savepoint_rolled_back_keeps_what_the_outer_transaction_changed(kept: Kept):
    sessions, watched, gate, now = kept.sessions, kept.watched, kept.gate, kept.now
    async with sessions() as session, session.begin():
        row = await session.get(Checkpoint, gate.id)
        assert row is not None
        row.disabled_at = now
        await session.flush()
        savepoint = await session.begin_nested()
        row.name = "renamed"
        await session.flush()
        await savepoint.rollback()
    # The outer transaction committed the disabling: dropped at once.
    assert watched.get(gate.id.hex) is None


def test_the_migration_creates_the_triggers_the_processes_check():
    path = Path(migrations_dir()) / "versions" / "20261208_0013_change_notices.py"
    spec = importlib.util.spec_from_file_location("migration_0013", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert migration.TRIGGERS == TRIGGERS
