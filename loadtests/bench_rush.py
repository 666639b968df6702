"""A morning rush: every path a phone and a checkpoint use, at once, in the proportions of the
seed's peak, against one node (``yuekang serve --workers 2`` and PostgreSQL on this machine).

    .venv/bin/python -m loadtests.bench_rush [--seconds 8] [--rush-seconds 20] [--residents 1000]
                                             [--connections 64] [--workers 2]

**The mix** (docs/PERFORMANCE.md, capacity model). At the seed's peak 25,000 people a second
open the app (DOMAIN.md: about 1.5 million a minute). Opening it, the resident page
(``web/static/resident.js``) asks for ``/v1/me``, a code (``POST /v1/codes`` with an
Idempotency-Key: the live code answered again while it has half its life left), its PNG, the
status (``?lang=``), the appeals, and the family list and its rules; while it stays open (about a
minute) it reads the status and the appeals again once a minute. That is nine requests an
opening: status and appeals two each, the rest one each. Checkpoints add 333 bundle syncs a
second (100,000 devices every 5 minutes, mostly 304) and under 100 online scans a second; in the
mix, 0.15% and 0.04% of the requests (one paced connection each).

**How it is driven.** One wrk process per path, all at once, so that each path's rate and
latency are its own. The node is saturated, as the other benchmarks saturate it: the phones'
paths run as fast as they are answered over ``--connections`` connections, and the
checkpoints' (too small a share to hold a connection busy) are paced to their share. A first
run of ``--seconds`` gives each path connections in proportion to its share; fast paths then
get more than their share, so the rush gives each path connections in proportion to its share
over what it got, and its rates come out near the mix's proportions. Near, not at: a fast path
(the cached image) answers a hundred requests a second on one connection, its smallest step,
so it gets more than its share; the report shows the shares meant and got.
(Holding a rate with think times between requests was tried first: on this machine a request
that reaches an idle process waits a few milliseconds per hop for it and PostgreSQL to be
woken, so light loads measured the wake-ups, `/v1/me` at 19 ms where it takes 3.) Halfway
through the rush, which runs ``--rush-seconds``, a feed batch of 10,000 test results lands
and a new rule set is put in force (every status read next decides that person again).

Every resident has a code and its image cached in both workers before anything is measured, as
the page fetches the image right after the code over the same connection (the capacity model's
affinity). Timing belongs here, never in the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from loadtests.bench import (  # also puts tests/ on sys.path
    THREAD_PLACES,
    Load,
    machine,
    residents,
    served,
    wrk,
)
from loadtests.bench_feeds import nat_rows
from support.servers import cli

OPENINGS_PER_SECOND = 25_000
"""The seed's peak (DOMAIN.md): about 1.5 million people a minute open the app."""

SHARES = {
    # Per opening of the app: what resident.js asks for (see the module's docstring).
    "status": 2.0,
    "appeals": 2.0,
    "me": 1.0,
    "code": 1.0,
    "image": 1.0,
    "family": 1.0,
    "family rules": 1.0,
    # Per opening: 333 syncs and under 100 scans a second against 25,000 openings.
    "bundle": 333 / OPENINGS_PER_SECOND,
    "verify": 100 / OPENINGS_PER_SECOND,
}
PER_OPENING = sum(SHARES.values())
PEAK = OPENINGS_PER_SECOND * PER_OPENING
"""Requests a second at the seed's peak."""

FEED_ROWS = 10_000


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: str | None = None
    fresh_key: bool = False
    """Sent with an Idempotency-Key of its own, as the page sends one per opening."""


@dataclass
class PathLoad:
    name: str
    target: float
    connections: int
    load: Load


def script(requests: list[Request], delay_ms: float) -> str:
    """wrk: the requests in turn, each wrk thread from its own place, ``delay_ms`` between one
    answer and the next request on a connection."""

    def lua(value: object) -> str:
        if value is None:
            return "nil"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict):
            pairs = (f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in value.items())
            return "{" + ", ".join(pairs) + "}"
        return json.dumps(value)

    listed = ",\n".join(
        "{" + ", ".join(lua(v) for v in (r.method, r.path, r.headers, r.body, r.fresh_key)) + "}"
        for r in requests
    )
    return f"""requests = {{
{listed}
}}
{THREAD_PLACES}i = 0
request = function()
  i = i + 1
  local r = requests[((i + offset) % #requests) + 1]
  local headers = r[3]
  if r[5] then
    headers = {{}}
    for name, value in pairs(r[3]) do headers[name] = value end
    headers["Idempotency-Key"] = "open-" .. offset .. "-" .. i
  end
  return wrk.format(r[1], r[2], headers, r[4])
end
delay = function()
  return {delay_ms:.1f}
end
"""


