"""Status rows and checkpoint keys kept in the process until PostgreSQL notifies a change
(yuekang.notices, migration 0013), against a real server: a kept read asks the database nothing,
a change made anywhere -- by hand, on another connection -- is heard, and while the notification
connection is down nothing is kept."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import event

from conftest import RunningApp, make_settings, start_app
from support.api import Resident
from support.postgres import create_database
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.config import DatabaseSettings
from yuekang.db import migrate


@pytest.fixture
def url(pg_server: str) -> str:
    url = create_database(pg_server)
    migrate(url)
    return url


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@contextlib.asynccontextmanager
async def app_on(url: str, keys: Path, kept_rows: int = 1000) -> AsyncIterator[RunningApp]:
    settings = make_settings(url, keys, database=DatabaseSettings(kept_rows=kept_rows))
    clock = ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    async with contextlib.aclosing(start_app(settings, clock, MemorySmsSender())) as apps:
        async for running in apps:
            assert running.context.notices is not None
            await asyncio.wait_for(running.context.notices.connected.wait(), 10)
            yield running


async def until(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, what
        await asyncio.sleep(0.01)


@contextlib.contextmanager
def statements(running: RunningApp) -> Iterator[list[str]]:
    """The statements the app's request engine sends meanwhile."""
    sent: list[str] = []

    def count(*args: Any) -> None:
        sent.append(str(args[2]))

    engine = running.context.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def by_hand(url: str, *statements: tuple[Any, ...]) -> None:
    """``(sql, *arguments)`` statements typed by hand on a connection of the test's own, in one
    transaction: the app hears of them only through PostgreSQL."""
    connection = await asyncpg.connect(dsn(url))
    try:
        async with connection.transaction():
            for sql, *arguments in statements:
                await connection.execute(sql, *arguments)
    finally:
        await connection.close()


async def read_status(running: RunningApp, resident: Resident, etag: str | None = None) -> Any:
    headers = {**resident.auth, **({"If-None-Match": etag} if etag else {})}
    return await running.client.get("/v1/me/status", headers=headers)


async def test_a_kept_status_asks_nothing_until_a_change_by_hand_is_heard(url: str, tmp_path: Path):
    async with app_on(url, tmp_path / "keys") as running:
        resident = await running.api.registered()
        resident_id = await running.resident_id(resident)
        first = await read_status(running, resident)
        assert first.json()["status"] == "green"
        with statements(running) as sent:
            again = [await read_status(running, resident) for _ in range(3)]
            unchanged = await read_status(running, resident, first.headers["ETag"])
        assert [r.json() for r in again] == [first.json()] * 3
        assert unchanged.status_code == 304
        assert sent == []

        # A statement typed by hand, on a connection of its own: the trigger tells the app.
        await by_hand(
            url, ("UPDATE health_status SET vaccine_doses = 3 WHERE resident_id = $1", resident_id)
        )
        await until(
            lambda: running.context.statuses.get(resident_id) is None, "the change went unheard"
        )
        changed = await read_status(running, resident, first.headers["ETag"])
        assert changed.status_code == 200
        assert changed.json()["vaccination"]["doses"] == 3
        assert changed.headers["ETag"] != first.headers["ETag"]


async def test_a_change_made_by_this_process_is_read_by_its_next_request(url: str, tmp_path: Path):
    async with app_on(url, tmp_path / "keys") as running:
        resident = await running.api.registered()
        assert (await read_status(running, resident)).json()["status"] == "green"
        await running.set_red(resident)
        # No wait: the commit dropped the kept row before the notification came back.
        assert (await read_status(running, resident)).json()["status"] == "red"


async def test_a_checkpoint_key_disabled_by_hand_is_refused_once_heard(url: str, tmp_path: Path):
    async with app_on(url, tmp_path / "keys") as running:
        key = await running.checkpoint_key()
        auth = {"Authorization": f"Bearer {key}"}
        synced = await running.client.get("/v1/trust-bundle", headers=auth)
        assert synced.status_code == 200
        checkpoint_id = uuid.UUID(key.removeprefix("ykc_")[:32])
        assert running.context.checkpoint_keys.get(checkpoint_id.hex) is not None

        await by_hand(url, ("UPDATE checkpoints SET name = 'renamed' WHERE id = $1", checkpoint_id))
        # A rename is not a change of key: the key stays kept.
        await asyncio.sleep(0.2)
        assert running.context.checkpoint_keys.get(checkpoint_id.hex) is not None
        await by_hand(
            url, ("UPDATE checkpoints SET disabled_at = now() WHERE id = $1", checkpoint_id)
        )
        await until(
            lambda: running.context.checkpoint_keys.get(checkpoint_id.hex) is None,
            "the disabling went unheard",
        )
        refused = await running.client.get("/v1/trust-bundle", headers=auth)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_checkpoint_key"


