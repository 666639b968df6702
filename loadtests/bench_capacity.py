"""What one request of each hot path costs PostgreSQL and the application, in CPU time, for the
capacity model (docs/PERFORMANCE.md, "Capacity model").

    .venv/bin/python -m loadtests.bench_capacity [--seconds 10] [--connections 64] [--workers 2]
                                                 [--residents 1000] [--keep-nothing]

Starts a throwaway PostgreSQL and ``yuekang serve --workers N`` on it (as ``loadtests.bench``
does), drives each path with wrk, and reads from ``/proc`` the CPU time (user + system) that
every PostgreSQL process of the cluster and every process of the server spent meanwhile, and the
WAL the primary wrote (``pg_current_wal_lsn()`` before and after). Divided by the requests
answered, these are costs per request: milliseconds of one core on the database and on the
application node, and bytes of WAL that every standby must receive.

Why CPU time rather than requests per second: on two cores shared by PostgreSQL, the server and
wrk, a rate says how the three shared the machine; the CPU each spent per request does not
depend on that sharing, so it carries over to a database on a machine of its own, which is what
sizing the seed's peak needs. (It is not free of the machine: a busier CPU cache or lock waits
cost CPU too; the figures are of a 2-core virtual machine, stated beside them.)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx

from loadtests.bench import (
    Load,
    header_script,
    machine,
    post_script,
    residents,
    rotating_tokens_script,
    served,
    wrk,
)
from support.servers import cli

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int, *, reaped: bool = False) -> tuple[int, float] | None:
    """(parent pid, CPU seconds so far) of ``pid``, or None if it is gone; with ``reaped``, the
    CPU of its children that have exited and been waited for is added."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after its last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    used = int(fields[11]) + int(fields[12])
    if reaped:
        used += int(fields[13]) + int(fields[14])
    return int(fields[1]), used / TICKS


def _tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and every process descended from it: those alive now, and those
    that exited meanwhile (a backend whose connection closed), which the kernel adds to the
    root's children's time once it has waited for them -- PostgreSQL's backends and uvicorn's
    workers are the root's own children."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _stat(int(entry), reaped=int(entry) == root)
            if found is not None:
                parents[int(entry)], cpu[int(entry)] = found
    total = 0.0
    for pid, seconds in cpu.items():
        walk = pid
        while walk not in (root, 0, 1) and walk in parents:
            walk = parents[walk]
        if walk == root:
            total += seconds
    return total


def _serve_pid(port: int) -> int:
    """The ``yuekang serve`` process listening on ``port`` (its workers are its children)."""
    wanted = f"--port\0{port}\0".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if wanted in Path(f"/proc/{entry}/cmdline").read_bytes():
                    return int(entry)
            except OSError:
                continue
    raise RuntimeError(f"no yuekang serve on port {port}")


@dataclass
class Cost:
    path: str
    load: Load
    requests: int
    database_ms: float
    app_ms: float
    wal_bytes: float
    connections_per_1000: float


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _postmaster_and_lsn(url: str) -> tuple[int, int, int]:
    connection = await asyncpg.connect(_dsn(url))
    try:
        # The backend's parent is the postmaster: read it while the backend lives.
        found = _stat(await connection.fetchval("SELECT pg_backend_pid()"))
        lsn = await connection.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        # Connections opened so far: each is a backend forked and set up, CPU of its own.
        sessions = await connection.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await connection.close()
    assert found is not None
    return found[0], int(lsn), int(sessions)


async def _settle(url: str) -> None:
    """Leave no background work of an earlier path to be counted against the next: vacuum and
    analyse what it wrote, and write its dirty pages out."""
    connection = await asyncpg.connect(_dsn(url))
    try:
        await connection.execute("VACUUM ANALYZE")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


