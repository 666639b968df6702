"""Issuance and online verify on a small table and on 20 million codes, in one run.

    .venv/bin/python -m loadtests.bench_partitions [--rows 20000000] [--days 30] [--seconds 10]
                                                   [--connections 64] [--workers 2]

Starts a throwaway PostgreSQL and ``yuekang serve`` as loadtests.bench does, and measures
``POST /v1/codes`` and ``POST /v1/verify`` with wrk on ``--rows`` codes spread over ``--days``
past days (one daily partition each, as housekeeping keeps them; a revocation for one code in
100) -- the large table -- and on the small one, the same database with those days' partitions
detached, in ``--rounds`` alternating rounds. The ratios large/small (median of the rounds')
are the figures: the same machine, server and load generator in the same run. Last, one day's
partitions are detached and dropped, timed, and then the rest by housekeeping's own function.

The rows are made by the server itself, ``INSERT ... SELECT`` over ``generate_series``: nothing
crosses the socket and no Python builds 20 million rows on the same two cores (COPY FROM STDIN
would stream the same bytes a client had to make first). Mind the disk: about 500 bytes a code
with its indexes, 10 GB for 20 million; the cluster is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from loadtests.bench import (
    Load,
    _dsn,
    post_script,
    residents,
    rotating_tokens_script,
    served,
    wrk,
)
from support.servers import cli
from yuekang.partitions import LOCK_TIMEOUT

_FILL = """
INSERT INTO health_codes (code_id, resident_id, kid, status, qr_text, issued_at, expires_at)
SELECT 'b' || lpad(to_hex(n), 21, '0'),
       ($1::uuid[])[1 + n % array_length($1::uuid[], 1)],
       'bench', 'green',
       'YK1:' || repeat(md5(n::text), 6),
       e - interval '1 hour', e
FROM (SELECT n, $2::timestamptz + (n % $4) * interval '1 day'
                + ((n / $4) % 86400) * interval '1 second' AS e
      FROM generate_series($5::bigint, $5::bigint + $3 - 1) AS n) AS g
"""

_REVOKE = """
INSERT INTO revocations (code_id, resident_id, reason, revoked_at, expires_at)
SELECT code_id, resident_id, 'status_changed', issued_at, expires_at
FROM health_codes WHERE kid = 'bench' AND code_id LIKE '%00'
"""


def first_day(days: int) -> dt.datetime:
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - dt.timedelta(days=days + 1)


async def make_partitions(url: str, *, days: int) -> None:
    """The partitions of the ``days`` days the fill will use, empty: the small table is measured
    with as many partitions as the large one, so the ratio is the rows' alone."""
    from yuekang import partitions
    from yuekang.db import create_engine

    engine = create_engine(url, pool_size=1)
    try:
        await partitions.create_ahead(
            engine, now=first_day(days), days=days + 8, done=partitions.Done()
        )
    finally:
        await engine.dispose()


async def fill(url: str, *, rows: int, days: int) -> tuple[float, float]:
    """``rows`` codes over the ``days`` days before yesterday, in chunks of a million. Returns
    the seconds taken for the codes and for the revocations."""
    import asyncpg  # type: ignore[import-untyped]

    first = first_day(days)
    connection = await asyncpg.connect(_dsn(url))
    try:
        people = [r[0] for r in await connection.fetch("SELECT resident_id FROM identities")]
        started = time.perf_counter()
        chunk = 1_000_000
        for start in range(0, rows, chunk):
            await connection.execute(_FILL, people, first, min(chunk, rows - start), days, start)
            print(f"  {start + min(chunk, rows - start):,} codes", flush=True)
        codes_s = time.perf_counter() - started
        started = time.perf_counter()
        await connection.execute(_REVOKE)
        revocations_s = time.perf_counter() - started
        # As a database that grew over a month would be: vacuumed, analysed, checkpointed.
        await connection.execute("VACUUM ANALYZE health_codes")
        await connection.execute("VACUUM ANALYZE revocations")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()
    return codes_s, revocations_s


