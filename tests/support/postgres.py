"""A throwaway PostgreSQL cluster for the test suite: initdb into a temp dir, start on a free
127.0.0.1 port, drop everything on exit. ``YUEKANG_TEST_POSTGRES_URL`` (a server URL without a
database name, e.g. ``postgresql+asyncpg://postgres@127.0.0.1:5432``) uses an existing server."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path


def _bindir() -> Path:
    with contextlib.suppress(FileNotFoundError, subprocess.CalledProcessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries (initdb) not found")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayPostgres:
    def __init__(self, *, durable: bool = False) -> None:
        # ``durable``: commits reach the WAL before they are acknowledged, so that a server
        # killed (not the machine) loses nothing acknowledged; fsync stays off, since the
        # kernel keeps what was written.
        self.options = (
            "-c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off "
            "-c max_connections=200" + ("" if durable else " -c synchronous_commit=off")
        )
        self.bindir = _bindir()
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="yuekang-pg-"))
        self.data = self.root / "data"
        self._as_postgres = os.geteuid() == 0
        self.log = self.root / "server.log"

    def _run(self, *args: str) -> None:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)

    def start(self) -> None:
        if self._as_postgres:
            # initdb refuses to run as root; the cluster belongs to the postgres user.
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        self._pg_ctl_start()

    def _pg_ctl_start(self) -> None:
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "start",
            "-o",
            f"-p {self.port} -k {self.root} {self.options}",
        )

    def _pg_ctl_stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def stop(self) -> None:
        self.thaw()
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl_stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- faults, for the tests of what the service does when its database fails ---------------

    def kill(self) -> None:
        """Stop the server at once, as a crash would (no shutdown checkpoint)."""
        self._pg_ctl_stop()

    def restart(self) -> None:
        """Start it again on the same port, after :meth:`kill` (it recovers from its WAL)."""
        self._pg_ctl_start()

    def _processes(self) -> list[int]:
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return []
        postmaster = int(pid_file.read_text().split()[0])
        children = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    # The fields after the command name, which may hold spaces: state, ppid...
                    if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                        children.append(int(entry))
        return [postmaster, *children]

    def freeze(self) -> None:
        """Stop every process of the server (SIGSTOP): it accepts connections and answers
        nothing, as a network partition looks from the client."""
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    @property
    def server_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}"


def create_database(server_url: str, name: str | None = None) -> str:
    """Create a fresh database on the server and return its asyncpg URL."""
    import asyncio

    import asyncpg

    database = name or f"yk_{uuid.uuid4().hex[:12]}"
    dsn = server_url.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"

    async def create() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'CREATE DATABASE "{database}"')
        finally:
            await connection.close()

    asyncio.run(create())
    return f"{server_url}/{database}"


@contextlib.contextmanager
def private_cluster() -> Iterator[ThrowawayPostgres]:
    """A throwaway cluster of the test's own, to kill, restart and freeze; durable, so that a
    kill loses nothing acknowledged."""
    cluster = ThrowawayPostgres(durable=True)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a server URL: the configured one, or a throwaway cluster's."""
    configured = os.environ.get("YUEKANG_TEST_POSTGRES_URL")
    if configured:
        yield configured.rstrip("/")
        return
    cluster = ThrowawayPostgres()
    try:
        cluster.start()
        yield cluster.server_url
    finally:
        cluster.stop()
