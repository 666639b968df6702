"""Database plumbing: the declarative base, portable column types, engines and migrations.

One schema serves SQLite (the embedded default) and PostgreSQL. The schema is always built by the
Alembic migrations in ``migrations/``, never by ``create_all``, so what tests run against is what
production runs against.
"""

from __future__ import annotations

import datetime as dt
import errno
import inspect
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import BigInteger, DateTime, Integer, MetaData, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    AsyncSessionTransaction,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


BIGINT_PK = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit autoincrementing key; SQLite only autoincrements an ``INTEGER PRIMARY KEY``."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC timestamps on both databases.

    SQLite has no time zones: values are stored as naive UTC and come back tagged as UTC. A naive
    value handed in is a bug, so it is refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass timezone-aware UTC times")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    read_only: bool = False,
    pre_ping: bool = False,
    serial: bool = False,
    timeouts: Timeouts | None = None,
    pooler: Pooler = "none",
) -> AsyncEngine:
    """An async engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout.

    On SQLite, transactions take the write lock when they begin, unless the engine is
    ``read_only``: such an engine serves reads made while a request's own transaction holds the
    lock (the key ring's refresh), which would otherwise wait for themselves. On PostgreSQL,
    ``pooler="transaction"`` suits a pooler in transaction mode (:func:`pooler_connect_args`)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            private_sqlite_file(Path(database))
        # ``serial``: one connection, so that concurrent writers of one process queue for it
        # in order instead of polling SQLite's lock with growing sleeps.
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            hide_parameters=True,
            **({"pool_size": 1, "max_overflow": 0} if serial else {}),
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets several server processes read while one writes; the busy timeout makes
            # writers queue instead of failing at once.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            # The driver's own transaction handling sends no BEGIN before a SAVEPOINT, so a
            # savepoint's RELEASE would commit for real; take over and begin explicitly.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            # IMMEDIATE takes the write lock up front: a transaction that reads and then writes
            # waits for other writers (busy_timeout) instead of failing on a stale snapshot.
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        _drop_broken_connections(engine)
        return engine
    # No pre-ping for requests: it is a round trip before every transaction. A connection that
    # died is found by its first use instead, dropped, and answered 503 database_unavailable
    # (app.py). Engines used seldom (the key ring's refresh) can afford the ping.
    limits = timeouts or Timeouts()
    engine = create_async_engine(
        url,
        # Parameters hold health codes and ciphertext: never in a log line or an error's text
        # (logs.py), whatever logging is turned on.
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_pre_ping=pre_ping,
        pool_timeout=limits.pool,
        # A server that stopped answering (frozen, partitioned away) is found within these,
        # instead of every request hanging until it comes back.
        connect_args={
            "timeout": limits.connect,
            "command_timeout": limits.statement,
            **pooler_connect_args(pooler),
        },
    )
    _drop_broken_connections(engine)
    _writable_host_first(engine)
    return engine


Pooler = Literal["none", "transaction"]
"""What stands between the service and PostgreSQL (``DatabaseSettings.pooler``)."""


def pooler_connect_args(pooler: Pooler) -> dict[str, Any]:
    """asyncpg's arguments for connections through ``pooler``.

    In transaction mode (pgbouncer ``pool_mode=transaction``) a client's consecutive transactions
    may run on different server connections, and a server connection is handed to the next
    client as it is, nothing reset. asyncpg's own statement cache names every statement it
    prepares (``__asyncpg_stmt_<n>__``, n counting from 1 in each process) and keeps it on the
    server connection where it was prepared: through the pooler the next transaction finds it
    missing ("does not exist"), or another process's statement of the same name already there
    ("already exists"), after a restart too. ``statement_cache_size=0`` makes asyncpg use the
    unnamed statement instead, parsed again in the same round trip as every execution, so
    nothing outlives a transaction; pgbouncer 1.18 (Debian 12) tracks no prepared statements
    (``max_prepared_statements`` came in 1.21).

    SQLAlchemy's own statement cache (``prepared_statement_cache_size``) stays on: what it keeps
    is client-side (the statement's parameter and column types), and with asyncpg's cache off
    each execution parses again on whatever server connection it meets. Turning it off too would
    cost a second round trip, and a second parse, for every statement (measured:
    loadtests/bench_pooler.py). ``prepared_statement_name_func`` (SQLAlchemy's advice for
    pgbouncer) is not used: unique names make named statements that stay on server connections
    nobody resets in transaction mode, a leak, where the unnamed one is replaced by the next.
    """
    if pooler == "transaction":
        return {"statement_cache_size": 0}
    return {}


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for PostgreSQL: a connection, a statement, a pooled connection."""

    connect: float = 2.0
    statement: float = 5.0
    pool: float = 2.0


# SQLSTATE classes of a server that cannot serve now, rather than of a mistaken request:
# connection exceptions, insufficient resources (disk full, too many connections), operator
# intervention (shutting down, starting up, statement cancelled by its timeout), system errors
# (I/O), and writing to a read-only server (a standby, a full disk set read-only).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57", "58")
_UNAVAILABLE_SQLSTATES = frozenset({"25006"})
_NETWORK_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH}
)
# What SQLite says when its file cannot be written now (read-only, full, an I/O error).
_SQLITE_UNAVAILABLE = (
    "readonly database",
    "database or disk is full",
    "disk i/o error",
    "unable to open database file",
)


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot serve now -- unreachable, down, starting,
    frozen past a timeout, read-only, full -- rather than that a request was wrong. Such a
    request is answered ``503 database_unavailable`` and the connection behind it dropped."""
    if isinstance(exc, SQLAlchemyTimeout | TimeoutError | ConnectionError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        original: BaseException | None = exc.orig
    else:
        original = exc
    if original is None:
        return False
    if isinstance(original, TimeoutError | ConnectionError):
        return True
    if isinstance(original, OSError) and (
        original.errno in _NETWORK_ERRNOS or "connect call failed" in str(original).lower()
    ):
        # asyncpg's own words for a server it could not reach at one or several addresses.
        return True
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if isinstance(sqlstate, str) and (
        sqlstate in _UNAVAILABLE_SQLSTATES or sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES
    ):
        return True
    name = type(original).__name__
    if name in ("InterfaceError", "InternalClientError", "ConnectionDoesNotExistError"):
        # asyncpg: a connection lost, closed, or left busy by a statement that timed out.
        return True
    message = str(original).lower()
    return name == "OperationalError" and any(text in message for text in _SQLITE_UNAVAILABLE)


def _drop_broken_connections(engine: AsyncEngine) -> None:
    """A connection that met an unavailable database is not given back to the pool: the next
    request opens a new one, so the service recovers by itself once the database is back (a
    SQLite connection opened while the file was read-only stays read-only)."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _handle_error(context: Any) -> None:
        if database_unavailable(context.original_exception) or (
            context.sqlalchemy_exception is not None
            and database_unavailable(context.sqlalchemy_exception)
        ):
            context.is_disconnect = True
            # Every pooled connection of a server that went away is as good as this one.
            context.invalidate_pool_on_disconnect = True


