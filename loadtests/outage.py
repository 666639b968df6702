"""The database fails under load: what every client gets, and how long it waits.

A private throwaway PostgreSQL under ``yuekang serve --workers 2``; 20 clients, each on one
keep-alive connection, send a morning's mix in a loop (status, a code, an online scan, the JWKS,
readiness) while the database is killed for 8 s and restarted, then frozen (SIGSTOP, as a
network partition looks) for 20 s and thawed. Every answer is counted by status and content
type; a reset connection, a timeout and a text/plain 500 are counted as what they are.

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
    slowest: float = 0.0

    def add(self, outcome: str, took: float) -> None:
        self.outcomes[outcome] += 1
        self.slowest = max(self.slowest, took)


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
            phase[0].add(outcome, time.monotonic() - started)


async def run(base: str, auth: list[dict[str, str]], gate: str, qr_text: str, cluster, options):  # type: ignore[no-untyped-def]
    phases = {name: Phase(name) for name in ("before", "killed", "restarted", "frozen", "thawed")}
    current = [phases["before"]]
    stop = asyncio.Event()
    clients = [
        asyncio.create_task(client_loop(base, auth[i % len(auth)], gate, qr_text, current, stop))
        for i in range(options.clients)
    ]
    loop = asyncio.get_running_loop()

    async def during(name: str, seconds: float) -> None:
        current[0] = phases[name]
        await asyncio.sleep(seconds)

    await during("before", 3)
    await loop.run_in_executor(None, cluster.kill)
    await during("killed", options.kill)
    current[0] = phases["restarted"]
    started = time.monotonic()
    await loop.run_in_executor(None, cluster.restart)
    await asyncio.sleep(max(0.0, 5 - (time.monotonic() - started)))
    await loop.run_in_executor(None, cluster.freeze)
    await during("frozen", options.freeze)
    await loop.run_in_executor(None, cluster.thaw)
    await during("thawed", 5)
    stop.set()
    await asyncio.gather(*clients)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--kill", type=float, default=8)
    parser.add_argument("--freeze", type=float, default=20)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, private_cluster() as cluster:
        work = Path(tmp)
        url = create_database(cluster.server_url)
        migrate(url)
        env = server_env(url, work / "keys", YUEKANG_OTP__PER_CLIENT_LIMIT="100000")
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
            tracebacks = server.log.read_text().count("Traceback")
    killed, frozen = f"{options.kill:g}", f"{options.freeze:g}"
    print(f"{options.clients} clients, 2 workers; killed {killed} s, frozen {frozen} s")
    print("| phase | requests | answers | slowest |")
    print("|---|---|---|---|")
    for phase in phases.values():
        answers = ", ".join(f"{n} × {o}" for o, n in phase.outcomes.most_common())
        print(
            f"| {phase.name} | {sum(phase.outcomes.values())} | {answers} | {phase.slowest:.1f} s |"
        )
    print(f"tracebacks in the server log: {tracebacks}")


if __name__ == "__main__":
    main()
