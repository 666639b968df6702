"""How much checking feed rows in worker processes would buy: a probe for the next step.

    .venv/bin/python -m loadtests.probe_feed_workers [--rows 100000] [--rounds 2]

No HTTP and no status decisions: the same 100,000 NAT rows (NDJSON lines) are checked -- JSON,
document checks, blind index, exactly ``feeds.rows.check_plainly`` and then ``check_fully`` --
either in this process or in 1 or 2 worker processes, and COPied into ``nat_results`` as they
come back (the event loop keeps the COPY), beside a raw COPY of rows checked beforehand. It
measures the ceiling of moving the checks off the event loop on this machine; ``bench_feeds``
measures the service as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import functools
import json
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from loadtests.bench_feeds import nat_rows
from support.postgres import create_database, postgres_server
from yuekang.db import migrate
from yuekang.feeds.rows import (
    SPECS,
    FeedKind,
    RowContext,
    RowRejected,
    check_fully,
    check_plainly,
)
from yuekang.pii import BlindIndex
from yuekang.residents.documents import local_date
from yuekang.residents.service import doc_index

KEY = b"probe-blind-index-key-0123456789"
COLUMNS = ("person", "sampled_at", "result", "lab", "batch_id", "received_at")
_context: RowContext | None = None


def _start(now: dt.datetime) -> None:
    global _context
    _context = RowContext(
        now=now, today=local_date(now), person=functools.partial(doc_index, BlindIndex(KEY))
    )


def _check(lines: list[bytes]) -> list[tuple[Any, ...]]:
    assert _context is not None
    spec = SPECS[FeedKind.NAT_RESULTS]
    good = []
    for line in lines:
        with contextlib.suppress(RowRejected):
            values = json.loads(line)
            good.append(
                check_plainly(spec, values, _context) or check_fully(spec, values, _context)
            )
    return good


async def _run(url: str, lines: list[bytes], workers: int, now: dt.datetime) -> float:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    loop = asyncio.get_running_loop()
    pool = (
        concurrent.futures.ProcessPoolExecutor(workers, initializer=_start, initargs=(now,))
        if workers
        else None
    )
    if pool is None:
        _start(now)
    else:
        await asyncio.gather(*(loop.run_in_executor(pool, _check, []) for _ in range(workers)))
    batch = uuid.uuid4()

    async def write(good: list[tuple[Any, ...]]) -> None:
        await connection.copy_records_to_table(
            "nat_results", records=[(*g, batch, now) for g in good], columns=COLUMNS
        )

    start = time.perf_counter()
    async with connection.transaction():
        checking: list[asyncio.Future[list[tuple[Any, ...]]]] = []
        writing: asyncio.Future[None] | None = None
        chunks = [lines[i : i + 2500] for i in range(0, len(lines), 2500)]
        for index, chunk in enumerate(chunks):
            if pool is None:
                good = _check(chunk)
            else:
                checking.append(loop.run_in_executor(pool, _check, chunk))
                if len(checking) <= 2 and index < len(chunks) - 1:
                    continue
                good = await checking.pop(0)
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(write(good))
        for future in checking:
            good = await future
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(write(good))
        if writing is not None:
            await writing
    seconds = time.perf_counter() - start
    await connection.close()
    if pool is not None:
        pool.shutdown()
    return seconds


async def _raw(url: str, lines: list[bytes], now: dt.datetime) -> float:
    _start(now)
    good = _check(lines)
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    start = time.perf_counter()
    async with connection.transaction():
        batch = uuid.uuid4()
        await connection.copy_records_to_table(
            "nat_results", records=[(*g, batch, now) for g in good], columns=COLUMNS
        )
    seconds = time.perf_counter() - start
    await connection.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rng = random.Random(7)
    with postgres_server() as server:
        url = create_database(server)
        migrate(url)
        for _ in range(args.rounds):
            now = dt.datetime.now(dt.UTC)
            figures = {}
            for label, workers in (
                ("raw COPY", -1),
                ("inline", 0),
                ("1 worker", 1),
                ("2 workers", 2),
            ):
                lines = [json.dumps(r).encode() for r in nat_rows(rng, args.rows, now)]
                seconds = asyncio.run(
                    _raw(url, lines, now) if workers < 0 else _run(url, lines, workers, now)
                )
                figures[label] = args.rows / seconds
            raw = figures["raw COPY"]
            print("  ".join(f"{k} {v:,.0f}/s ({v / raw:.0%})" for k, v in figures.items()))


if __name__ == "__main__":
    main()
