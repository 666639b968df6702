"""Rows kept in memory until PostgreSQL says they changed.

Every phone polls its status page and every checkpoint syncs its trust bundle, and nearly every
answer is the one given last time. Each read cost a database round trip, and the round trip
with the driver's work around it was most of the request (py-spy; issue 20). So the rows these
reads need -- a resident's status, a checkpoint's key -- are kept in the process that read them
(:class:`Watched`) for as long as nothing changes them, and PostgreSQL says when something does:
a trigger on each table (migration 0013) sends ``NOTIFY`` with the row's id when it is updated
or deleted, to every process that listens (:class:`Notices`), whichever process, command or
hand-written statement made the change. An entry is then dropped, and the next read asks the
database.

What this promises and what it does not:

- A change reaches every listening process when it is committed, plus the notification's
  delivery (well under a millisecond on a healthy connection). The process that made the
  change drops its own entry at once, as it commits (:func:`changed_here`): what one request
  wrote, the next request to the same process reads.
- Nothing is kept unless the process is listening, and listening is proved, not assumed:
  every ``check_seconds / 2`` a notification sent on another connection must come back on
  the listening one, and the triggers must be there and enabled ``ALWAYS`` (so a transaction
  pooler in between, or triggers dropped or disabled, keep nothing). An entry is served only
  within ``check_seconds`` of the last proof, whatever the connection is doing (a frozen
  server, a cut that sends nothing). While not proved, every read goes to the database, as
  it did before; entries are kept again once proved, never from a read begun before.
- A status row decided again because it lapsed is not notified (migration 0013): no process
  serves a kept row past its ``valid_until`` (``health_status.service.standing``). A process
  whose rule book is older than a new rule set serves its kept rows until its rule book
  refreshes (``rules.refresh_seconds``), as it decides under its own.
- A read that raced a change is not kept: an entry is kept only if no notification for its key
  arrived since the read began (:meth:`Watched.stamp`).
- SQLite has no notifications, and a pooler in transaction mode cannot carry LISTEN: there the
  rows are not kept at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

log = logging.getLogger("yuekang.notices")

K = TypeVar("K")
V = TypeVar("V")

STATUS_CHANNEL = "yuekang_status"
"""A resident's status row was updated or deleted; the payload is their ``resident_id``."""
CHECKPOINT_KEY_CHANNEL = "yuekang_checkpoint_keys"
"""A checkpoint's key was replaced, it was disabled or enabled, or deleted; the payload is its
id."""

PROBE_CHANNEL = "yuekang_notices_probe"
"""Each check's own notification, sent on another connection, that must come back."""

TRIGGERS = {
    "health_status": (
        "health_status_changed",
        "health_status_deleted",
        "health_status_truncated",
    ),
    "checkpoints": ("checkpoint_key_changed", "checkpoint_deleted", "checkpoints_truncated"),
}
"""Migration 0013's triggers, which must all be enabled ALWAYS for anything to be kept."""

_RECENT_LIMIT = 10_000
"""Keys remembered as changed, for reads in flight; past it, every read in flight is refused."""


class Watched(Generic[K, V]):
    """Rows by key, kept while the database is listened to and nothing changed them.

    A reader takes :meth:`stamp` before reading the database and :meth:`put` s what it read with
    it: the row is kept only if no change to its key (nor a lost connection) was heard since the
    stamp. Oldest entries go first beyond ``capacity``."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: dict[K, V] = {}
        self._live = False
        self._generation = 0
        self._floor = 0
        """Stamps below it are refused: taken before the connection was lost, or before the
        list of recent changes overflowed."""
        self._recent: dict[K, int] = {}
        """Keys changed lately, with the generation when their change was heard."""
        self._until = 0.0
        """Nothing is served after this (``time.monotonic``): the last proof of listening,
        plus ``check_seconds``."""

    @property
    def live(self) -> bool:
        return self._live

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        if time.monotonic() >= self._until:
            return None
        return self._entries.get(key)

    def stamp(self) -> int | None:
        """Taken before a read whose row may be kept; None when nothing is kept now."""
        return self._generation if self._live and time.monotonic() < self._until else None

    def put(self, key: K, value: V, stamp: int | None) -> None:
        """Keeps ``value``, read after ``stamp`` was taken, unless something changed since."""
        if stamp is None or not self._live or stamp < self._floor:
            return
        if self._recent.get(key, -1) >= stamp:
            return
        entries = self._entries
        entries.pop(key, None)
        entries[key] = value
        if len(entries) > self.capacity:
            del entries[next(iter(entries))]

    def changed(self, key: K) -> None:
        """``key``'s row changed: dropped, and reads in flight for it are not kept."""
        self._entries.pop(key, None)
        if len(self._recent) >= _RECENT_LIMIT:
            self._recent.clear()
            self._floor = self._generation + 1
        # A stamp taken before this change is at most this; one taken after, above it.
        self._recent[key] = self._generation
        self._generation += 1

    def forget(self) -> None:
        """Everything kept is dropped, and reads in flight are not kept."""
        self._generation += 1
        self._floor = self._generation
        self._entries.clear()
        self._recent.clear()

    def listening(self, live: bool, *, until: float = float("inf")) -> None:
        """Whether notifications arrive (proved until ``until``). Either way everything kept
        so far is dropped: on the way down, changes may go unheard from now; on the way up,
        some may have gone unheard while down."""
        self.forget()
        self._live = live
        self._until = until if live else 0.0

    def proved(self, until: float) -> None:
        """Listening was proved again: entries may be served until ``until``."""
        self._until = until