PACED = ("bundle", "verify")
"""Paths too small a share for a connection of their own to keep it: paced to their rate."""


def run_together(
    base: str,
    paths: dict[str, list[Request]],
    connections: dict[str, int],
    paced_rate: dict[str, float],
    seconds: int,
) -> list[PathLoad]:
    """Every path at once: the phones' paths as fast as their connections are answered, the
    checkpoints' paced to ``paced_rate``."""
    plans = []
    for name, requests in paths.items():
        if name in PACED:
            plans.append((name, 1, script(requests, 1000 / paced_rate[name])))
        else:
            plans.append((name, connections[name], script(requests, 0)))
    with ThreadPoolExecutor(len(plans)) as pool:
        loads = list(
            pool.map(
                lambda plan: wrk(
                    base + "/", seconds=seconds, connections=plan[1], script=plan[2], threads=1
                ),
                plans,
            )
        )
    total = sum(load.rate for load in loads)
    return [
        PathLoad(name, total * SHARES[name] / PER_OPENING, count, load)
        for (name, count, _), load in zip(plans, loads, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8, help="the calibration")
    parser.add_argument("--rush-seconds", type=int, default=20)
    parser.add_argument("--residents", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64, help="the phones' paths'")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="yk-rush-"))
    # As deployed: a code asked for again while it has half its life left is the live one.
    with served(work, options.workers, YUEKANG_CODES__REUSE="true") as server:
        base = server.base
        tokens = residents(server, options.residents)
        gates = [cli(server.env, work, "checkpoints", "create", f"gate {n}") for n in range(20)]
        epidemiologist = cli(
            server.env, work, "operators", "create", "rush", "--role", "epidemiologist"
        )
        feed_key = cli(
            server.env, work, "feeds", "clients", "create", "rush", "--kinds", "nat-results"
        )
        with httpx.Client(base_url=base, timeout=60) as client:
            codes = [
                client.post("/v1/codes", headers={"Authorization": f"Bearer {t}"}).json()
                for t in tokens
            ]
            bundle = client.get("/v1/trust-bundle", headers={"Authorization": f"Bearer {gates[0]}"})
        auth = [{"Authorization": f"Bearer {t}"} for t in tokens]
        paths: dict[str, list[Request]] = {
            "status": [Request("GET", "/v1/me/status?lang=zh-Hans", a) for a in auth],
            "appeals": [Request("GET", "/v1/me/appeals", a) for a in auth],
            "me": [Request("GET", "/v1/me", a) for a in auth],
            "code": [Request("POST", "/v1/codes", a, fresh_key=True) for a in auth],
            "image": [
                Request("GET", f"/v1/codes/{c['code_id']}.png", a)
                for c, a in zip(codes, auth, strict=True)
            ],
            "family": [Request("GET", "/v1/me/dependants", a) for a in auth],
            "family rules": [Request("GET", "/v1/me/dependants/rules", a) for a in auth],
            "bundle": [
                Request(
                    "GET",
                    "/v1/trust-bundle",
                    {"Authorization": f"Bearer {g}", "If-None-Match": bundle.headers["etag"]},
                )
                for g in gates
            ],
            "verify": [
                Request(
                    "POST",
                    "/v1/verify",
                    {"Authorization": f"Bearer {g}", "Content-Type": "application/json"},
                    json.dumps({"qr_text": c["qr_text"]}),
                )
                for g, c in zip(gates, codes, strict=False)
            ],
        }
        # Every image rendered and cached by both workers, as the page's own fetch after its
        # code would have it (not measured).
        wrk(base + "/", seconds=6, connections=16, script=script(paths["image"], 0))

        # Calibration: connections in proportion to each path's share, everything as fast
        # as it is answered. Fast paths then take more than their share; the rush gives each
        # path connections in proportion to its share over what it got, so that the rates
        # come out in the mix's proportions while the node is saturated.
        phones = [name for name in paths if name not in PACED]
        weight = sum(SHARES[name] for name in phones)
        connections = {
            name: max(1, round(options.connections * SHARES[name] / weight)) for name in phones
        }
        paced = {name: 1.0 for name in PACED}
        calibration = run_together(base, paths, connections, paced, options.seconds)
        for p in calibration:
            print(f"  calibration {p.name:12} {p.connections:3} connections {p.load}", flush=True)
        got = {p.name: p.load.rate for p in calibration}
        total = sum(got.values())
        connections = {
            name: max(1, round(connections[name] * (SHARES[name] / weight) / (got[name] / total)))
            for name in phones
        }
        scale = options.connections / sum(connections.values())
        connections = {name: max(1, round(count * scale)) for name, count in connections.items()}
        paced = {name: total * SHARES[name] / PER_OPENING for name in PACED}

        # The rush: a feed batch and a new rule set halfway through.
        events: dict[str, float] = {}

        def happen() -> None:
            time.sleep(options.rush_seconds / 2)
            rows = nat_rows(random.Random(7), FEED_ROWS, dt.datetime.now(dt.UTC))
            body = "".join(json.dumps(r) + "\n" for r in rows).encode()
            with httpx.Client(base_url=base, timeout=120) as client:
                started = time.perf_counter()
                fed = client.post(
                    "/v1/feeds/nat-results",
                    content=body,
                    headers={
                        "Authorization": f"Bearer {feed_key}",
                        "Content-Type": "application/x-ndjson",
                        "Idempotency-Key": "rush-feed",
                    },
                )
                events["feed_seconds"] = time.perf_counter() - started
                assert fed.status_code == 201, fed.text
                staff = {"Authorization": f"Bearer {epidemiologist}"}
                active = client.get("/v1/admin/rule-sets/active", headers=staff).json()
                document = {**active["document"], "version": active["version"] + "-rush"}
                started = time.perf_counter()
                changed = client.post("/v1/admin/rule-sets", json=document, headers=staff)
                events["rules_seconds"] = time.perf_counter() - started
                assert changed.status_code == 201, changed.text

        side = threading.Thread(target=happen)
        side.start()
        rush = run_together(base, paths, connections, paced, options.rush_seconds)
        side.join()

    # What the server said about any request that failed (the log has no access lines).
    troubles = [
        line
        for line in (work / "yuekang.log").read_text(errors="replace").splitlines()
        if ("ERROR" in line or "WARNING" in line)
        # What a development server says at every start, not about requests.
        and "development SMS" not in line
        and "is missing: run `npm ci" not in line
    ]
    achieved = sum(p.load.rate for p in rush)
    nodes = PEAK / achieved
    print(f"\n{machine()}\n")
    print(
        f"The rush: {options.rush_seconds} s, {options.connections} connections for the phones' "
        f"paths, as fast as they are answered, in proportion to their shares; one paced "
        f"connection each for the checkpoints'; "
        f"{achieved:,.0f} req/s answered; halfway, a feed batch of {FEED_ROWS:,} rows "
        f"({events.get('feed_seconds', float('nan')):.2f} s) and a new rule set "
        f"({events.get('rules_seconds', float('nan')):.2f} s).\n"
    )
    print("| Path in the mix | Share, meant / got | Connections | Rate | p50 | p99 | Errors |")
    print("|---|---|---|---|---|---|---|")
    for p in rush:
        print(
            f"| {p.name} | {SHARES[p.name] / PER_OPENING:.2%} / {p.load.rate / achieved:.2%} | "
            f"{p.connections} | {p.load.rate:,.0f} req/s | {p.load.p50_ms:.1f} ms | "
            f"{p.load.p99_ms:.1f} ms | {p.load.errors} |"
        )
    print(
        f"\nThe seed's peak is {PEAK:,.0f} requests a second ({OPENINGS_PER_SECOND:,} openings "
        f"× {PER_OPENING:.2f}): {nodes:,.0f} nodes like this one (two cores shared with "
        f"PostgreSQL and the load generator), {nodes / 0.7:,.0f} at the autoscaler's 70%."
    )
    if troubles:
        print(f"\nThe server logged {len(troubles)} warnings or errors; the last:")
        print("\n".join(troubles[-5:]))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