async def lookups_by_id(url: str, count: int = 2000) -> float:
    """Mean milliseconds of a code looked up by id alone (no partition key: every partition's
    index is read), as the image and contact tracing do, over ``count`` lookups."""
    import asyncpg

    connection = await asyncpg.connect(_dsn(url))
    try:
        ids = [
            r[0]
            for r in await connection.fetch(
                "SELECT code_id FROM health_codes TABLESAMPLE SYSTEM (1) LIMIT $1", count
            )
        ] or ["missing"]
        statement = await connection.prepare(
            "SELECT resident_id, expires_at FROM health_codes WHERE code_id = $1"
        )
        started = time.perf_counter()
        for n in range(count):
            await statement.fetchrow(ids[n % len(ids)])
        return (time.perf_counter() - started) * 1000 / count
    finally:
        await connection.close()


async def drop_day(url: str, *, day: dt.datetime) -> tuple[float, float, int]:
    """Detach and drop ``day``'s partitions of codes and revocations with the statements
    housekeeping runs (``partitions.drop_past``): milliseconds of the two DETACHes (which hold
    the parent's lock) and of the two DROPs (which hold none anyone waits for), and the codes."""
    import asyncpg

    connection = await asyncpg.connect(_dsn(url))
    detach = drop = 0.0
    try:
        codes = int(
            await connection.fetchval(f"SELECT count(*) FROM health_codes_p{day:%Y%m%d}")  # noqa: S608
        )
        for table in ("health_codes", "revocations"):
            name = f"{table}_p{day:%Y%m%d}"
            started = time.perf_counter()
            async with connection.transaction():
                await connection.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                await connection.execute(f"ALTER TABLE {table} DETACH PARTITION {name}")
            detached = time.perf_counter()
            await connection.execute(f"DROP TABLE {name}")
            detach += detached - started
            drop += time.perf_counter() - detached
        return detach * 1000, drop * 1000, codes
    finally:
        await connection.close()


async def housekeeping_drop(url: str, *, before: dt.datetime) -> tuple[float, list[str]]:
    """Every partition ending by ``before`` dropped by housekeeping's own function (which counts
    each one's rows first, for its report); milliseconds."""
    from yuekang import partitions
    from yuekang.db import create_engine

    engine = create_engine(url, pool_size=1)
    done = partitions.Done()
    try:
        started = time.perf_counter()
        await partitions.drop_past(
            engine, before=dict.fromkeys(partitions.PARTITIONED, before), done=done
        )
        return (time.perf_counter() - started) * 1000, done.dropped
    finally:
        await engine.dispose()