def _writable_host_first(engine: AsyncEngine) -> None:
    """A multi-host ``database_url`` (``?host=h1:5432&host=h2:5432&target_session_attrs=
    read-write``) connects to whichever host takes writes, every host tried at once, each with
    the whole connect timeout.

    asyncpg tries the hosts in turn within one timeout for them all: with the old primary
    partitioned away (its address answers nothing) and listed first, every attempt spent the
    timeout there and the promoted standby behind it was never asked -- 503s until someone
    changed the DSN. Tried together, the first connection after a failover takes no longer
    than one connection to the new primary."""

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        hosts = cparams.get("host")
        wanted = cparams.get("target_session_attrs")
        if isinstance(hosts, list) and len(hosts) > 1 and wanted in ("read-write", "primary"):
            # In place of asyncpg.connect, with the same arguments (SQLAlchemy's asyncpg
            # dialect takes the driver's connect function from them).
            cparams["async_creator_fn"] = _connect_writable


async def _connect_writable(
    *, host: list[str], port: list[int], target_session_attrs: str, **kwargs: Any
) -> Any:
    """``asyncpg.connect`` to the first of ``host`` that takes writes."""
    import asyncio

    import asyncpg  # type: ignore[import-untyped]

    async def attempt(address: str, number: int) -> Any:
        connection = await asyncpg.connect(host=address, port=number, **kwargs)
        try:
            settings = connection.get_settings()
            standby = getattr(settings, "in_hot_standby", None)
            if standby is None:  # a server before PostgreSQL 14 does not tell
                writable = await connection.fetchval(
                    "SELECT NOT pg_is_in_recovery() "
                    "AND NOT current_setting('default_transaction_read_only')::bool"
                )
            else:
                read_only = getattr(settings, "default_transaction_read_only", "off")
                writable = standby == "off" and read_only == "off"
        except BaseException:
            connection.terminate()
            raise
        if not writable:
            connection.terminate()
            raise asyncpg.TargetServerAttributeNotMatched(
                f"{address}:{number} does not take writes ({target_session_attrs})"
            )
        return connection

    pending = {asyncio.ensure_future(attempt(h, p)) for h, p in zip(host, port, strict=True)}
    chosen = None
    failures: list[BaseException] = []
    try:
        while pending and chosen is None:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                failure = task.exception()
                if failure is not None:
                    failures.append(failure)
                elif chosen is None:
                    chosen = task.result()
                else:
                    task.result().terminate()
    finally:
        for task in pending:
            task.cancel()
    if chosen is None:
        # A server that answered "not writable" says more than one that did not answer.
        refusals = [f for f in failures if isinstance(f, asyncpg.TargetServerAttributeNotMatched)]
        raise (refusals or failures)[0]
    return chosen


