"""Debian's pgbouncer in front of a PostgreSQL server, for the tests of the service behind a
transaction-mode pooler: a config of its own in a temp dir, a free 127.0.0.1 port, every database
name passed through to the server, ``trust`` authentication (the throwaway cluster's own), and a
small pool, so that clients outnumber server connections as they do in production."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from sqlalchemy.engine import make_url

PGBOUNCER = Path("/usr/sbin/pgbouncer")


def available() -> str | None:
    """Why pgbouncer cannot be run here, or None when it can."""
    if not PGBOUNCER.exists():
        return "pgbouncer not installed: Debian's pgbouncer package (scripts/test installs it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pgbouncer:
    """One pgbouncer process; :meth:`url` turns a direct database URL into one through it."""

    def __init__(
        self,
        server_url: str,
        *,
        pool_size: int = 3,
        pool_mode: str = "transaction",
        options: Mapping[str, str] | None = None,
    ):
        server = make_url(server_url)
        self.server_host = server.host or "127.0.0.1"
        self.server_port = server.port or 5432
        self.user = server.username or "postgres"
        # pgbouncer logs in to the server with the password its auth file gives the user (a
        # configured YUEKANG_TEST_POSTGRES_URL may need one; the throwaway cluster trusts).
        self.password = server.password or ""
        self.pool_size = pool_size
        self.pool_mode = pool_mode
        self.options = dict(options or {})
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="yuekang-pgbouncer-"))
        self.log = self.root / "pgbouncer.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.root / "userlist.txt").write_text(f'"{self.user}" "{self.password}"\n')
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            # Every database name the client asks for is the server's database of that name: the
            # suite creates one per test module.
            f"* = host={self.server_host} port={self.server_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            f"logfile = {self.log}\n"
            "auth_type = trust\n"
            f"auth_file = {self.root / 'userlist.txt'}\n"
            f"admin_users = {self.user}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 200\n"
            # No ignore_startup_parameters: asyncpg's startup packet holds nothing pgbouncer does
            # not know, as long as the service passes no server_settings.
            + "".join(f"{name} = {value}\n" for name, value in self.options.items())
        )
        command = [str(PGBOUNCER), str(self.root / "pgbouncer.ini")]
        if os.geteuid() == 0:
            # pgbouncer refuses to run as root; it reads its files as the user it becomes.
            shutil.chown(self.root, "postgres", "postgres")
            for entry in self.root.iterdir():
                shutil.chown(entry, "postgres", "postgres")
            command[1:1] = ["-u", "postgres"]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                _, error = self._process.communicate()
                raise RuntimeError(f"pgbouncer did not start: {error.decode()} {self._log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen within 10 s: {self._log()}")

    def _log(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop_process(self) -> None:
        """Stop pgbouncer, every connection through it cut; :meth:`start` runs it again on the
        same port."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def stop(self) -> None:
        self.stop_process()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, direct_url: str) -> str:
        """``direct_url`` (a database on the server behind) through this pgbouncer."""
        return (
            make_url(direct_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )


@contextlib.contextmanager
def pgbouncer(server_url: str, *, pool_size: int = 3, **options: str) -> Iterator[Pgbouncer]:
    """A pgbouncer in front of ``server_url``; ``options`` are more pgbouncer.ini settings."""
    bouncer = Pgbouncer(server_url, pool_size=pool_size, options=options)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