async def toggle(url: str, *, days: int, attach: bool) -> float:
    """Detach the filled days' partitions of codes and revocations (the small table: what a
    fresh deployment has) or attach them again (the large one); seconds. A detached partition
    keeps a CHECK of its range, so attaching it again skips the scan that would validate it."""
    import asyncpg

    first = first_day(days)
    connection = await asyncpg.connect(_dsn(url))
    started = time.perf_counter()
    try:
        for n in range(days):
            day = first + dt.timedelta(days=n)
            low, high = f"'{day.isoformat()}'", f"'{(day + dt.timedelta(days=1)).isoformat()}'"
            for table in ("health_codes", "revocations"):
                name = f"{table}_p{day:%Y%m%d}"
                if attach:
                    await connection.execute(
                        f"ALTER TABLE {table} ATTACH PARTITION {name} "
                        f"FOR VALUES FROM ({low}) TO ({high})"
                    )
                    continue
                await connection.execute(f"ALTER TABLE {table} DETACH PARTITION {name}")
                await connection.execute(
                    f"ALTER TABLE {name} DROP CONSTRAINT IF EXISTS {name}_range, "
                    f"ADD CONSTRAINT {name}_range "
                    f"CHECK (expires_at >= {low} AND expires_at < {high})"
                )
    finally:
        await connection.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--residents", type=int, default=300)
    options = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    load = {"seconds": options.seconds, "connections": options.connections}
    work = Path(tempfile.mkdtemp(prefix="yk-bench-partitions-"))
    # Housekeeping runs in the server: the filled days must be within retention, or it drops
    # them mid-run (as it would in production).
    with served(
        work, options.workers, YUEKANG_SCANS__RETENTION_DAYS=str(options.days + 30)
    ) as server:
        url = server.database_url
        gate = cli(server.env, work, "checkpoints", "create", "bench gate")
        tokens = residents(server, options.residents)
        code = httpx.post(
            f"{server.base}/v1/codes", headers={"Authorization": f"Bearer {tokens[0]}"}
        ).json()
        verify = post_script(
            json.dumps({"qr_text": code["qr_text"]}),
            {"Content-Type": "application/json", "Authorization": f"Bearer {gate}"},
        )
        issue = rotating_tokens_script("/v1/codes", tokens)

        def measure(label: str) -> tuple[Load, Load]:
            issued = wrk(f"{server.base}/v1/codes", **load, script=issue)
            verified = wrk(f"{server.base}/v1/verify", **load, script=verify)
            print(f"  {label}: issue {issued}\n  {label}: verify {verified}", flush=True)
            return issued, verified

        asyncio.run(make_partitions(url, days=options.days))
        codes_s, revocations_s = asyncio.run(fill(url, rows=options.rows, days=options.days))
        print(
            f"filled {options.rows:,} codes in {codes_s:.0f} s "
            f"({options.rows / codes_s:,.0f} rows/s), revocations in {revocations_s:.0f} s",
            flush=True,
        )
        # Rounds of large then small, the filled days detached and attached again between
        # them: each round's ratio is of two measurements a few seconds apart, so the drift
        # of a shared machine over the run moves both alike. The medians are the figures.
        rounds: list[tuple[tuple[Load, Load], tuple[Load, Load]]] = []
        lookups: list[tuple[float, float]] = []
        toggles: list[float] = []
        for n in range(options.rounds):
            large = measure(f"round {n + 1} large")
            large_lookup = asyncio.run(lookups_by_id(url))
            toggles.append(asyncio.run(toggle(url, days=options.days, attach=False)))
            small = measure(f"round {n + 1} small")
            small_lookup = asyncio.run(lookups_by_id(url))
            toggles.append(asyncio.run(toggle(url, days=options.days, attach=True)))
            rounds.append((large, small))
            lookups.append((large_lookup, small_lookup))
        first = first_day(options.days)
        detach_ms, drop_ms, day_rows = asyncio.run(drop_day(url, day=first))
        dropped_all_ms, dropped = asyncio.run(
            housekeeping_drop(url, before=first + dt.timedelta(days=options.days))
        )
    shutil.rmtree(work, ignore_errors=True)
    print()
    print(
        f"codes: {options.rows:,} over {options.days} days, {options.workers} workers, "
        f"{options.rounds} rounds of {options.seconds} s, {options.connections} connections"
    )
    for name, n in (("issue ", 0), ("verify", 1)):
        rates = [large[n].rate / small[n].rate for large, small in rounds]
        p99s = [large[n].p99_ms / small[n].p99_ms for large, small in rounds]
        print(
            f"{name} large/small: rate {statistics.median(rates):.0%} "
            f"({min(rates):.0%}-{max(rates):.0%}), p99 {statistics.median(p99s):.0%} "
            f"({min(p99s):.0%}-{max(p99s):.0%}); large "
            f"{statistics.median(r[0][n].rate for r in rounds):,.0f}/s p99 "
            f"{statistics.median(r[0][n].p99_ms for r in rounds):.0f} ms, small "
            f"{statistics.median(r[1][n].rate for r in rounds):,.0f}/s p99 "
            f"{statistics.median(r[1][n].p99_ms for r in rounds):.0f} ms; errors "
            f"{sum(r[0][n].errors + r[1][n].errors for r in rounds)}"
        )
    print(
        f"lookup by code id alone (every partition's index): "
        f"{statistics.median(a for a, _ in lookups):.3f} ms large, "
        f"{statistics.median(b for _, b in lookups):.3f} ms small"
    )
    print(
        f"detaching or attaching the {2 * options.days} filled partitions: "
        f"{statistics.median(toggles):.2f} s"
    )
    print(
        f"one day ({day_rows:,} codes + revocations): DETACH {detach_ms:.0f} ms "
        f"(the parent's lock), DROP {drop_ms:.0f} ms"
    )
    print(
        f"housekeeping's drop of the other {len(dropped)} partitions (counting each first): "
        f"{dropped_all_ms:.0f} ms"
    )


if __name__ == "__main__":
    main()