def private_sqlite_file(path: Path) -> None:
    """Make a new SQLite database's folder (0700) and file (0600) for this user only: it holds
    personal data, if encrypted, and its blind indexes. SQLite gives its -wal and -shm files the
    database file's permissions. An existing folder or file is left as its owner set it."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def migrations_dir() -> Path:
    """The Alembic script directory: shipped inside the wheel, or at the top of a checkout."""
    packaged = Path(__file__).parent / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` with Alembic (synchronous; call off-loop)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        private_sqlite_file(Path(parsed.database))
    command.upgrade(config, revision)


async def schema_behind(url: str, *, pooler: Pooler = "none") -> str | None:
    """Why the database at ``url`` cannot serve this version, in one line naming the fix -- no
    tables, or a schema behind the code's migrations -- or None when it is at head. A database
    that does not answer is None too: the service starts and its readiness says so (a
    database outage must not stop processes starting). Through a pooler, ``pooler`` as the
    service's engines have it: another process's statements left on a pooled server connection
    would otherwise fail the check, and a failed check reads as a database that did not answer."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    script = ScriptDirectory.from_config(config)
    heads = set(script.get_heads())
    engine = create_async_engine(url, connect_args=pooler_connect_args(pooler))
    # Alembic says which dialect it talks to at INFO: not news before a one-line answer.
    quiet = logging.getLogger("alembic.runtime.migration")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(
                lambda sync: set(MigrationContext.configure(sync).get_current_heads())
            )
    except (OSError, DBAPIError):
        return None
    finally:
        quiet.setLevel(level)
        await engine.dispose()
    where = shown_url(url)
    if not current:
        return f"the database at {where} has no schema: run `yuekang db upgrade` first"
    # A revision this version does not know is a later one: a rolling update runs the old
    # code on the new schema (migrations expand first, docs/OPERATIONS.md), so that is fine.
    known = {rev for rev in current if _known_revision(script, rev)}
    if known and known != heads and known == current:
        return (
            f"the database at {where} is at migration {', '.join(sorted(current))}, this "
            f"version needs {', '.join(sorted(heads))}: run `yuekang db upgrade` first"
        )
    return None


def _known_revision(script: Any, revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def shown_url(url: str) -> str:
    """``url`` as a message may show it: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def after_commit(session: AsyncSession, action: Callable[[], Awaitable[None] | None]) -> None:
    """Run ``action`` once the session's transaction has committed (never if it rolls back).

    For what must not happen inside the transaction: sending an SMS while row locks are held,
    dropping a cache before the change it reflects is visible."""
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


async def run_after_commit(session: AsyncSession) -> None:
    for action in session.info.pop(_AFTER_COMMIT, []):
        result = action()
        if inspect.isawaitable(result):
            await result


def discard_after_commit(session: AsyncSession) -> None:
    session.info.pop(_AFTER_COMMIT, None)


_AFTER_COMMIT = "yuekang.after_commit"


class Savepoint:
    """A nested transaction whose rollback also forgets the after-commit actions queued since it
    began: a message about a change the savepoint undid must not be sent when the transaction
    around it commits (a refused conversion keeps its record, not the release it undid)."""

    def __init__(self, session: AsyncSession, nested: AsyncSessionTransaction) -> None:
        self._session = session
        self._nested = nested
        self._mark = len(session.info.get(_AFTER_COMMIT, []))

    async def rollback(self) -> None:
        await self._nested.rollback()
        queued = self._session.info.get(_AFTER_COMMIT)
        if queued is not None:
            del queued[self._mark :]

    async def commit(self) -> None:
        await self._nested.commit()


async def savepoint(session: AsyncSession) -> Savepoint:
    """Begin a :class:`Savepoint` in ``session``'s transaction."""
    return Savepoint(session, await session.begin_nested())


@asynccontextmanager
async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One transaction, committed when the block ends and then its after-commit actions run;
    rolled back, whatever the exception, when it raises. A refusal that must leave a record
    (a wrong OTP guess) is returned as a value (``exceptions.Refusal``), not raised.

    The request dependency opens one per request. A flow that calls an outside system in the
    middle of a request (the identity registry) opens one before the call and one after, so
    that no row lock -- and on SQLite not the database's write lock -- is held while it waits."""
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            discard_after_commit(session)
            raise
        else:
            await session.commit()
            await run_after_commit(session)


def dialect_name(session: AsyncSession) -> str:
    bind = session.bind
    if bind is None:
        raise RuntimeError("the session is not bound to an engine")
    return bind.dialect.name
