"""The identity paths beside their own limits, in one run.

    .venv/bin/python -m loadtests.bench_identity [--binds 2000] [--concurrency 64] [--seconds 10]

Starts a throwaway PostgreSQL, the reference identity registry as its own process
(``yuekang partner registry serve``, on a database of its own there) and ``yuekang serve
--workers 2`` proving against it over YKP1 (``proofing.backend=http``), then measures:

- **proofing, the limit**: the registry answering signed checks (``HttpProofing.check``, the
  service's own client) as fast as it can, ``--binds`` of them, ``--concurrency`` at a time;
- **proofing, yuekang**: ``PUT /v1/me/identity`` for as many fresh residents, from the same
  asyncio client at the same concurrency: rate limits, two transactions around the check, the
  encrypted binding, the first status decision, the attempt and audit rows;
- **document checks** (刷证核验): ``POST /v1/verify/document`` rotating over the bound
  documents and 200 checkpoints' keys, with wrk, beside ``POST /v1/verify`` of a code from the
  same gates in the same run (a document check reads the identity and the status and counts
  against its gate's limit, where a code scan reads nothing but revocations, in batches).

Every figure is a rate with its p99; the ratios are against the limit measured in the same run,
seconds apart, so a slow spell of the shared machine slows both. Timing belongs here, never in
the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from loadtests.bench import (  # also puts tests/ on sys.path
    THREAD_PLACES,
    machine,
    process,
    served,
    wrk,
)
from support.api import random_phone, random_prc_id
from support.postgres import create_database
from support.servers import YUEKANG, cli, free_port
from yuekang.codec.proofing import Person
from yuekang.residents.proofing import HttpProofing


async def timed(
    count: int, concurrency: int, one: Callable[[int], Awaitable[bool]]
) -> tuple[float, float, int]:
    """``count`` calls of ``one``, ``concurrency`` at a time: (per second, p99 ms, failures)."""
    latencies: list[float] = []
    failures = 0
    queue = iter(range(count))

    async def worker() -> None:
        nonlocal failures
        for n in queue:
            started = time.perf_counter()
            ok = await one(n)
            latencies.append((time.perf_counter() - started) * 1000)
            failures += not ok

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    p99 = statistics.quantiles(latencies, n=100)[98]
    return count / elapsed, p99, failures


def rotating_script(path: str, bodies: list[str], tokens: list[str]) -> str:
    """wrk posts each body in turn, each with the next checkpoint's key: many gates, as a
    province has, not one gate taking every check."""
    listed = ", ".join(json.dumps(b) for b in bodies)
    keys = ", ".join(json.dumps(t) for t in tokens)
    return f"""bodies = {{{listed}}}
