"""The database fails under load: what every client gets, and how long it waits.

A private throwaway PostgreSQL under ``yuekang serve --workers 2``; 20 clients, each on one
keep-alive connection, send a morning's mix in a loop (status, a code, an online scan, the JWKS,
readiness) while the database is killed for 8 s and restarted, then frozen (SIGSTOP, as a
network partition looks) for 20 s and thawed. Every answer is counted, in the phase its request
started in, by status and content type; a reset connection, a timeout and a text/plain 500 are
counted as what they are.

    python -m loadtests.outage [--clients 20] [--kill 8] [--freeze 20]

The numbers of a run are in docs/RELIABILITY.md ("Under load").
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.api import registered_over_http  # noqa: E402
from support.postgres import create_database, private_cluster  # noqa: E402
from support.servers import cli, serve, server_env  # noqa: E402
from yuekang.db import migrate  # noqa: E402


@dataclass
class Phase:
    name: str
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    slowest: dict[str, float] = field(default_factory=dict)

    def add(self, path: str, outcome: str, took: float) -> None:
        self.outcomes[outcome] += 1
        self.slowest[path] = max(self.slowest.get(path, 0.0), took)


async def client_loop(
    base: str,
    auth: dict[str, str],
    gate: str,
    qr_text: str,
    phase: list[Phase],
    stop: asyncio.Event,
) -> None:
    mix = [
        ("GET", "/v1/me/status", None, auth),
        ("POST", "/v1/codes", None, auth),
        ("POST", "/v1/verify", {"qr_text": qr_text}, {"Authorization": f"Bearer {gate}"}),
        ("GET", "/.well-known/jwks.json", None, {}),
        ("GET", "/readyz", None, {}),
    ]
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        i = 0
        while not stop.is_set():
            method, path, body, headers = mix[i % len(mix)]
            i += 1
            started = time.monotonic()
            current = phase[0]
            try:
                response = await client.request(method, path, json=body, headers=headers)
                kind = response.headers.get("content-type", "").split(";")[0]
                outcome = f"{response.status_code} {kind}"
                if response.status_code == 503:
                    outcome += f" {response.json()['error']['code']}"
            except httpx.TimeoutException:
                outcome = "timeout"
            except httpx.TransportError as exc:
                outcome = f"connection error ({type(exc).__name__})"
            # Counted in the phase the request started in.
            current.add(path, outcome, time.monotonic() - started)


async def run(base: str, auth: list[dict[str, str]], gate: str, qr_text: str, cluster, options):  # type: ignore[no-untyped-def]
    phases = {name: Phase(name) for name in ("before", "killed", "restarted", "frozen", "thawed")}
    current = [phases["before"]]
    stop = asyncio.Event()
    clients = [
        asyncio.create_task(client_loop(base, auth[i % len(auth)], gate, qr_text, current, stop))
        for i in range(options.clients)
    ]
    loop = asyncio.get_running_loop()

    async def then(name: str, fault: Callable[[], None] | None, seconds: float) -> None:
        current[0] = phases[name]
        started = time.monotonic()
        if fault is not None:
            await loop.run_in_executor(None, fault)
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))

    await then("before", None, 3)
    await then("killed", cluster.kill, options.kill)
    await then("restarted", cluster.restart, 5)
    await then("frozen", cluster.freeze, options.freeze)
    await then("thawed", cluster.thaw, 5)
    stop.set()
    await asyncio.gather(*clients)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--kill", type=float, default=8)
    parser.add_argument("--freeze", type=float, default=20)
    parser.add_argument(
        "--log", type=Path, default=Path(tempfile.gettempdir()) / "yuekang-outage.log"
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, private_cluster() as cluster:
        work = Path(tmp)
        url = create_database(cluster.server_url)
        migrate(url)
        env = server_env(
            url,
            work / "keys",
            YUEKANG_OTP__PER_CLIENT_LIMIT="100000",
            YUEKANG_OTP__VERIFY_PER_CLIENT_LIMIT="100000",
        )
        with serve(env, work, "outage", command=("serve", "--workers", "2")) as server:
            gate = cli(env, work, "checkpoints", "create", "gate")
            with httpx.Client(base_url=server.base, timeout=30) as client:
                residents = [
                    registered_over_http(client, registry=server.registry) for _ in range(5)
                ]
                qr_text = client.post("/v1/codes", headers=residents[0].auth).json()["qr_text"]
            phases = asyncio.run(
                run(server.base, [r.auth for r in residents], gate, qr_text, cluster, options)
            )
            log = server.log.read_text()
            options.log.write_text(log)
            tracebacks = log.count("Traceback")
    killed, frozen = f"{options.kill:g}", f"{options.freeze:g}"
    print(f"{options.clients} clients, 2 workers; killed {killed} s, frozen {frozen} s")
    print("| phase | requests | answers | slowest, by path |")
    print("|---|---|---|---|")
    for phase in phases.values():
        answers = ", ".join(f"{n} × {o}" for o, n in phase.outcomes.most_common())
        slowest = ", ".join(f"{p} {t:.1f} s" for p, t in sorted(phase.slowest.items()))
        print(f"| {phase.name} | {sum(phase.outcomes.values())} | {answers} | {slowest} |")
    print(f"tracebacks in the server log: {tracebacks} ({options.log})")


if __name__ == "__main__":
    main()
