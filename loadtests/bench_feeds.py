"""Feed ingestion beside a raw COPY of the same rows into PostgreSQL, measured in one run.

    .venv/bin/python -m loadtests.bench_feeds [--rows 100000] [--rounds 5] [--registered 500]

Starts a throwaway PostgreSQL cluster (as ``scripts/test`` does) and, in each round, with fresh
rows (both databases vacuumed, analysed and checkpointed before each measurement):

- the limit: ``asyncpg.copy_records_to_table`` of the rows, already parsed and indexed, into
  ``nat_results`` -- the essential write and nothing else;
- yuekang: the same rows as one NDJSON batch ``POST /v1/feeds/nat-results`` to a real
  ``yuekang serve`` process over HTTP: streamed parse, per-row checks (document check digits,
  times), blind indexes, COPY straight into the fact table, and the status decided again for
  every registered person in the batch (``--registered`` of them, who each had a live code).

Reports rows per second of each, the ratio, and the server's peak resident memory before and after
the batches (which should not grow with the batch size).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.api import Enrolment, enrol_many
from support.postgres import create_database, postgres_server
from support.servers import YUEKANG, cli, free_port, server_env
from yuekang.config import Secrets
from yuekang.db import migrate
from yuekang.pii import BlindIndex
from yuekang.residents.documents import DocType, mod11_2_check
from yuekang.residents.service import doc_index

REGIONS = ("110105", "440104", "440304", "310101", "510107", "440111")


def prc_id(rng: random.Random) -> tuple[str, dt.date]:
    birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(0, 25000))
    body = rng.choice(REGIONS) + birth.strftime("%Y%m%d") + f"{rng.randrange(1000):03d}"
    return body + mod11_2_check(body), birth


def nat_rows(rng: random.Random, count: int, now: dt.datetime) -> list[dict[str, str]]:
    rows = []
    for _ in range(count):
        number, _ = prc_id(rng)
        sampled = now - dt.timedelta(seconds=rng.randrange(60, 72 * 3600))
        rows.append(
            {
                "doc_type": "prc_id",
                "doc_number": number,
                "sampled_at": sampled.isoformat(timespec="seconds"),
                "result": "negative",
                "lab": f"lab-{rng.randrange(40):02d}",
            }
        )
    return rows


async def raw_copy(url: str, records: list[tuple[object, ...]]) -> float:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        start = time.perf_counter()
        async with connection.transaction():
            await connection.copy_records_to_table(
                "nat_results",
                records=records,
                columns=("person", "sampled_at", "result", "lab", "batch_id", "received_at"),
            )
        return time.perf_counter() - start
    finally:
        await connection.close()


async def settle(*urls: str) -> None:
    """Vacuum, analyse and checkpoint both databases, so that neither measurement meets an
    autovacuum or a checkpoint started by the rows of the one before."""
    for url in urls:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await connection.execute("VACUUM ANALYZE nat_results")
            await connection.execute("CHECKPOINT")
        finally:
            await connection.close()


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """Every process's name and the CPU time it has used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        used[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return used


