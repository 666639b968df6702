"""What the metrics cost online verification: the same ``POST /v1/verify`` against two real
``yuekang serve`` processes on one PostgreSQL database in the same run, one with metrics on
(the default; several workers write to a multiprocess directory) and one with
``YUEKANG_METRICS__ENABLED=false``, in alternating rounds.

    .venv/bin/python -m loadtests.bench_metrics [--seconds 10] [--rounds 4] [--workers 2]

Each round drives both servers with wrk, one after the other, the order swapped every round so
that neither always meets the machine's warmer or busier moment. The figure is the median of the
rounds' ratios (on / off); the goal is at most 3% lost (docs/PERFORMANCE.md). The first server's
exposition is checked at the end: it counted the verifications (the metrics were really on).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from loadtests import bench
from loadtests.bench import Load, machine, post_script, residents, served, wrk
from support.servers import serve  # on the path once loadtests.bench is imported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--micro", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.micro:
        _micro()
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="yk-bench-metrics-"))
    load = {"seconds": options.seconds, "connections": options.connections}
    # Workers import the whole service: slow while the machine is busy.
    with served(work, options.workers, wait_seconds=300) as on:
        gate = bench.cli(on.env, work, "checkpoints", "create", "bench gate")
        [token] = residents(on, 1)
        code = httpx.post(
            f"{on.base}/v1/codes", headers={"Authorization": f"Bearer {token}"}, timeout=60
        ).json()
        script = post_script(
            json.dumps({"qr_text": code["qr_text"]}),
            {"Content-Type": "application/json", "Authorization": f"Bearer {gate}"},
        )
        off_env = {**on.env, "YUEKANG_METRICS__ENABLED": "false"}
        command = ("serve", "--workers", str(options.workers))
        with serve(off_env, work, "off", command=command, wait_seconds=300) as off:
            off_base = off.base
            assert httpx.get(f"{off_base}/metrics", timeout=10).status_code == 404
            # A short warm-up of each, not measured: first requests fill caches and pools.
            for base in (on.base, off_base):
                wrk(f"{base}/v1/verify", seconds=2, connections=options.connections, script=script)
            ons: list[Load] = []
            offs: list[Load] = []
            for round_ in range(options.rounds):
                order = [(on.base, ons), (off_base, offs)]
                for base, results in order if round_ % 2 == 0 else reversed(order):
                    results.append(wrk(f"{base}/v1/verify", **load, script=script))
                print(
                    f"round {round_ + 1}: on {ons[-1].rate:,.0f} req/s, "
                    f"off {offs[-1].rate:,.0f} req/s",
                    flush=True,
                )
        counted = _verifications(on.base)
    served_on = sum(r.rate for r in ons) * options.seconds
    assert counted >= 0.9 * served_on, (counted, served_on)  # the metrics were on
    ratios = [a.rate / b.rate for a, b in zip(ons, offs, strict=True)]
    errors = sum(r.errors for r in ons + offs)
    print(f"machine: {machine()}")
    print(
        f"wrk -t2 -c{options.connections} -d{options.seconds}s, {options.workers} workers, "
        f"{options.rounds} rounds; errors {errors}"
    )
    print(f"metrics on   {statistics.median(r.rate for r in ons):8,.0f} req/s (median)")
    print(f"metrics off  {statistics.median(r.rate for r in offs):8,.0f} req/s (median)")
    print(
        f"ratio        {statistics.median(ratios):8.1%} (median of rounds; "
        f"{min(ratios):.1%}-{max(ratios):.1%})"
    )
    print(
        f"p99 on/off   {statistics.median(r.p99_ms for r in ons):.1f} / "
        f"{statistics.median(r.p99_ms for r in offs):.1f} ms"
    )
    print(_micro_in_workers_mode().strip())
    shutil.rmtree(work, ignore_errors=True)


def _micro_in_workers_mode() -> str:
    """The in-process figure, in a process of its own: prometheus_client picks its
    multiprocess mode when imported, as a worker of ``serve --workers 2`` does."""
    with tempfile.TemporaryDirectory() as directory:
        done = subprocess.run(
            [sys.executable, "-m", "loadtests.bench_metrics", "--micro"],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory},
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
    return done.stdout


def _micro(calls: int = 10_000, rounds: int = 15) -> None:
    """Microseconds the metrics add to one online verification, on one core: the middleware
    around the request (count, time) and the verification's counter. (The pool's gauges move
    once per database visit, and online verifications share their visits in batches.) Short
    interleaved rounds, the best of each, beside one ES256 verification measured the same way:
    a shared machine's busy moments slow whatever runs in them, and the best rounds are the
    ones nothing else interrupted."""
    import asyncio

    from yuekang import metrics

    scope = {"type": "http", "method": "POST", "path": "/v1/verify"}
    scope[metrics.ROUTE_KEY] = "/v1/verify"

    async def answer(scope: object, receive: object, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def sent(message: object) -> None:
        return None

    counted = metrics.HttpMetricsMiddleware(answer, observer=metrics.HttpMetrics())

    async def run(app: Any, domain: bool) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await app(scope, None, sent)
            if domain:
                metrics.verified("online", "valid", "allow")
        return (time.perf_counter() - started) / calls * 1e6

    key = ec.generate_private_key(ec.SECP256R1())
    signature = key.sign(b"x" * 300, ec.ECDSA(hashes.SHA256()))
    public = key.public_key()

    def es256() -> float:
        n = 300
        started = time.perf_counter()
        for _ in range(n):
            public.verify(signature, b"x" * 300, ec.ECDSA(hashes.SHA256()))
        return (time.perf_counter() - started) / n * 1e6

    bare, ours, one = [], [], []
    for _ in range(rounds):
        bare.append(asyncio.run(run(answer, False)))
        ours.append(asyncio.run(run(counted, True)))
        one.append(es256())
    added = min(ours) - min(bare)
    mode = "multiprocess" if metrics.MULTIPROCESS_DIR else "single process"
    print(
        f"added per verification ({mode}): {added:.2f} us = "
        f"{added / min(one):.1%} of one ES256 verification ({min(one):.1f} us)"
    )


def _verifications(base: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "yuekang_verifications_total" and sample.labels.get("via") == "online"
    )


if __name__ == "__main__":
    main()