class Notices:
    """This process's LISTEN connection to the primary, feeding ``channels``' :class:`Watched`
    (a channel's payload parsed by its ``key`` into the key that changed).

    Opened by :meth:`start` in the background and proved every ``check_seconds / 2`` (the
    triggers enabled, a notification sent on a second connection heard on this one); opened
    again ``retry_seconds`` after it is lost, a proof fails, or one takes longer than
    ``_give_up``. Kept rows are served within ``check_seconds`` of the last proof's start."""

    def __init__(
        self,
        engine: AsyncEngine,
        channels: Mapping[str, tuple[Watched[Any, Any], Callable[[str], Any]]],
        *,
        check_seconds: float = 2.0,
        retry_seconds: float = 1.0,
    ) -> None:
        self._engine = engine
        """Two connections of its own: the listening one and the prover's."""
        self._channels = dict(channels)
        self._check = check_seconds
        self._give_up = max(10.0, 5 * check_seconds)
        """A proof not done by then: the connection is taken as lost, and opened again."""
        self._retry = retry_seconds
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._probe_heard = asyncio.Event()
        self._probe = ""
        self.connected = asyncio.Event()
        """Set while listening is proved (tests wait for it; the log says each change of it:
        "listening for changes to kept rows", "... keeping no rows")."""
        self.backend_pid: int | None = None
        self._failing = False
        self._closing = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="notices")

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        # Cancelled until it is done: on Python 3.11 a cancellation that meets an inner
        # asyncio.wait_for finishing at that moment can be swallowed, and the loop would go on
        # (a test run hung on it at shutdown).
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1)
        await self._engine.dispose()

    def _watched(self) -> list[Watched[Any, Any]]:
        return [watched for watched, _ in self._channels.values()]

    def _down(self) -> None:
        self.connected.clear()
        self.backend_pid = None
        for watched in self._watched():
            watched.listening(False)

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self._listen()
            except asyncio.CancelledError:
                self._down()
                raise
            except Exception as exc:
                # Said once when it starts failing, not every retry.
                if self.connected.is_set() or not self._failing:
                    log.warning(
                        "not listening for changes (%s: %s); keeping no rows",
                        type(exc).__name__,
                        exc,
                    )
                self._failing = True
            self._down()
            await asyncio.sleep(self._retry)

    async def _listen(self) -> None:
        async with self._engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            self._lost.clear()
            driver.add_termination_listener(lambda _connection: self._lost.set())
            try:
                for channel, (watched, key) in self._channels.items():
                    await driver.add_listener(channel, self._listener(watched, key))
                await driver.add_listener(PROBE_CHANNEL, self._heard_probe)
                # Only now: a read begun before LISTEN took effect may have missed a change.
                async with asyncio.timeout(self._give_up):
                    until = await self._prove(driver)
                for watched in self._watched():
                    watched.listening(True, until=until)
                self.backend_pid = driver.get_server_pid()
                self.connected.set()
                self._failing = False
                log.info("listening for changes to kept rows")
                while not self._lost.is_set() and not self._closing:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._check / 2):
                            await self._lost.wait()
                    if self._lost.is_set() or self._closing:
                        break
                    # A proof slower than check_seconds (a saturated server or event loop)
                    # only stops kept rows being served until a quicker one: notifications
                    # still queue for this connection, in commit order, so nothing is missed.
                    # One that does not come at all means the connection is gone.
                    async with asyncio.timeout(self._give_up):
                        until = await self._prove(driver)
                    for watched in self._watched():
                        watched.proved(until)
                if not self._closing:
                    log.warning("the notification connection closed; keeping no rows")
            finally:
                # Its state is unknown (listening, perhaps half-closed): never pooled again.
                with contextlib.suppress(Exception):
                    await connection.invalidate()

    async def _prove(self, driver: Any) -> float:
        """That notifications reach this connection: the triggers are there and enabled ALWAYS,
        and a notification sent on another connection comes back. Everything committed before
        it was then heard (a listener gets notifications in commit order), so kept rows may be
        served until ``check_seconds`` after the proof began, which is returned."""
        begun = time.monotonic()
        names = [name for triggers in TRIGGERS.values() for name in triggers]
        enabled = await driver.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE tgname = ANY($1::text[]) AND tgenabled = 'A'",
            names,
        )
        if enabled != len(names):
            raise RuntimeError(f"{enabled} of the {len(names)} change triggers enabled ALWAYS")
        self._probe = uuid.uuid4().hex
        self._probe_heard.clear()
        async with self._engine.connect() as other:
            await other.exec_driver_sql("SELECT pg_notify($1, $2)", (PROBE_CHANNEL, self._probe))
            await other.commit()
        await self._probe_heard.wait()
        return begun + self._check

    def _heard_probe(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload == self._probe:
            self._probe_heard.set()

    @staticmethod
    def _listener(
        watched: Watched[Any, Any], key: Callable[[str], Any]
    ) -> Callable[[Any, int, str, str], None]:
        def heard(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
            try:
                parsed = key(payload)
            except ValueError:
                # "*" (the table was truncated) or not one of ours: everything rather than
                # miss a change.
                watched.forget()
                return
            watched.changed(parsed)

        return heard


def as_uuid(payload: str) -> uuid.UUID:
    return uuid.UUID(payload)


def as_hex(payload: str) -> str:
    return uuid.UUID(payload).hex


_KEYS: dict[str, Callable[[Any], Any]] = {
    "health_status": lambda row: row.resident_id,
    "checkpoints": lambda row: row.id.hex,
}
"""The tables whose rows are kept, with the key a row is kept by (as the channel's payload is
read: ``as_uuid``, ``as_hex``)."""
_HERE: dict[str, weakref.WeakSet[Watched[Any, Any]]] = {}
_CHANGED = "yuekang.notices.changed"


def kept_here(table: str, watched: Watched[Any, Any]) -> None:
    """``watched`` keeps rows of ``table``: this process's own commits that change one drop it
    at once, before the notification comes back."""
    _HERE.setdefault(table, weakref.WeakSet()).add(watched)


def changed_here(session: Session | AsyncSession, table: str, key: Any) -> None:
    """``session`` changes ``table``'s row ``key``: dropped from what this process keeps when
    it commits (``EVERY`` row: everything kept of the table)."""
    session.info.setdefault(_CHANGED, set()).add((table, key))


EVERY = object()


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context: Any) -> None:
    for row in itertools.chain(session.dirty, session.deleted):
        key = _KEYS.get(getattr(row, "__tablename__", ""))
        if key is not None:
            changed_here(session, row.__tablename__, key(row))


@event.listens_for(Session, "do_orm_execute")
def _executed(state: ORMExecuteState) -> None:
    # An UPDATE or DELETE statement names its rows by a condition, not by key: rare enough
    # (an identity released) that the table's rows are all dropped.
    if (state.is_update or state.is_delete) and state.bind_mapper is not None:
        table = state.bind_mapper.local_table
        name = getattr(table, "name", "")
        if name in _KEYS:
            changed_here(state.session, name, EVERY)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    for table, key in session.info.pop(_CHANGED, ()):
        for watched in list(_HERE.get(table, ())):
            if key is EVERY:
                watched.forget()
            else:
                watched.changed(key)


@event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    # A savepoint rolled back leaves the outer transaction's changes to commit: dropping too
    # much is harmless, forgetting them is not.
    if previous_transaction.parent is None:
        session.info.pop(_CHANGED, None)
