"""What a real server answers when its database fails, and that it recovers by itself.

A private throwaway PostgreSQL is killed, restarted and frozen (SIGSTOP: it accepts connections
and answers nothing, as a network partition looks) under a running ``yuekang serve``; every
request gets JSON within the budget of docs/RELIABILITY.md on a connection that stays open.
SQLite is made read-only (an immutable file) and writable again.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.api import random_phone
from support.postgres import ThrowawayPostgres, create_database, private_cluster
from support.servers import Server, cli, serve, server_env
from yuekang.db import migrate

pytestmark = pytest.mark.e2e

BUDGET = 6.0
"""Seconds within which every request is answered while the database fails: the statement
timeout (5 s) of a pooled connection, or the connect timeout (2 s) of a new one, plus the
server's own work."""


def requests(gate: str, code_key: str, auth: dict[str, str]) -> list[tuple[str, str, Any, dict]]:
    return [
        ("GET", "/readyz", None, {}),
        ("POST", "/v1/auth/otp", {"phone": random_phone()}, {}),
        ("POST", "/v1/verify", {"qr_text": "YK1:x"}, {"Authorization": f"Bearer {gate}"}),
        ("POST", "/v1/codes", None, {**auth, "Idempotency-Key": code_key}),
        ("GET", "/v1/me/status", None, auth),
    ]


def answered_unavailable(client: httpx.Client, method: str, path: str, body: Any, headers: dict):
    """One request during the outage: JSON 503 database_unavailable with Retry-After, in time."""
    started = time.monotonic()
    response = client.request(method, path, json=body, headers=headers)
    took = time.monotonic() - started
    assert took < BUDGET, (path, took)
    assert response.status_code == 503, (path, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), path
    assert response.json()["error"]["code"] == "database_unavailable", path
    assert int(response.headers["retry-after"]) > 0
    return response


def still_served(client: httpx.Client) -> None:
    """What needs no database keeps answering."""
    assert client.get("/livez").status_code == 200
    assert client.get("/.well-known/jwks.json").json()["keys"]
    assert client.get("/").status_code == 200


def recovered(client: httpx.Client, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the server did not recover by itself"
        time.sleep(0.5)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[ThrowawayPostgres, Server, dict[str, str]]]:
    with private_cluster() as cluster:
        url = create_database(cluster.server_url)
        migrate(url)
        env = server_env(url, tmp_path / "keys")
        with serve(env, tmp_path, "faults") as server:
            yield cluster, server, env


def signed_in(client: httpx.Client, server: Server) -> dict[str, str]:
    from support.api import registered_over_http

    resident = registered_over_http(client, registry=server.registry)
    return resident.auth


def test_postgresql_killed_and_restarted(
    running: tuple[ThrowawayPostgres, Server, dict[str, str]], tmp_path: Path
) -> None:
    cluster, server, env = running
    gate = cli(env, tmp_path, "checkpoints", "create", "gate")
    # One client, one keep-alive connection for everything: a reset would raise here.
    with httpx.Client(base_url=server.base, timeout=30) as client:
        auth = signed_in(client, server)
        assert client.get("/readyz").status_code == 200

        cluster.kill()
        for _ in range(3):
            for method, path, body, headers in requests(gate, "during-outage", auth):
                answered_unavailable(client, method, path, body, headers)
            still_served(client)

        cluster.restart()
        recovered(client)
        # The request refused during the outage, sent again, is applied once.
        first = client.post("/v1/codes", headers={**auth, "Idempotency-Key": "during-outage"})
        again = client.post("/v1/codes", headers={**auth, "Idempotency-Key": "during-outage"})
        assert (first.status_code, again.status_code) == (201, 201), first.text
        assert first.json()["code_id"] == again.json()["code_id"]
        assert again.headers["idempotent-replayed"] == "true"
        assert client.post("/v1/auth/otp", json={"phone": random_phone()}).status_code == 200
    assert "Traceback" not in server.log.read_text()


def test_postgresql_frozen_then_thawed(
    running: tuple[ThrowawayPostgres, Server, dict[str, str]], tmp_path: Path
) -> None:
    cluster, server, env = running
    gate = cli(env, tmp_path, "checkpoints", "create", "gate")
    with httpx.Client(base_url=server.base, timeout=30) as client:
        auth = signed_in(client, server)
        cluster.freeze()
        try:
            for method, path, body, headers in requests(gate, "while-frozen", auth):
                answered_unavailable(client, method, path, body, headers)
            started = time.monotonic()
            still_served(client)
            assert time.monotonic() - started < BUDGET
        finally:
            cluster.thaw()
        recovered(client)
        assert client.post("/v1/codes", headers=auth).status_code == 201
        assert client.get("/v1/me/status", headers=auth).status_code == 200


@pytest.mark.skipif(shutil.which("chattr") is None, reason="chattr is needed to lock a file")
def test_sqlite_read_only_and_writable_again(tmp_path: Path) -> None:
    database = tmp_path / "var" / "yuekang.db"
    url = f"sqlite+aiosqlite:///{database}"
    migrate(url)
    env = server_env(url, tmp_path / "keys")
    with (
        serve(env, tmp_path, "sqlite") as server,
        httpx.Client(base_url=server.base, timeout=30) as client,
    ):
        assert client.post("/v1/auth/otp", json={"phone": random_phone()}).status_code == 200
        # The database and its log, immutable: not even root may write them (chmod would not
        # stop root). Not the -shm index, which SQLite maps into memory: a store into a mapping
        # of an immutable file is a SIGBUS, not a read-only database.
        files = [database, database.with_name("yuekang.db-wal")]
        files = [f for f in files if f.exists()]
        locked = subprocess.run(["chattr", "+i", *map(str, files)], capture_output=True)
        if locked.returncode != 0:
            pytest.skip(f"this file system cannot lock files: {locked.stderr!r}")
        try:
            answered_unavailable(client, "POST", "/v1/auth/otp", {"phone": random_phone()}, {})
            assert client.get("/readyz").status_code == 503
            assert client.get("/livez").status_code == 200
        finally:
            subprocess.run(["chattr", "-i", *map(str, files)], check=True)
        recovered(client)
        assert client.post("/v1/auth/otp", json={"phone": random_phone()}).status_code == 200