def cpu_used(before: dict[int, tuple[str, float]], server: int) -> tuple[float, float]:
    """CPU seconds the server and PostgreSQL used since ``before``."""
    ours = database = 0.0
    for pid, (name, seconds) in cpu_seconds().items():
        spent = seconds - before.get(pid, (name, 0.0))[1]
        if pid == server:
            ours += spent
        elif name == "postgres":
            database += spent
    return ours, database


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def register(
    client: httpx.Client,
    rng: random.Random,
    rows: list[dict[str, str]],
    n: int,
    registry: Path,
) -> None:
    """Sign in and bind ``n`` of the batch's people, each with a live code; they are enrolled
    in the server's development registry first, each with their phone."""
    people = []
    for row in rows[:n]:
        number = row["doc_number"]
        birth = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
        people.append((row, birth, "+86139" + "".join(rng.choices("0123456789", k=8))))
    enrol_many(
        registry,
        [Enrolment("王小明", row["doc_number"], birth, phone) for row, birth, phone in people],
    )
    for row, birth, phone in people:
        sent = client.post("/v1/auth/otp", json={"phone": phone}).json()
        token = client.post(
            "/v1/auth/token",
            json={"phone": phone, "challenge_id": sent["challenge_id"], "code": sent["dev_code"]},
        )
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        number = row["doc_number"]
        bound = client.put(
            "/v1/me/identity",
            headers=auth,
            json={
                "name": "王小明",
                "doc_type": "prc_id",
                "doc_number": number,
                "birth_date": birth.isoformat(),
            },
        )
        assert bound.status_code in (200, 201), bound.text
        assert client.post("/v1/codes", headers=auth).status_code == 201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--registered", type=int, default=500)
    parser.add_argument(
        "--profile", metavar="SVG", help="record the server with py-spy into this flame graph"
    )
    args = parser.parse_args()
    rng = random.Random(20261125)
    with postgres_server() as server, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        raw_url = create_database(server)
        ours_url = create_database(server)
        migrate(raw_url)
        migrate(ours_url)
        env = server_env(
            ours_url,
            workdir / "keys",
            YUEKANG_OTP__PER_PHONE_LIMIT="100000",
            YUEKANG_OTP__PER_CLIENT_LIMIT="100000",
            YUEKANG_OTP__VERIFY_PER_CLIENT_LIMIT="100000",
            YUEKANG_PROOFING__PER_CLIENT_LIMIT="100000",
            YUEKANG_SESSION__TTL_SECONDS="86400",
        )
        cli(env, workdir, "db", "upgrade")
        feed_key = cli(
            env, workdir, "feeds", "clients", "create", "bench", "--kinds", "nat-results"
        )
        secrets = Secrets.model_validate_json((workdir / "keys" / "dev-secrets.json").read_text())
        index = BlindIndex(secrets.blind_index_key.encode())
        port = free_port()
        log = (workdir / "serve.log").open("wb")
        process = subprocess.Popen(
            [YUEKANG, "serve", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(150):
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None:
                    raise SystemExit((workdir / "serve.log").read_text())
                time.sleep(0.2)
            results: list[tuple[float, float, dict[str, object]]] = []
            spy = None
            if args.profile:
                py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
                if py_spy is None:
                    raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
                spy = subprocess.Popen(
                    [py_spy, "record", "-p", str(process.pid), "-o", args.profile, "-r", "200"]
                    # A .txt file gets py-spy's raw stacks, to be summed by function.
                    + (["-f", "raw"] if args.profile.endswith(".txt") else []),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            with httpx.Client(base_url=base, timeout=600) as client:
                rss_before = peak_rss_kib(process.pid)
                for round_number in range(args.rounds):
                    now = dt.datetime.now(dt.UTC)
                    rows = nat_rows(rng, args.rows, now)
                    register(
                        client,
                        rng,
                        rows,
                        args.registered if round_number == 0 else 0,
                        Path(env["YUEKANG_PROOFING__BUILTIN_DIR"]),
                    )
                    batch_id = uuid.uuid4()
                    records = [
                        (
                            doc_index(index, DocType.PRC_ID, r["doc_number"]),
                            dt.datetime.fromisoformat(r["sampled_at"]),
                            r["result"],
                            r["lab"],
                            batch_id,
                            now,
                        )
                        for r in rows
                    ]
                    asyncio.run(settle(raw_url, ours_url))
                    raw_seconds = asyncio.run(raw_copy(raw_url, records))
                    asyncio.run(settle(raw_url, ours_url))
                    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
                    cpu_before = cpu_seconds()
                    start = time.perf_counter()
                    pushed = client.post(
                        "/v1/feeds/nat-results",
                        content=body,
                        headers={
                            "Authorization": f"Bearer {feed_key}",
                            "Content-Type": "application/x-ndjson",
                            "Idempotency-Key": f"bench-{round_number}-{batch_id}",
                        },
                    )
                    ours_seconds = time.perf_counter() - start
                    server_cpu, database_cpu = cpu_used(cpu_before, process.pid)
                    assert pushed.status_code == 201, pushed.text
                    report = pushed.json()
                    assert report["rows_accepted"] == args.rows, report
                    results.append((raw_seconds, ours_seconds, report))
                    print(
                        f"round {round_number + 1}: "
                        f"raw COPY {args.rows / raw_seconds:,.0f} rows/s, "
                        f"yuekang {args.rows / ours_seconds:,.0f} rows/s "
                        f"(body {len(body) / 1e6:.1f} MB, "
                        f"recomputed {report['persons_recomputed']}, "
                        f"changed {report['statuses_changed']}; "
                        f"CPU over {ours_seconds:.2f} s: server {server_cpu:.2f} s, "
                        f"PostgreSQL {database_cpu:.2f} s)",
                        flush=True,
                    )
                rss_after = peak_rss_kib(process.pid)
                if spy is not None:
                    spy.send_signal(subprocess.signal.SIGINT)
                    spy.wait(timeout=60)
        finally:
            process.terminate()
            process.wait(timeout=10)
            log.close()
    raw = statistics.median(args.rows / r for r, _, _ in results)
    ours = statistics.median(args.rows / o for _, o, _ in results)
    # Each round's two measurements are seconds apart; a slow spell of this shared machine slows
    # both, so the ratio is taken round by round, then its median.
    ratio = statistics.median(r / o for r, o, _ in results)
    print()
    print(f"rows per batch            {args.rows:,}")
    print(f"raw COPY (limit)          {raw:,.0f} rows/s (median of {args.rounds} rounds)")
    print(f"yuekang POST /v1/feeds    {ours:,.0f} rows/s (median)")
    print(
        f"ratio                     {ratio:.0%} (median of the rounds' ratios, "
        f"{min(r / o for r, o, _ in results):.0%}-{max(r / o for r, o, _ in results):.0%}; "
        "goal: at least 50%)"
    )
    print(
        f"server peak RSS           {rss_before / 1024:.0f} MiB before batches, "
        f"{rss_after / 1024:.0f} MiB after {args.rounds} batches"
    )


if __name__ == "__main__":
    main()
