"""Real ``yuekang serve`` processes on 127.0.0.1, as clients would meet them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

YUEKANG = shutil.which("yuekang", path=str(Path(sys.executable).parent)) or "yuekang"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(database_url: str, keys_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "YUEKANG_ENV": "dev",
        "YUEKANG_DATABASE_URL": database_url,
        "YUEKANG_KEYS_DIR": str(keys_dir),
        # The built-in development registry, beside the keys: tests add their people to it.
        "YUEKANG_PROOFING__BUILTIN_DIR": str(keys_dir.parent / "registry"),
        **extra,
    }


@dataclass(frozen=True)
class Server:
    base: str
    env: dict[str, str]
    log: Path
    port: int

    @property
    def registry(self) -> Path:
        """The built-in development registry's data directory (``proofing.builtin_dir``)."""
        return Path(self.env["YUEKANG_PROOFING__BUILTIN_DIR"])


@contextmanager
def serve(
    env: dict[str, str],
    workdir: Path,
    name: str = "serve",
    port: int | None = None,
    command: Sequence[str] = ("serve",),
    executable: str | Path = YUEKANG,
    wait_seconds: float = 30,
) -> Iterator[Server]:
    """Start ``yuekang serve`` (or another serving ``command``, such as the reference Macao
    system) and wait until ``/healthz`` answers; stop it on exit. ``port`` restarts a server
    where its clients know it; ``executable``, another checkout's ``yuekang``."""
    port = port or free_port()
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(executable), *command, "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(log_path.read_text())
                time.sleep(0.2)
            yield Server(base, env, log_path, port)
        finally:
            process.terminate()
            process.wait(timeout=10)


def cli(env: dict[str, str], workdir: Path, *args: str) -> str:
    """Run a ``yuekang`` command; its standard output, or an assertion with its error."""
    done = subprocess.run(
        [YUEKANG, *args], capture_output=True, text=True, env=env, cwd=workdir, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