async def test_nothing_is_kept_while_the_notification_connection_is_down(url: str, tmp_path: Path):
    async with app_on(url, tmp_path / "keys") as running:
        notices = running.context.notices
        assert notices is not None
        resident = await running.api.registered()
        await read_status(running, resident)
        pid = notices.backend_pid

        connection = await asyncpg.connect(dsn(url))
        try:
            await connection.execute("SELECT pg_terminate_backend($1)", pid)
            await until(lambda: not running.context.statuses.live, "the loss went unnoticed")
            assert len(running.context.statuses) == 0
            # Down: every read asks the database, and what it read is not kept.
            with statements(running) as sent:
                for _ in range(2):
                    assert (await read_status(running, resident)).status_code == 200
            assert len(sent) >= 2

            # Back by itself, and keeping again.
            await asyncio.wait_for(notices.connected.wait(), 10)
            assert notices.backend_pid != pid
            await read_status(running, resident)
            with statements(running) as sent:
                assert (await read_status(running, resident)).status_code == 200
            assert sent == []
        finally:
            await connection.close()


async def test_nothing_is_kept_when_told_to_keep_nothing(url: str, tmp_path: Path):
    settings = make_settings(url, tmp_path / "keys", database=DatabaseSettings(kept_rows=0))
    clock = ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    async with contextlib.aclosing(start_app(settings, clock, MemorySmsSender())) as apps:
        async for running in apps:
            assert running.context.notices is None
            resident = await running.api.registered()
            await read_status(running, resident)
            with statements(running) as sent:
                await read_status(running, resident)
            assert len(sent) == 1


async def test_a_disabled_trigger_keeps_nothing_anywhere(url: str, tmp_path: Path):
    # Triggers dropped or disabled (a restore with --disable-triggers, a hand): no change would
    # be told, so no process keeps a row. It is checked at every proof, not only at the start.
    async with app_on(url, tmp_path / "keys") as running:
        notices = running.context.notices
        assert notices is not None
        connection = await asyncpg.connect(dsn(url))
        try:
            await connection.execute("ALTER TABLE checkpoints DISABLE TRIGGER checkpoint_deleted")
            await until(lambda: not notices.connected.is_set(), "a disabled trigger unnoticed")
            resident = await running.api.registered()
            await read_status(running, resident)
            with statements(running) as sent:
                await read_status(running, resident)
            assert len(sent) == 1
            assert len(running.context.statuses) == 0
            await connection.execute(
                "ALTER TABLE checkpoints ENABLE ALWAYS TRIGGER checkpoint_deleted"
            )
            await asyncio.wait_for(notices.connected.wait(), 10)
        finally:
            await connection.close()


async def test_a_change_made_as_a_replica_applies_it_is_still_told(url: str, tmp_path: Path):
    # session_replication_role = replica is how pg_restore --disable-triggers and logical
    # replication write: the triggers are enabled ALWAYS, so they fire then too.
    async with app_on(url, tmp_path / "keys") as running:
        key = await running.checkpoint_key()
        auth = {"Authorization": f"Bearer {key}"}
        assert (await running.client.get("/v1/trust-bundle", headers=auth)).status_code == 200
        checkpoint_id = uuid.UUID(key.removeprefix("ykc_")[:32])
        await by_hand(
            url,
            ("SET LOCAL session_replication_role = replica",),
            ("UPDATE checkpoints SET disabled_at = now() WHERE id = $1", checkpoint_id),
        )
        await until(
            lambda: running.context.checkpoint_keys.get(checkpoint_id.hex) is None,
            "the disabling went unheard",
        )
        assert (await running.client.get("/v1/trust-bundle", headers=auth)).status_code == 401


async def test_a_kept_checkpoints_id_with_a_secret_in_other_characters_is_a_401(
    url: str, tmp_path: Path
):
    async with app_on(url, tmp_path / "keys") as running:
        key = await running.checkpoint_key()
        good = await running.client.get(
            "/v1/trust-bundle", headers={"Authorization": f"Bearer {key}"}
        )
        assert good.status_code == 200
        prefix = key.rsplit("_", 1)[0]
        odd = f"Bearer {prefix}_ééé".encode("latin-1")
        refused = await running.client.get("/v1/trust-bundle", headers={"Authorization": odd})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_checkpoint_key"


async def test_a_decision_written_under_another_rule_set_is_told(url: str, tmp_path: Path):
    # A process whose rule book is a few seconds behind may write over a row others keep; they
    # must hear of it, whichever rule set is the newer (the newcomer review).
    async with app_on(url, tmp_path / "keys") as running:
        resident = await running.api.registered()
        resident_id = await running.resident_id(resident)
        assert (await read_status(running, resident)).json()["status"] == "green"
        await by_hand(
            url,
            (
                "UPDATE health_status SET status = 'red', rule_set_version = 'older' "
                "WHERE resident_id = $1",
                resident_id,
            ),
        )
        await until(
            lambda: running.context.statuses.get(resident_id) is None, "the change went unheard"
        )
