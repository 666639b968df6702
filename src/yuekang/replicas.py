"""Reads that tolerate a bounded staleness, from PostgreSQL streaming replicas
(``YUEKANG_DATABASE__REPLICA_URLS``).

**What goes to a replica.** The resident's status page, the checkpoints' trust bundle and the
console's statistics read through :meth:`AppContext.bounded_read
<yuekang.context.AppContext.bounded_read>`. Everything else -- every write, and every read that
must see its own writes (sign-in, issuance, scans, the audit log, an admin's key list) -- stays
on ``database_url``. The JWKS never queries per request: it is the key ring's snapshot, which
also picks the signing key, so it stays on the primary with it (a JWKS read from a lagging
replica could miss a key this process already signs with). With no replica configured none of
this exists: no engine, no task, no cookie.

**How stale a replica is.** Every :data:`CHECK_SECONDS` (or a quarter of the bound, if less) a
background task asks the primary for its clock (``clock_timestamp()``) and then a WAL position
that holds every commit it had acknowledged by that time T, then every replica at once for
``pg_is_in_recovery()`` and ``pg_last_wal_replay_lsn()``: one query each, on connections of the
checks' own, never one on a request's path. A replica that has replayed that position holds
every commit acknowledged before T: it is *fresh as of T*, and its lag is now minus T. An idle
primary's position does not move, so a replica that has replayed it is fresh as of the last
check -- lag within one check interval, not the growing
``now() - pg_last_xact_replay_timestamp()``. Comparing the replica's receive and replay LSNs was
not enough either: a standby cut off from its primary has replayed all it received and would
look caught up while falling behind without end. Times are the primary's clock (the process
keeps its offset from each sample), so a freshness measured by one process means the same in
another.

Which position: with ``synchronous_commit`` on (or ``local``, ``remote_write``,
``remote_apply``) a commit is acknowledged once its WAL is flushed, so the flushed position
(``pg_current_wal_flush_lsn()``) holds it, and a caught-up replica reaches exactly that. With
``off`` a commit is acknowledged as soon as its record is *inserted*, before the flush (measured:
commit after commit past the flushed position when acknowledged), so the position is the end
of the last record inserted. ``pg_current_wal_insert_lsn()`` is where the next record goes:
when the last one ended at a page's end, that is past the next page's header, which no replica
reaches until more WAL is written (an idle primary: never), so the header is taken off
(:func:`last_record_end`). Records inserted but not flushed (a transaction still open, a page
pruned by a read) hold a replica back until the next commit is flushed -- with asynchronous
commit the WAL writer does so within a few ``wal_writer_delay``; at worst reads go to the
primary, never to a replica missing an acknowledged write. The setting that applies is the one
the service's sessions get: the checks' session's own (the server's, after a reload), or off
if a database or role default set since that session opened says so. Once seen off it is taken
for off until the primary changes (a restart, a failover): a statement that began before a
reload turning it on may still commit asynchronously after.

A replica is read from only while it answers, is in recovery (a promoted one is a primary now,
not a copy of ours), and its lag -- growing between checks -- is within
``replica_max_lag_seconds``; otherwise reads go to the primary. One that comes back is used
again after its next check, at most one interval later. A read a replica fails (it went away
between checks, a query cancelled by a conflict with recovery) is asked of the primary at once,
and the replica is not used again until a check finds it well.

**Read-your-writes.** Every successful answer to a signed-in resident sets the cookie
:data:`COOKIE`: the primary's time of that answer. The status page goes to a replica only if it
is fresh as of that time -- it holds everything the resident wrote (a bound identity, a code and
the status it carries) and everything an earlier answer showed them -- and to the primary
otherwise. A browser sends the cookie by itself (the page's ``fetch`` is same-origin); it expires
after the lag bound, when every replica in use is fresher anyway. A client that keeps no cookies
(or the resident's other phone) reads within the bound, as anyone else does. It holds a time,
nothing about the person.

**A read that would write.** A replica's session refuses to flush a change or to run an
INSERT, UPDATE, DELETE or SELECT ... FOR UPDATE: it raises :class:`NeedsPrimary` before
anything reaches the server, and the read is done again on the primary (a status that lapsed
and must be decided again, a trust bundle that must be signed anew). So does any refusal the
read raised (a 404 from a replica that has not seen the binding yet): the primary's answer is
the one given.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from sqlalchemy import Executable, Row, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from yuekang import headers
from yuekang.auth.service import read_session_token
from yuekang.config import ConfigurationError
from yuekang.db import Pooler, Timeouts, create_engine, database_unavailable
from yuekang.exceptions import YuekangError

log = logging.getLogger(__name__)

T = TypeVar("T")

CHECK_SECONDS = 0.5
"""How often the primary's position and each replica's are read (at most; less than a quarter
of the lag bound)."""

COOKIE = "yk_seen"
"""The read-your-writes cookie: the primary's time, in milliseconds, of the resident's last
answer."""

COOKIE_PATH = "/v1/me"
"""Where the cookie is sent back: the resident's own reads."""

