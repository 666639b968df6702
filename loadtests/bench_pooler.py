"""What pgbouncer in transaction mode costs, beside the same work straight to PostgreSQL.

    .venv/bin/python -m loadtests.bench_pooler [--seconds 5] [--concurrency 16] [--rounds 3]

Starts a throwaway PostgreSQL and Debian's pgbouncer in front of it (pool_mode=transaction,
enough server connections for every engine at once: the pool is not what is measured), then
measures, each for ``--seconds`` at ``--concurrency``, every variant's engine or app built once
and kept for the whole run:

- **statements**: transactions of five reads by primary key (SQLAlchemy Core, one engine),
  the way a request reads: straight with the default statement caches (the limit), straight
  with ``pooler="transaction"``'s arguments (the cost of asyncpg's cache off: a parse with every
  execution), through pgbouncer with them (adding the hop), and through pgbouncer with
  SQLAlchemy's cache off too (``prepared_statement_cache_size=0``, what some advice adds: a
  second round trip, and a second parse, for every statement);
- **online verify** (``POST /v1/verify``) and **issuance** (``POST /v1/codes``, a new code each
  time) through the app in this process (httpx's ASGI transport, as the tests drive it):
  straight as today, straight with ``pooler="transaction"``, and through pgbouncer with it.

Every figure is a rate, the median of ``--rounds`` rounds; a ratio is against the first row
measured in the same round, seconds apart, so a slow spell of the shared machine slows both, and
every other round runs in reverse order. The client shares this process's core with the app:
the API figures are of one process, the statement figures of the database's side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from loadtests.bench import machine  # also puts tests/ on sys.path
from support import pgbouncer as bouncers
from support.api import Api
from support.postgres import create_database, postgres_server
from yuekang import db
from yuekang.app import bootstrap_dev_key, create_app
from yuekang.auth.sms import MemorySmsSender
from yuekang.checkpoints import service as checkpoints
from yuekang.clock import SystemClock
from yuekang.config import CodeSettings, DatabaseSettings, ResolvedSettings, SessionSettings
from yuekang.db import migrate
from yuekang.principals import Actor
from yuekang.residents.proofing import MemoryProofing
from yuekang.rules.policy import as_place_kind

Work = Callable[[], Awaitable[None]]


async def rate(work: Work, *, seconds: float, concurrency: int) -> float:
    """Completed calls of ``work`` per second, ``concurrency`` at a time."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await work()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


async def statements(
    stack: contextlib.AsyncExitStack, url: str, connect_args: dict[str, Any], concurrency: int
) -> Work:
    """A transaction of five reads by primary key, on an engine of its own (closed with
    ``stack``): create_engine's arguments, with the statement caches as the variant has them."""
    engine = db.create_async_engine(
        url,
        pool_size=concurrency,
        max_overflow=0,
        connect_args={"command_timeout": 5, **connect_args},
    )
    stack.push_async_callback(engine.dispose)
    queries = [
        text("SELECT id, created_at FROM residents WHERE id = :id"),
        text("SELECT resident_id, status FROM health_status WHERE resident_id = :id"),
        text("SELECT code_id FROM revocations WHERE code_id = :code"),
        text("SELECT kid, state FROM signing_keys WHERE kid = :code"),
        text("SELECT resident_id FROM health_codes WHERE code_id = :code"),
    ]
    values = {"id": uuid.uuid4(), "code": "none"}

    async def transaction() -> None:
        async with engine.begin() as connection:
            for query in queries:
                await connection.execute(query, values)

    await asyncio.gather(*(transaction() for _ in range(concurrency)))  # connect, warm up
    return transaction


async def api(
    stack: contextlib.AsyncExitStack, url: str, pooler: str, concurrency: int
) -> tuple[Work, Work]:
    """(online verify, issuance) through an app of its own on ``url`` (stopped with ``stack``)."""
    # The suite's settings for an app in a test (tests/ is on the path once loadtests.bench is
    # imported).
    from conftest import make_settings

    settings = make_settings(
        url,
        Path(tempfile.mkdtemp(prefix="yuekang-bench-pooler-")),
        database=DatabaseSettings(pooler=pooler),  # type: ignore[arg-type]
        codes=CodeSettings(reuse=False),
        session=SessionSettings(ttl_seconds=86400),
    )
    registry = MemoryProofing()
    app = create_app(
        ResolvedSettings(settings, settings.secrets),
        clock=SystemClock(),
        sms=MemorySmsSender(),
        proofing=registry,
    )
    await stack.enter_async_context(app.router.lifespan_context(app))
    await bootstrap_dev_key(app.state.context)
    transport = httpx.ASGITransport(app=app)
    client = await stack.enter_async_context(
        httpx.AsyncClient(transport=transport, base_url="http://bench")
    )
    caller = Api(client, registry)
    people = [await caller.registered() for _ in range(concurrency)]
    context = app.state.context
    async with context.sessionmaker() as session, session.begin():
        _, gate = await checkpoints.create_checkpoint(
            session,
            name="bench gate",
            kind=as_place_kind("venue"),
            actor=Actor.cli(),
            now=dt.datetime.now(dt.UTC),
        )
    code = (await caller.code(people[0]))["qr_text"]
    turn = itertools.count()

    async def verify() -> None:
        answer = await client.post(
            "/v1/verify", headers={"Authorization": f"Bearer {gate}"}, json={"qr_text": code}
        )
        assert answer.status_code == 200, answer.text

    async def issue() -> None:
        answer = await caller.issue(people[next(turn) % len(people)])
        assert answer.status_code == 201, answer.text

    return verify, issue