def measure(name: str, url: str, port: int, seconds: int, drive: Callable[[], Load]) -> Cost:
    import asyncio

    asyncio.run(_settle(url))
    postmaster, lsn_before, sessions_before = asyncio.run(_postmaster_and_lsn(url))
    serve = _serve_pid(port)
    db_before, app_before = _tree_cpu(postmaster), _tree_cpu(serve)
    load = drive()
    db_after, app_after = _tree_cpu(postmaster), _tree_cpu(serve)
    _, lsn_after, sessions_after = asyncio.run(_postmaster_and_lsn(url))
    requests = max(1, round(load.rate * seconds))
    return Cost(
        name,
        load,
        requests,
        1000 * (db_after - db_before) / requests,
        1000 * (app_after - app_before) / requests,
        (lsn_after - lsn_before) / requests,
        # Less the one this measurement itself opened.
        1000 * (sessions_after - sessions_before - 1) / requests,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--residents", type=int, default=1000)
    parser.add_argument(
        "--keep-nothing",
        action="store_true",
        help="database.kept_rows=0: every status read and key check asks PostgreSQL (a request "
        "that finds nothing kept, e.g. a phone's first read on a node)",
    )
    options = parser.parse_args()
    load = {"seconds": options.seconds, "connections": options.connections}
    work = Path(tempfile.mkdtemp(prefix="yk-capacity-"))
    costs: list[Cost] = []
    extra = {"YUEKANG_DATABASE__KEPT_ROWS": "0"} if options.keep_nothing else {}
    with served(work, options.workers, **extra) as server:
        url, base, port, env = server.database_url, server.base, server.port, server.env
        gate = cli(env, work, "checkpoints", "create", "capacity gate")
        tokens = residents(server, options.residents)
        qr_text = httpx.post(
            f"{base}/v1/codes", headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=30
        ).json()["qr_text"]
        with httpx.Client(base_url=base, timeout=30) as client:
            etags = [
                client.get("/v1/me/status", headers={"Authorization": f"Bearer {t}"}).headers[
                    "etag"
                ]
                for t in tokens
            ]
            bundle_etag = client.get(
                "/v1/trust-bundle", headers={"Authorization": f"Bearer {gate}"}
            ).headers["etag"]
        paths: list[tuple[str, Callable[[], Load]]] = [
            (
                "Issue a code (`POST /v1/codes`, reuse off)",
                lambda: wrk(
                    f"{base}/v1/codes", **load, script=rotating_tokens_script("/v1/codes", tokens)
                ),
            ),
            (
                "Online verify (`POST /v1/verify`)",
                lambda: wrk(
                    f"{base}/v1/verify",
                    **load,
                    script=post_script(
                        json.dumps({"qr_text": qr_text}),
                        {"Content-Type": "application/json", "Authorization": f"Bearer {gate}"},
                    ),
                ),
            ),
            (
                "A resident's status (`GET /v1/me/status`), 200",
                lambda: wrk(
                    f"{base}/v1/me/status",
                    **load,
                    script=rotating_tokens_script("/v1/me/status", tokens, "GET"),
                ),
            ),
            (
                "A resident's status, 304",
                lambda: wrk(
                    f"{base}/v1/me/status",
                    **load,
                    script=rotating_tokens_script("/v1/me/status", tokens, "GET", etags),
                ),
            ),
            (
                "Trust bundle sync, 304",
                lambda: wrk(
                    f"{base}/v1/trust-bundle",
                    **load,
                    script=header_script(
                        {"Authorization": f"Bearer {gate}", "If-None-Match": bundle_etag}
                    ),
                ),
            ),
        ]
        # The rest of what the resident page asks for at every opening (loadtests.bench_rush).
        for name, path in (
            ("The resident (`GET /v1/me`)", "/v1/me"),
            ("Their appeals, none (`GET /v1/me/appeals`)", "/v1/me/appeals"),
            ("Their family, none (`GET /v1/me/dependants`)", "/v1/me/dependants"),
            ("The family rules (`GET /v1/me/dependants/rules`)", "/v1/me/dependants/rules"),
        ):
            paths.append(
                (
                    name,
                    lambda path=path: wrk(  # type: ignore[misc]
                        f"{base}{path}", **load, script=rotating_tokens_script(path, tokens, "GET")
                    ),
                )
            )
        image = httpx.post(
            f"{base}/v1/codes", headers={"Authorization": f"Bearer {tokens[1]}"}, timeout=30
        ).json()["png_url"]
        image_path = image.split(str(port), 1)[1]
        paths.append(
            (
                "QR image, cached (`GET /v1/codes/{id}.png`)",
                lambda: wrk(
                    f"{base}{image_path}",
                    **load,
                    script=header_script({"Authorization": f"Bearer {tokens[1]}"}),
                ),
            )
        )
        for name, drive in paths:
            costs.append(measure(name, url, port, options.seconds, drive))
    print(
        f"{machine()}; wrk -c{options.connections} -d{options.seconds}s, "
        f"{options.workers} workers, PostgreSQL on the same machine\n"
    )
    print(
        "| Path | answered | PostgreSQL, ms of CPU | application, ms of CPU | WAL, bytes "
        "| connections opened per 1,000 |"
    )
    print("|---|---|---|---|---|---|")
    for cost in costs:
        print(
            f"| {cost.path} | {cost.load.rate:,.0f}/s | {cost.database_ms:.3f} | "
            f"{cost.app_ms:.3f} | {cost.wal_bytes:,.0f} | {cost.connections_per_1000:.1f} |"
        )


if __name__ == "__main__":
    main()