_MILLISECONDS = re.compile(r"[0-9]{1,16}")

_POSITION = text(
    # The clock before the WAL positions (a target list is evaluated in order): a commit
    # acknowledged before the time read is in the positions read after it.
    "SELECT extract(epoch FROM clock_timestamp()) AS at, "
    # Whether the service's sessions may commit asynchronously: this session's setting (the
    # server's, after a reload), or a database or role default set since it was opened. A
    # value that is not one of those that flush first is taken for off.
    "current_setting('synchronous_commit') = 'off' OR EXISTS ("
    " SELECT FROM pg_db_role_setting, unnest(setconfig) AS given"
    " WHERE setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))"
    " AND setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = session_user))"
    " AND lower(split_part(given, '=', 1)) = 'synchronous_commit'"
    " AND lower(split_part(given, '=', 2)) NOT IN"
    " ('on', 'true', 'yes', '1', 'local', 'remote_write', 'remote_apply')"
    ") AS asynchronous, "
    "pg_current_wal_flush_lsn() - '0/0'::pg_lsn AS flushed, "
    "pg_current_wal_insert_lsn() - '0/0'::pg_lsn AS inserted, "
    "current_setting('wal_block_size')::bigint AS block, "
    "pg_size_bytes(current_setting('wal_segment_size')) AS segment, "
    "concat_ws(' ', inet_server_addr(), inet_server_port(), pg_postmaster_start_time()) AS server"
)

_SHORT_PAGE_HEADER = 24
_LONG_PAGE_HEADER = 40
"""The sizes of a WAL page's header (``SizeOfXLogShortPHD``) and of the one opening a segment
(``SizeOfXLogLongPHD``), on the 64-bit servers PostgreSQL is built for (8-byte alignment)."""


def last_record_end(inserted: int, *, block: int, segment: int) -> int:
    """The end of the last WAL record inserted, from ``pg_current_wal_insert_lsn()``: where the
    next record goes, which is past the page header when the last one ended at a page's end
    (``XLogBytePosToRecPtr``). A replica that replayed that record is at the page boundary,
    never past the header: without this it would look behind until more WAL is written."""
    if inserted % segment == _LONG_PAGE_HEADER:
        return inserted - _LONG_PAGE_HEADER
    if inserted % segment >= block and inserted % block == _SHORT_PAGE_HEADER:
        return inserted - _SHORT_PAGE_HEADER
    return inserted


_REPLAYED = text(
    "SELECT pg_is_in_recovery() AS recovering, pg_last_wal_replay_lsn() - '0/0'::pg_lsn AS replayed"
)

State = Literal["unknown", "streaming", "unreachable", "not_in_recovery"]


class NeedsPrimary(Exception):
    """This read is the primary's: no replica is fresh enough, or the read on one would have
    to write, failed, or refused."""


class ReadOnlySession(Session):
    """A session that only reads: on a replica (see the module's docstring), or on the primary
    without a transaction (``AppContext.bounded_read``). What would write or lock raises
    :class:`NeedsPrimary` before anything reaches the server."""