async def rounds(
    variants: dict[str, tuple[Work, ...]], args: argparse.Namespace
) -> list[dict[str, tuple[float, ...]]]:
    """Every variant's every workload measured once a round, in turn; every other round in
    reverse order, so that neither a warming cache nor a neighbour's busy spell favours one."""
    results = []
    for number in range(args.rounds):
        names = list(variants) if number % 2 == 0 else list(reversed(variants))
        measured: dict[str, tuple[float, ...]] = {}
        for name in names:
            measured[name] = tuple(
                [
                    await rate(work, seconds=args.seconds, concurrency=args.concurrency)
                    for work in variants[name]
                ]
            )
        results.append(measured)
    return results


def summary(
    results: list[dict[str, tuple[float, ...]]], order: list[str], index: int
) -> dict[str, tuple[float, float]]:
    """Per variant: the median rate and the median of its ratio to the first variant's in the
    same round."""
    first = order[0]
    return {
        name: (
            statistics.median(r[name][index] for r in results),
            statistics.median(r[name][index] / r[first][index] for r in results),
        )
        for name in order
    }


async def measure(direct: str, pooled: str, args: argparse.Namespace) -> None:
    pooler = db.pooler_connect_args("transaction")
    both_off = {**pooler, "prepared_statement_cache_size": 0}
    async with contextlib.AsyncExitStack() as stack:
        reads = {
            "straight, default caches (the limit)": (direct, {}),
            "straight, pooler=transaction": (direct, pooler),
            "pgbouncer, pooler=transaction": (pooled, pooler),
            "pgbouncer, SQLAlchemy's cache off too": (pooled, both_off),
        }
        works = {
            name: (await statements(stack, url, extra, args.concurrency),)
            for name, (url, extra) in reads.items()
        }
        results = await rounds(works, args)
        print("| transactions of 5 reads | per second | ratio |\n|---|---:|---:|")
        for name, (got, ratio) in summary(results, list(reads), 0).items():
            print(f"| {name} | {got:,.0f} | {ratio:.2f} |")
    async with contextlib.AsyncExitStack() as stack:
        apps = {
            "straight, pooler=none (the limit)": (direct, "none"),
            "straight, pooler=transaction": (direct, "transaction"),
            "pgbouncer, pooler=transaction": (pooled, "transaction"),
        }
        works = {
            name: await api(stack, url, mode, args.concurrency)
            for name, (url, mode) in apps.items()
        }
        results = await rounds(works, args)
        verified, issued = summary(results, list(apps), 0), summary(results, list(apps), 1)
        print("\n| API | verify / s | ratio | issue / s | ratio |\n|---|---:|---:|---:|---:|")
        for name in apps:
            print(
                f"| {name} | {verified[name][0]:,.0f} | {verified[name][1]:.2f} "
                f"| {issued[name][0]:,.0f} | {issued[name][1]:.2f} |"
            )
    print(f"\nmedians of {args.rounds} rounds; a ratio is against the first row of its round")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # The app's start-up notes (development key, missing page assets) are not figures.
    logging.getLogger("yuekang").setLevel(logging.ERROR)
    missing = bouncers.available()
    if missing:
        raise SystemExit(missing)
    with postgres_server() as server:
        direct = create_database(server)
        migrate(direct)
        # Enough server connections for every variant's engine at once: the pool is not what
        # is measured.
        with bouncers.pgbouncer(server, pool_size=4 * args.concurrency) as bouncer:
            print(machine("httpx ASGI transport in process, pgbouncer 1.18"))
            print(f"{args.seconds:g} s each, {args.concurrency} at a time\n")
            asyncio.run(measure(direct, bouncer.url(direct), args))


if __name__ == "__main__":
    main()
