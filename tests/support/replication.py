"""A primary and a streaming standby on 127.0.0.1, for the replica and failover tests: the
standby is made as an operator makes one -- ``pg_basebackup -R -X stream`` from the running
primary, started on a port of its own -- and is promoted with ``pg_ctl promote``.

Both clusters are small (16 MB of shared buffers, 60 connections: the service's pools and the
test's own) and durable: the primary acknowledges a commit once it is in its WAL (and, with
``synchronous``, in the standby's), so a primary killed with ``pg_ctl stop -m immediate`` loses
nothing it acknowledged. ``fsync`` stays off: the tests kill servers, not the machine, and the
kernel keeps what was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from support.postgres import ThrowawayPostgres, create_database

STANDBY_NAME = "standby1"
"""The standby's ``cluster_name``, which its WAL receiver gives the primary as its
``application_name``: the name ``synchronous_standby_names`` lists."""

SMALL = " -c shared_buffers=16MB -c max_connections=60 -c wal_keep_size=64MB"


class Standby(ThrowawayPostgres):
    """A standby of ``primary``: its data directory is a base backup of it, not an initdb."""

    def __init__(self, primary: ThrowawayPostgres) -> None:
        super().__init__(durable=True)
        self.primary = primary
        # hot_standby_feedback: the primary keeps the rows a query on the standby still reads,
        # so replay is not held up (nor the query cancelled) by the primary's vacuum.
        self.options = (
            primary.options + f" -c cluster_name={STANDBY_NAME} -c hot_standby_feedback=on"
        )

    def start(self) -> None:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            str(self.bindir / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        )
        self._pg_ctl_start()

    def promote(self) -> None:
        """``pg_ctl promote``, waiting until the standby takes writes."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "promote")


class Replicated:
    """A primary with one standby; ``synchronous``: every commit waits for the standby to have
    its WAL on disk (``synchronous_commit=on`` and the standby named in
    ``synchronous_standby_names``)."""

    def __init__(self, *, synchronous: bool) -> None:
        self.synchronous = synchronous
        self.primary = ThrowawayPostgres(durable=True)
        self.primary.options += SMALL
        self.standby = Standby(self.primary)
        self.database = ""

    def start(self) -> None:
        self.primary.start()
        self.database = create_database(self.primary.server_url).rsplit("/", 1)[1]
        self.standby.start()
        if self.synchronous:
            # Named once the standby streams: with it named before, the primary's commits
            # would wait for a standby that does not exist yet.
            self.sql(
                self.primary,
                f"ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 ({STANDBY_NAME})'",
            )
            self.sql(self.primary, "SELECT pg_reload_conf()")
        self.wait_streaming()

    def stop(self) -> None:
        for cluster in (self.standby, self.primary):
            with contextlib.suppress(Exception):
                cluster.stop()

    def url(self, cluster: ThrowawayPostgres) -> str:
        return f"{cluster.server_url}/{self.database}"

    @property
    def primary_url(self) -> str:
        return self.url(self.primary)

    @property
    def standby_url(self) -> str:
        return self.url(self.standby)

    @property
    def multi_host_url(self) -> str:
        """Both servers in one DSN: a connection goes to whichever takes writes (SQLAlchemy's
        asyncpg dialect passes the hosts and ``target_session_attrs`` to asyncpg)."""
        return (
            f"postgresql+asyncpg://postgres@/{self.database}"
            f"?host=127.0.0.1:{self.primary.port}&host=127.0.0.1:{self.standby.port}"
            "&target_session_attrs=read-write"
        )

    # --- SQL, outside the service --------------------------------------------------------------

    def sql(self, cluster: ThrowawayPostgres, statement: str, *args: Any) -> Any:
        """One statement on ``cluster`` (autocommit); its rows. From a test's running event
        loop too: in a thread of its own, waited for."""
        with ThreadPoolExecutor(1) as thread:
            return thread.submit(asyncio.run, self.asql(cluster, statement, *args)).result()

    async def asql(self, cluster: ThrowawayPostgres, statement: str, *args: Any) -> Any:
        """One statement from inside a running event loop; its rows."""
        dsn = f"postgresql://postgres@127.0.0.1:{cluster.port}/{self.database}"
        connection = await asyncpg.connect(dsn, timeout=5)
        try:
            return await connection.fetch(statement, *args)
        finally:
            await connection.close()

    def wait_streaming(self, seconds: float = 30) -> None:
        """Until the primary sees the standby streaming (and, synchronous, as its sync standby)."""
        wanted = "sync" if self.synchronous else "async"
        deadline = time.monotonic() + seconds
        while True:
            rows = self.sql(
                self.primary,
                "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = $1",
                STANDBY_NAME,
            )
            if rows and rows[0]["state"] == "streaming" and rows[0]["sync_state"] == wanted:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby is not streaming ({rows})")
            time.sleep(0.05)

    def wait_replayed(self, seconds: float = 30) -> None:
        """Until the standby has replayed everything the primary has flushed now."""
        (row,) = self.sql(self.primary, "SELECT pg_current_wal_flush_lsn() - '0/0'::pg_lsn AS lsn")
        deadline = time.monotonic() + seconds
        while True:
            (replayed,) = self.sql(
                self.standby,
                "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn >= $1 AS done",
                row["lsn"],
            )
            if replayed["done"]:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the standby did not catch up")
            time.sleep(0.02)

    def pause_replay(self) -> None:
        """The standby goes on receiving WAL but applies none of it: a replica falling behind."""
        self.sql(self.standby, "SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.sql(self.standby, "SELECT pg_wal_replay_resume()")


@contextlib.contextmanager
def replicated(*, synchronous: bool) -> Iterator[Replicated]:
    pair = Replicated(synchronous=synchronous)
    try:
        pair.start()
        yield pair
    finally:
        pair.stop()