keys = {{{keys}}}
{THREAD_PLACES}i = 0
request = function()
  i = i + 1
  local n = ((i + offset) % #bodies) + 1
  local k = ((i + offset) % #keys) + 1
  return wrk.format("POST", {json.dumps(path)},
                    {{["Content-Type"] = "application/json",
                      ["Authorization"] = "Bearer " .. keys[k]}}, bodies[n])
end
"""


GATES = 200
"""Checkpoints the document checks and code scans are spread over."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binds", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=10, help="each wrk measurement")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="yk-bench-identity-"))
    registry_port = free_port()
    registry_env = {
        "REGISTRY_DATA_DIR": str(work / "registry"),
        # The registry's own throttle would be the only thing measured.
        "REGISTRY_RATE_LIMIT_PER_SECOND": "1000000",
    }
    people = [(random_phone(), *random_prc_id()) for _ in range(options.binds * 2)]
    records = work / "people.ndjson"
    with records.open("w") as out:
        for phone, number, birth in people:
            for entry in (
                {"kind": "person", "name": "陈大文", "doc_type": "prc_id", "doc_number": number,
                 "birth_date": birth.isoformat()},
                {"kind": "subscription", "phone": phone, "doc_type": "prc_id",
                 "doc_number": number, "name": "陈大文", "carrier": "bench"},
            ):  # fmt: skip
                out.write(json.dumps(entry, ensure_ascii=False) + "\n")

    # The shared secret is made in the registry's data directory, before either side starts.
    credentials = dict(
        line.split("=", 1)
        for line in cli(
            {**os.environ, **registry_env}, work, "partner", "registry", "credentials"
        ).splitlines()
    )
    (work / "secret").write_text(credentials["client_secret"])
    registry_base = f"http://127.0.0.1:{registry_port}"
    with served(
        work,
        2,
        YUEKANG_PROOFING__BACKEND="http",
        YUEKANG_PROOFING__URL=registry_base,
        YUEKANG_PROOFING__CLIENT_SECRET_FILE=str(work / "secret"),
        YUEKANG_DOCUMENT_CHECKS__PER_CHECKPOINT_LIMIT="100000000",
    ) as server:
        # The reference registry on PostgreSQL too (a database of its own): on SQLite its own
        # writes would be all that is measured.
        registry_url = create_database(server.postgres)
        base_env = {**os.environ, **registry_env, "REGISTRY_DATABASE_URL": registry_url}
        cli(base_env, work, "partner", "registry", "load", str(records))
        with process(
            [YUEKANG, "partner", "registry", "serve", "--port", str(registry_port)],
            base_env,
            f"{registry_base}/healthz",
            work / "registry.log",
        ):
            rows = asyncio.run(
                measure(server.base, registry_base, credentials, people, options.binds, options)
            )
            admin = cli(server.env, work, "operators", "create", "bench", "--role", "admin")
            gates = [
                httpx.post(
                    f"{server.base}/v1/admin/checkpoints",
                    headers={"Authorization": f"Bearer {admin}"},
                    json={"name": f"gate {n}", "kind": "transport"},
                    timeout=30,
                ).json()["api_key"]
                for n in range(GATES)
            ]
            bound = [number for _, number, _ in people[options.binds : options.binds + 1000]]
            documents = wrk(
                f"{server.base}/v1/verify/document",
                seconds=options.seconds,
                connections=options.concurrency,
                script=rotating_script(
                    "/v1/verify/document",
                    [json.dumps({"doc_type": "prc_id", "doc_number": n}) for n in bound],
                    gates,
                ),
            )
            code = rows.pop()
            scans = wrk(
                f"{server.base}/v1/verify",
                seconds=options.seconds,
                connections=options.concurrency,
                script=rotating_script("/v1/verify", [json.dumps({"qr_text": code})], gates),
            )
    print(f"\n{machine()}\n")
    print("| Path | Rate | Limit | Ratio | p99 |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(row)
    print(
        f"| Document check (`POST /v1/verify/document`) | {documents.rate:,.0f} req/s | "
        f"code scan {scans.rate:,.0f} req/s | {documents.rate / scans.rate:.0%} | "
        f"{documents.p99_ms:.1f} ms (code scan {scans.p99_ms:.1f} ms); "
        f"{documents.errors + scans.errors} errors |"
    )


async def measure(
    base: str,
    registry: str,
    credentials: dict[str, str],
    people: list[tuple[str, str, dt.date]],
    binds: int,
    options: argparse.Namespace,
) -> list[str]:
    limits = httpx.Limits(max_connections=options.concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        proofing = HttpProofing(
            client=client,
            url=registry,
            client_id=credentials["client_id"],
            secret=credentials["client_secret"].encode(),
            timeout=30,
            budget=60,
        )
        limit_people = people[binds:]

        async def check(n: int) -> bool:
            phone, number, birth = limit_people[n]
            result = await proofing.check(
                person=Person("陈大文", "prc_id", number, birth), phone=phone, purpose="bind"
            )
            return result.identity_matches and result.phone_matches

        # The residents sign in first: what is measured is the binding alone.
        tokens: list[str] = []
        for phone, _, _ in people[:binds]:
            sent = (await client.post("/v1/auth/otp", json={"phone": phone})).json()
            token = await client.post(
                "/v1/auth/token",
                json={
                    "phone": phone,
                    "challenge_id": sent["challenge_id"],
                    "code": sent["dev_code"],
                },
            )
            tokens.append(token.json()["access_token"])

        async def bind(n: int) -> bool:
            _, number, birth = people[n]
            answer = await client.put(
                "/v1/me/identity",
                headers={"Authorization": f"Bearer {tokens[n]}"},
                json={"name": "陈大文", "doc_type": "prc_id", "doc_number": number,
                      "birth_date": birth.isoformat()},
            )  # fmt: skip
            return answer.status_code == 201

        registry_rate, registry_p99, registry_failures = await timed(
            binds, options.concurrency, check
        )
        ours_rate, ours_p99, ours_failures = await timed(binds, options.concurrency, bind)
        # The remaining people are bound too: the document checks look them up.
        for phone, number, birth in people[binds : binds + 1000]:
            sent = (await client.post("/v1/auth/otp", json={"phone": phone})).json()
            token = (
                await client.post(
                    "/v1/auth/token",
                    json={
                        "phone": phone,
                        "challenge_id": sent["challenge_id"],
                        "code": sent["dev_code"],
                    },
                )
            ).json()["access_token"]
            await client.put(
                "/v1/me/identity",
                headers={"Authorization": f"Bearer {token}"},
                json={"name": "陈大文", "doc_type": "prc_id", "doc_number": number,
                      "birth_date": birth.isoformat()},
            )  # fmt: skip
        code = (
            await client.post("/v1/codes", headers={"Authorization": f"Bearer {tokens[0]}"})
        ).json()["qr_text"]
    return [
        f"| Proofing (`PUT /v1/me/identity`, registry over YKP1) | {ours_rate:,.0f} binds/s | "
        f"registry {registry_rate:,.0f} checks/s | {ours_rate / registry_rate:.0%} | "
        f"{ours_p99:.1f} ms (registry {registry_p99:.1f} ms); "
        f"{ours_failures + registry_failures} failures |",
        code,
    ]


if __name__ == "__main__":
    main()