@event.listens_for(ReadOnlySession, "before_flush")
def _refuse_flush(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    if session.new or session.deleted or any(session.is_modified(o) for o in session.dirty):
        raise NeedsPrimary("a read on a replica would write")


@event.listens_for(ReadOnlySession, "do_orm_execute")
def _refuse_writes(state: ORMExecuteState) -> None:
    locking = state.is_select and getattr(state.statement, "_for_update_arg", None) is not None
    if state.is_insert or state.is_update or state.is_delete or locking:
        raise NeedsPrimary("a read on a replica would write or lock")


@dataclass
class Replica:
    """One streaming replica: the engine reads go through, and what its checks found."""

    name: str
    """``host:port``, for logs and the metrics' ``replica`` label (never the credentials)."""
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    probe: AsyncEngine
    """The checks' own connection: a full request pool does not make a replica look behind."""
    state: State = "unknown"
    fresh_as_of: float | None = None
    """Primary time (epoch seconds) before which every acknowledged commit is replayed here."""

    @functools.cached_property
    def autocommit(self) -> AsyncEngine:
        """``engine`` sending no BEGIN or COMMIT: a read here is one round trip."""
        return self.engine.execution_options(isolation_level="AUTOCOMMIT")


@dataclass(frozen=True, slots=True)
class _Position:
    at: float
    lsn: int


@dataclass
class Replicas:
    """The replicas of one process, checked in the background while :meth:`start` runs."""

    replicas: Sequence[Replica]
    primary: AsyncEngine
    """The probe of ``database_url`` (multi-host: whichever server takes writes)."""
    max_lag: float
    interval: float = CHECK_SECONDS
    _offset: float = field(default_factory=lambda: time.time() - time.monotonic())
    """The primary's clock minus this process's monotonic clock (until the first sample: the
    wall clock's)."""
    _uncertainty: float = 0.0
    _positions: deque[_Position] = field(default_factory=deque)
    _server: str | None = None
    _asynchronous: bool | None = None
    _task: asyncio.Task[None] | None = None
    _checking: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    _turn: Iterator[int] = field(default_factory=itertools.count)

    @classmethod
    def build(
        cls,
        urls: Sequence[str],
        *,
        primary_url: str,
        max_lag: float,
        timeouts: Timeouts,
        pooler: Pooler = "none",
        pool_size: int = 10,
        max_overflow: int | None = None,
    ) -> Replicas:
        if make_url(primary_url).get_backend_name() != "postgresql" or any(
            make_url(url).get_backend_name() != "postgresql" for url in urls
        ):
            raise ConfigurationError(
                "database.replica_urls are PostgreSQL streaming replicas of a PostgreSQL "
                "database_url"
            )
        # A check that waits longer than this tells nothing fresh: the replica is skipped.
        quick = Timeouts(connect=timeouts.connect, statement=1.0, pool=1.0)
        replicas = []
        for url in urls:
            engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=max_overflow,
                timeouts=timeouts,
                pooler=pooler,
            )
            replicas.append(
                Replica(
                    name=_name(url),
                    engine=engine,
                    sessionmaker=async_sessionmaker(
                        engine.execution_options(isolation_level="AUTOCOMMIT"),  # as autocommit
                        expire_on_commit=False,
                        autoflush=False,
                        sync_session_class=ReadOnlySession,
                    ),
                    probe=create_engine(url, pool_size=1, timeouts=quick, pooler=pooler),
                )
            )
        return cls(
            replicas=replicas,
            primary=create_engine(primary_url, pool_size=1, timeouts=quick, pooler=pooler),
            max_lag=max_lag,
            interval=min(CHECK_SECONDS, max_lag / 4),
        )

    # --- the background checks ------------------------------------------------------------

    async def start(self) -> None:
        """Check once (so that the first requests can use a replica that is fresh), then go on
        checking in the background until :meth:`close`."""
        await self._round(wait=None)
        self._task = asyncio.create_task(self._every())

    async def close(self) -> None:
        running: list[asyncio.Future[None]] = [c for c in self._checking.values() if not c.done()]
        if self._task is not None:
            running.append(self._task)
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for replica in self.replicas:
            await replica.engine.dispose()
            await replica.probe.dispose()
        await self.primary.dispose()

    async def _every(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self._round(wait=self.interval)
            except Exception:
                log.exception("replica check failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def _round(self, *, wait: float | None) -> None:
        """The primary's position, then each replica's at once: a replica is measured
        against the position read just before, so a caught-up replica's lag is the time
        since this round. A replica slow to answer is waited for at most ``wait`` seconds;
        its check goes on, and the next round leaves it be until it ends."""
        await self._sample_primary()
        for index, replica in enumerate(self.replicas):
            checking = self._checking.get(index)
            if checking is not None and not checking.done():
                continue
            if checking is not None and not checking.cancelled() and checking.exception():
                log.error("replica check failed", exc_info=checking.exception())
            self._checking[index] = asyncio.ensure_future(self._check(replica))
        await asyncio.wait(self._checking.values(), timeout=wait)

    async def _sample_primary(self) -> None:
        """The primary's clock, and then the WAL position that holds every commit it had
        acknowledged by then."""
        sent = time.monotonic()
        try:
            async with self.primary.connect() as connection:
                row = (await connection.execute(_POSITION)).one()
        except Exception as exc:
            if not database_unavailable(exc):
                log.warning("replica checks: the primary's WAL position not read (%s)", _why(exc))
            return
        received = time.monotonic()
        if row.server != self._server:
            self._asynchronous = None
        asynchronous = bool(row.asynchronous) or bool(self._asynchronous)
        if asynchronous:
            # A commit is acknowledged once its record is inserted, before it is flushed (the
            # WAL writer flushes it within a few wal_writer_delay): what was inserted by now
            # holds every acknowledged commit.
            covered = last_record_end(int(row.inserted), block=row.block, segment=row.segment)
        else:
            covered = int(row.flushed)
        if asynchronous and not self._asynchronous:
            self._asynchronous = True
            log.warning(
                "replica checks: the primary commits asynchronously (synchronous_commit=off):"
                " replicas are measured against the WAL it inserted, not flushed"
            )
        at = float(row.at)
        self._offset = at - (sent + received) / 2
        self._uncertainty = (received - sent) / 2
        if row.server != self._server:
            # Another primary (a failover) or the same one restarted: its positions say
            # nothing about what the replicas hold of the one before. Measure again.
            if self._server is not None:
                log.warning("replica checks: the primary changed; replicas measured again")
                for replica in self.replicas:
                    replica.fresh_as_of = None
            self._positions.clear()
            self._server = row.server
        self._positions.append(_Position(at, covered))
        while self._positions and self._positions[0].at < at - self.max_lag - 2 * self.interval:
            self._positions.popleft()

    async def _check(self, replica: Replica) -> None:
        """How far ``replica`` has replayed, against the primary's positions sampled before."""
        known = list(self._positions)
        try:
            async with replica.probe.connect() as connection:
                row = (await connection.execute(_REPLAYED)).one()
        except Exception as exc:
            self._set(replica, "unreachable", exc)
            return
        if not row.recovering or row.replayed is None:
            replica.fresh_as_of = None
            self._set(replica, "not_in_recovery")
            return
        replayed = int(row.replayed)
        fresh = max((p.at for p in known if p.lsn <= replayed), default=None)
        if fresh is not None and (replica.fresh_as_of is None or fresh > replica.fresh_as_of):
            replica.fresh_as_of = fresh
        self._set(replica, "streaming")

    def _set(self, replica: Replica, state: State, exc: BaseException | None = None) -> None:
        if state != replica.state:
            if state == "streaming":
                log.info("replica %s streaming: reads may use it", replica.name)
            elif state == "not_in_recovery":
                # Expected for the primary when every member is listed (the runbook's way), so
                # not a warning; a standby promoted by mistake is the orchestrator's to report.
                log.info(
                    "replica %s is not in recovery (the primary, or promoted): not read from",
                    replica.name,
                )
            elif state == "unreachable":
                log.warning(
                    "replica %s unreachable (%s): not read from",
                    replica.name,
                    "" if exc is None else _why(exc),
                )
        replica.state = state

    # --- choosing ---------------------------------------------------------------------------

    def primary_now(self) -> float:
        """The primary's clock now, as well as this process knows it (epoch seconds)."""
        return time.monotonic() + self._offset

    def lag(self, replica: Replica) -> float | None:
        """Seconds ``replica`` is behind the primary now; None when it serves no reads (it
        does not answer, is not in recovery, or was never measured)."""
        if replica.state != "streaming" or replica.fresh_as_of is None:
            return None
        return max(0.0, self.primary_now() - replica.fresh_as_of)

    def choose(self, seen: float | None = None) -> Replica | None:
        """A replica within the lag bound that holds everything committed before ``seen``
        (primary time), in turn; None when there is none."""
        usable = []
        for replica in self.replicas:
            lag = self.lag(replica)
            if lag is None or lag > self.max_lag:
                continue
            assert replica.fresh_as_of is not None
            if seen is not None and replica.fresh_as_of < seen:
                continue
            usable.append(replica)
        if not usable:
            return None
        return usable[next(self._turn) % len(usable)]

    async def read(self, work: Callable[[AsyncSession], Awaitable[T]], *, seen: float | None) -> T:
        """``work`` on a replica, or :class:`NeedsPrimary`."""
        replica = self.choose(seen)
        if replica is None:
            raise NeedsPrimary("no replica is fresh enough")
        async with self._asking_primary_if_failed(replica), replica.sessionmaker() as session:
            return await work(session)

    async def read_row(
        self,
        statement: Executable,
        params: Mapping[str, Any],
        *,
        seen: float | None,
        absent_is_answer: bool = False,
    ) -> Row[Any] | None:
        """The one row ``statement`` reads, on a replica without a transaction, or
        :class:`NeedsPrimary` -- also when it finds none (the replica may not hold it yet),
        unless ``absent_is_answer``."""
        replica = self.choose(seen)
        if replica is None:
            raise NeedsPrimary("no replica is fresh enough")
        async with (
            self._asking_primary_if_failed(replica),
            replica.autocommit.connect() as connection,
        ):
            row = (await connection.execute(statement, params)).one_or_none()
        if row is None and not absent_is_answer:
            raise NeedsPrimary("not on the replica")
        return row

    @contextlib.asynccontextmanager
    async def _asking_primary_if_failed(self, replica: Replica) -> AsyncIterator[None]:
        """A read on ``replica`` that refuses, would write or fails becomes
        :class:`NeedsPrimary`; a replica that cannot be reached is set aside until its next
        good check."""
        try:
            yield
        except (NeedsPrimary, YuekangError) as exc:
            raise NeedsPrimary(str(exc)) from exc
        except Exception as exc:
            if database_unavailable(exc):
                self._set(replica, "unreachable", exc)
            else:
                log.warning(
                    "a read on replica %s failed (%s): asked of the primary",
                    replica.name,
                    _why(exc),
                )
            raise NeedsPrimary("the replica failed") from exc

    # --- read-your-writes -----------------------------------------------------------------

    def fence(self) -> int:
        """The cookie's value for an answer given now: the primary's time in milliseconds,
        rounded up past the clock offset's uncertainty."""
        return math.ceil((self.primary_now() + self._uncertainty) * 1000)

    def cookie(self, *, secure: bool) -> bytes:
        age = math.ceil(self.max_lag) + 1
        attributes = f"Path={COOKIE_PATH}; Max-Age={age}; HttpOnly; SameSite=Strict"
        return f"{COOKIE}={self.fence()}; {attributes}{'; Secure' if secure else ''}".encode()

    def figures(self) -> tuple[dict[str, float], dict[str, bool]]:
        """For the metrics: each replica's lag (when it has one) and whether it serves reads. A
        member that is not in recovery is no replica now -- the primary, listed among the
        replicas as the runbook allows, or one promoted -- and is left out: its "not serving"
        would page (YuekangReplicaNotServing) for as long as it leads."""
        lags, serving = {}, {}
        for replica in self.replicas:
            if replica.state == "not_in_recovery":
                continue
            lag = self.lag(replica)
            if lag is not None:
                lags[replica.name] = round(lag, 3)
            serving[replica.name] = lag is not None and lag <= self.max_lag
        return lags, serving


class ReadYourWrites:
    """Sets :data:`COOKIE` on every successful answer to a signed-in resident. Installed only
    when replicas are configured."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = headers.bearer_token(scope) if scope["type"] == "http" else None
        # A resident's session token is a JWT; the keys of machines and staff are not.
        if token is None or token.count(".") != 2:
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                context = scope["app"].state.context
                if context.replicas is not None and _resident(context, token):
                    cookie = context.replicas.cookie(secure=scope.get("scheme") == "https")
                    message = {**message, "headers": [*message["headers"], (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, sending)


def _resident(context: Any, token: str) -> bool:
    """Whether ``token`` is a resident's valid session (checked once per token: remembered)."""
    try:
        read_session_token(
            token,
            secret=context.secrets.session_secret,
            issuer=context.settings.issuer,
            now=context.clock.now(),
        )
    except YuekangError:
        return False
    return True


def seen(cookies: Mapping[str, str]) -> float | None:
    """The primary time a request's :data:`COOKIE` names (epoch seconds), or None."""
    value = cookies.get(COOKIE)
    # ASCII digits only: Starlette decodes the header as latin-1, and str.isdigit() also takes
    # '²' '³' '¹', which int() refuses -- a 500 for a cookie anyone can send.
    if value is None or _MILLISECONDS.fullmatch(value) is None:
        return None
    return int(value) / 1000


def _name(url: str) -> str:
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


def _why(exc: BaseException) -> str:
    """An error's kind and SQLSTATE, never its text (which may quote parameters)."""
    original = getattr(exc, "orig", None) or exc
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    return type(original).__name__ + (f" {sqlstate}" if sqlstate else "")
