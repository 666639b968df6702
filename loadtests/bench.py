"""yuekang beside this machine's own limits, in one run.

    .venv/bin/python -m loadtests.bench [--seconds 10] [--connections 64] [--workers 2]
                                        [--feed-rows 100000] [--only PATH ...] [--write]

Starts a throwaway PostgreSQL cluster (Debian's postgresql server binaries), then for each hot
path measures a **limit** -- a minimal program doing only the essential work -- and
**yuekang** doing the same work, with the same uvicorn worker count and the same load
generator settings:

- online verify: a bare ASGI app that parses the JSON and verifies ES256 with raw
  `cryptography`, beside `POST /v1/verify` (checkpoint key, revocation, policy, scan record);
- issuing a code: a bare ASGI app that signs with raw `cryptography` and inserts one row with
  asyncpg, beside `POST /v1/codes` on PostgreSQL;
- QR image: a bare ASGI app answering the same PNG bytes, beside `GET /v1/codes/{id}.png` served
  from the cache; the cold render is timed on its own;
- trust bundle: `GET /v1/trust-bundle` answered 200, beside the bare app answering the same
  bytes, and 304, beside it answering `hello`;
- a resident's status: `GET /v1/me/status` answered 200 and, revalidated with its ETag, 304,
  beside a bare app reading a status row by primary key with asyncpg and answering it as JSON;
- scan uploads: `POST /v1/scans`, batches of 50 from 64 devices (no limit beside it);
- offline verification: raw ES256 verification on one core, beside `TrustStore.verify`;
- feed ingestion: raw COPY into PostgreSQL, beside a 100,000-row batch over HTTP
  (`loadtests.bench_feeds`).

Then it runs three benchmarks of this directory on their own, with their own settings, and
puts their figures in the table: proofing and the document check (`loadtests.bench_identity
--binds 600`), the metrics' cost (`loadtests.bench_metrics --rounds 2 --seconds 8`) and the
morning rush (`loadtests.bench_rush`, whose own report follows the table).

Load comes from wrk (Debian's package) in a separate process on 127.0.0.1, bounded by
``--seconds``; its own CPU use is reported, to show it is not the bottleneck. ``--only``
measures some paths while working on them. ``--write`` puts the table, with the machine's
description, and the rush's report into docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from loadtests.bare import sign_code  # noqa: E402
from support.api import (  # noqa: E402
    Enrolment,
    enrol_many,
    random_phone,
    random_prc_id,
    registered_over_http,
)
from support.postgres import create_database, postgres_server  # noqa: E402
from support.servers import YUEKANG, cli, free_port, server_env  # noqa: E402
from yuekang.db import migrate  # noqa: E402

PERFORMANCE = ROOT / "docs" / "PERFORMANCE.md"
RESIDENTS = 1000
PATHS = (
    "verify",
    "issue",
    "image",
    "bundle",
    "status",
    "scans",
    "offline",
    "cold",
    "feeds",
    "identity",
    "metrics",
    "rush",
)
SCANS_PER_UPLOAD = 50
DEVICES = 64
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
RUSH_BEGIN, RUSH_END = "<!-- rush:begin -->", "<!-- rush:end -->"
THREAD_PLACES = """threads = 0
setup = function(thread)
  thread:set("offset", threads * 7919)
  thread:set("prefix", "t" .. threads .. "-" .. math.random(1, 1000000000))
  threads = threads + 1
end
"""
"""wrk's Lua, before a script's ``request``: each thread its own ``offset`` into the script's
list, or the threads would ask for the same item at the same moment, and its own ``prefix`` for
the ids it makes."""


@dataclass
class Load:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    wrk_cpu: float
    """Cores wrk used on average: well under one means it was not what limited the rate."""


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if match is None:
        return float("nan")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(
    url: str, *, seconds: int, connections: int, script: str | None = None, threads: int = 2
) -> Load:
    """Drive ``url`` with wrk; throughput, latency percentiles, errors and wrk's own CPU (of
    every child process that ended meanwhile: run one at a time for that figure)."""
    threads = min(threads, connections)
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        if script:
            lua.write(script)
            args[1:1] = ["-s", lua.name]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    Path(lua.name).unlink(missing_ok=True)
    out = done.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # Anchored: "+/- Stdev  88.50%" must not read as the 50th percentile.
    p50_match = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99_match = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if p50_match is None or p99_match is None:
        # No request finished in time: wrk prints no distribution.
        print(out, flush=True)
        return Load(rate, float("nan"), float("nan"), -1, 0.0)
    p50, p99 = _ms(p50_match.group(1)), _ms(p99_match.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (
        sum(int(g) for g in socket.groups()) if socket else 0
    )
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Load(rate, p50, p99, errors, cpu / seconds)


def post_script(body: str, headers: dict[str, str]) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n"


def rotating_tokens_script(
    path: str, tokens: list[str], method: str = "POST", etags: list[str] | None = None
) -> str:
    """``method`` ``path`` with the bearer tokens in turn (many residents, not one hot row), each
    with its own ``If-None-Match`` when ``etags`` are given."""
    listed = ", ".join(json.dumps(t) for t in tokens)
    tags = ", ".join(json.dumps(t) for t in etags or [])
    revalidate = '["If-None-Match"] = etags[n], ' if etags else ""
    # Each wrk thread starts at its own place in the list, or the threads would ask for the
    # same person at the same moment.
    return f"""tokens = {{{listed}}}
etags = {{{tags}}}
{THREAD_PLACES}i = 0
request = function()
  i = i + 1
  local n = ((i + offset) % #tokens) + 1
  return wrk.format({json.dumps(method)}, {json.dumps(path)},
                    {{{revalidate}["Authorization"] = "Bearer " .. tokens[n]}}, nil)
end
"""


def header_script(headers: dict[str, str]) -> str:
    return "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items())


@dataclass
class Served:
    database_url: str
    base: str
    port: int
    env: dict[str, str]
    postgres: str
    """The PostgreSQL server's URL, for more databases (``support.postgres.create_database``)."""


@contextmanager
def served(
    work: Path, workers: int, log: Path | None = None, wait_seconds: float = 60, **extra: str
) -> Iterator[Served]:
    """A throwaway PostgreSQL and ``yuekang serve --workers N`` on it, as the benchmarks run
    it: the server's defaults with development secrets (and ``extra`` settings)."""
    with postgres_server() as pg:
        url = create_database(pg)
        migrate(url)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        # Every resident signs in and proves their identity from this one address: lift the
        # per-address limits.
        settings = {
            "YUEKANG_OTP__PER_CLIENT_LIMIT": "100000",
            "YUEKANG_OTP__VERIFY_PER_CLIENT_LIMIT": "100000",
            "YUEKANG_PROOFING__PER_CLIENT_LIMIT": "100000",
            # Tokens made at the start serve the whole run; every request makes a new code
            # (answering the live one again would measure a read, not issuance).
            "YUEKANG_SESSION__TTL_SECONDS": "86400",
            "YUEKANG_CODES__REUSE": "false",
        }
        env = server_env(url, work / "keys", **{**settings, **extra})
        serve = [YUEKANG, "serve", "--port", str(port), "--workers", str(workers)]
        with process(serve, env, f"{base}/healthz", log or work / "yuekang.log", wait_seconds):
            yield Served(url, base, port, env, pg)


@contextmanager
def process(
    args: list[str], env: dict[str, str], health: str, log: Path, wait_seconds: float = 60
) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    if httpx.get(health, timeout=1).status_code < 500:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log.read_text())
                time.sleep(0.2)
            yield
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def per_second(work: Callable[[], object], seconds: float = 2.0) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(100):
            work()
        count += 100
    return count / elapsed


def raw_signature_rates() -> tuple[float, float]:
    key = ec.generate_private_key(ec.SECP256R1())
    message = b"x" * 300
    signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    public = key.public_key()
    verify = per_second(lambda: public.verify(signature, message, ec.ECDSA(hashes.SHA256())))
    sign = per_second(lambda: key.sign(message, ec.ECDSA(hashes.SHA256())))
    return verify, sign


def offline_rate(base: str, checkpoint: str, qr_text: str) -> tuple[float, float]:
    """TrustStore.verify per second on one core, beside raw verification of the same code."""
    from yuekang.codec.keys import VerificationKey, b64url_decode
    from yuekang.verifier import TrustStore

    anchor = VerificationKey.from_jwk(httpx.get(f"{base}/v1/trust-anchor", timeout=60).json())
    bundle = httpx.get(
        f"{base}/v1/trust-bundle", headers={"Authorization": f"Bearer {checkpoint}"}, timeout=60
    )
    now = int(time.time())
    store = TrustStore(anchor).load(bundle.text, now=now)
    assert store.verify(qr_text, now=now).valid
    head, payload, signature = qr_text[4:].split(".")
    kid = json.loads(b64url_decode(head))["kid"]
    key = store._verifier.keys[kid]  # the same key object the store uses
    raw = b64url_decode(signature)
    signing_input = f"{head}.{payload}".encode()
    # Interleaved short rounds, the best of each: one long round of each swings with whatever
    # else the two cores did at that moment.
    raw_rates, ours = [], []
    for _ in range(6):
        raw_rates.append(per_second(lambda: key.verify(raw, signing_input), seconds=0.5))
        ours.append(per_second(lambda: store.verify(qr_text, now=now), seconds=0.5))
    return max(ours), max(raw_rates)


def qr_cold_ms(qr_text: str) -> float:
    from yuekang.health_codes import qr

    times = []
    for _ in range(15):
        start = time.perf_counter()
        qr.render_png(qr_text, "green")
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def machine(load_generator: str | None = None) -> str:
    """This machine, and the load generator with its version (wrk's by default)."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    if load_generator is None:
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1]
        load_generator = f"wrk {version}"
    return (
        f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python "
        f"{platform.python_version()}, {load_generator}"
    )


def residents(server: Served, count: int) -> list[str]:
    """Session tokens of ``count`` residents with identities proved and bound, made eight at a
    time; they are enrolled in the server's development registry at once first."""
    from concurrent.futures import ThreadPoolExecutor

    people = [(random_phone(), random_prc_id()) for _ in range(count)]
    enrol_many(
        Path(server.env["YUEKANG_PROOFING__BUILTIN_DIR"]),
        [Enrolment("陈大文", number, birth, phone) for phone, (number, birth) in people],
    )

    def bound(person: tuple[str, tuple[str, dt.date]]) -> str:
        phone, identity = person
        return registered_over_http(client, phone, registry=None, identity=identity).token

    with httpx.Client(base_url=server.base, timeout=30) as client, ThreadPoolExecutor(8) as pool:
        return list(pool.map(bound, people))


def feed_ratio(rows: int) -> tuple[float, float, float, str] | None:
    if rows <= 0:
        return None
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.bench_feeds", "--rows", str(rows), "--rounds", "5"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    ours = re.search(r"yuekang POST /v1/feeds\s+([\d,]+) rows/s", done.stdout)
    raw = re.search(r"raw COPY \(limit\)\s+([\d,]+) rows/s", done.stdout)
    ratio = re.search(r"ratio\s+(\d+)% \(median of the rounds' ratios, (\d+%-\d+%)", done.stdout)
    if not (ours and raw and ratio):
        print(done.stdout[-2000:], done.stderr[-2000:])
        return None
    return (
        float(ours.group(1).replace(",", "")),
        float(raw.group(1).replace(",", "")),
        int(ratio.group(1)) / 100,
        ratio.group(2),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--feed-rows", type=int, default=100_000)
    parser.add_argument("--write", action="store_true", help="update docs/PERFORMANCE.md")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PATHS,
        default=PATHS,
        help="measure only these paths (while working on one); --write needs them all",
    )
    options = parser.parse_args()
    only = set(options.only)
    if options.write and only != set(PATHS):
        parser.error("--write replaces the whole table: measure every path")
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    load = {"seconds": options.seconds, "connections": options.connections}
    rows: list[tuple[str, str, str, str]] = []
    work = Path(tempfile.mkdtemp(prefix="yk-bench-"))

    verify_raw, sign_raw = raw_signature_rates()
    print(f"raw ES256 per core: verify {verify_raw:,.0f}/s, sign {sign_raw:,.0f}/s")

    with served(work, options.workers) as server:
        url, base, port, env = server.database_url, server.base, server.port, server.env
        gate = cli(env, work, "checkpoints", "create", "bench gate")
        # Enough people that 64 connections rarely ask for the same one at once: issuance
        # locks the person's status row, and a real queue is many people, not 50.
        tokens = residents(server, RESIDENTS)
        code = httpx.post(
            f"{base}/v1/codes", headers={"Authorization": f"Bearer {tokens[0]}"}
        ).json()
        qr_text, png_url = code["qr_text"], code["png_url"]

        # Keys for the bare apps: the same curve and signature work.
        key = ec.generate_private_key(ec.SECP256R1())
        (work / "private.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (work / "public.pem").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

        if "verify" in only:
            # Online verify.
            verify_body = json.dumps({"qr_text": qr_text})
            ours = wrk(
                f"{base}/v1/verify",
                **load,
                script=post_script(
                    verify_body,
                    {"Content-Type": "application/json", "Authorization": f"Bearer {gate}"},
                ),
            )
            bare = _bare(
                "verify_app",
                work,
                options.workers,
                {"BARE_PUBLIC_PEM": str(work / "public.pem")},
                lambda url: wrk(
                    url,
                    **load,
                    script=post_script(
                        json.dumps({"qr_text": sign_code(key)[1]}),
                        {"Content-Type": "application/json"},
                    ),
                ),
            )
            rows.append(_row("Online verify (`POST /v1/verify`)", ours, bare, 0.65, 25))

        if "issue" in only:
            # Issue a code on PostgreSQL.
            ours = wrk(
                f"{base}/v1/codes", **load, script=rotating_tokens_script("/v1/codes", tokens)
            )
            _bare_table(url)
            bare = _bare(
                "issue_app",
                work,
                options.workers,
                {"BARE_PRIVATE_PEM": str(work / "private.pem"), "BARE_DATABASE_URL": _dsn(url)},
                lambda url_: wrk(url_, **load, script=post_script("{}", {})),
            )
            rows.append(_row("Issue a code (`POST /v1/codes`, PostgreSQL)", ours, bare, 0.5, 50))

        if "image" in only:
            # QR image, cached.
            png = httpx.get(png_url, headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=60)
            (work / "code.png").write_bytes(png.content)
            path = png_url.split(str(port), 1)[1]
            ours = wrk(
                f"{base}{path}",
                **load,
                script=header_script({"Authorization": f"Bearer {tokens[0]}"}),
            )
            bare = _bare(
                "static_app",
                work,
                options.workers,
                {"BARE_FILE": str(work / "code.png")},
                lambda url_: wrk(url_, **load),
            )
            rows.append(_row("QR image, cached (`GET /v1/codes/{id}.png`)", ours, bare, 0.5, None))

        if "bundle" in only:
            # Trust bundle: the whole signed bundle, and the 304 nearly every sync gets.
            gate_auth = {"Authorization": f"Bearer {gate}"}
            fetched = httpx.get(f"{base}/v1/trust-bundle", headers=gate_auth, timeout=60)
            (work / "bundle.jws").write_bytes(fetched.content)
            (work / "hello.txt").write_bytes(b"hello")
            full = wrk(f"{base}/v1/trust-bundle", **load, script=header_script(gate_auth))
            same = wrk(
                f"{base}/v1/trust-bundle",
                **load,
                script=header_script({**gate_auth, "If-None-Match": fetched.headers["etag"]}),
            )
            same_bytes = _bare(
                "static_app",
                work,
                options.workers,
                {"BARE_FILE": str(work / "bundle.jws")},
                lambda url_: wrk(url_, **load),
            )
            hello = _bare(
                "static_app",
                work,
                options.workers,
                {"BARE_FILE": str(work / "hello.txt")},
                lambda url_: wrk(url_, **load),
            )
            rows.append(
                _row(
                    f"Trust bundle, 200 (`GET /v1/trust-bundle`, {len(fetched.content):,} bytes)",
                    full,
                    same_bytes,
                    0.5,
                    25,
                    "the same bytes",
                )
            )
            rows.append(_row("Trust bundle, 304 (If-None-Match)", same, hello, 0.5, 25, "hello"))

        if "status" in only:
            status = wrk(
                f"{base}/v1/me/status",
                **load,
                script=rotating_tokens_script("/v1/me/status", tokens, "GET"),
            )
            with httpx.Client(base_url=base, timeout=30) as client:
                etags = [
                    client.get("/v1/me/status", headers={"Authorization": f"Bearer {t}"}).headers[
                        "etag"
                    ]
                    for t in tokens
                ]
            unchanged = wrk(
                f"{base}/v1/me/status",
                **load,
                script=rotating_tokens_script("/v1/me/status", tokens, "GET", etags),
            )
            bare = _bare(
                "status_app",
                work,
                options.workers,
                {"BARE_DATABASE_URL": _dsn(url)},
                lambda url_: wrk(url_, **load),
            )
            limit = "the same primary-key read and JSON"
            rows.append(
                _row("A resident's status, 200 (`GET /v1/me/status`)", status, bare, 0.5, 25, limit)
            )
            rows.append(
                _row("A resident's status, 304 (If-None-Match)", unchanged, bare, 0.5, 25, limit)
            )

        if "scans" in only:
            # Scan records uploaded by devices that verified offline, 50 to a batch.
            devices = [
                cli(env, work, "checkpoints", "create", f"device {n}") for n in range(DEVICES)
            ]
            uploads = wrk(
                f"{base}/v1/scans",
                **load,
                script=upload_script(devices, code["code_id"], SCANS_PER_UPLOAD),
            )
            rows.append(
                (
                    f"Scan uploads (`POST /v1/scans`, {SCANS_PER_UPLOAD} to a batch, "
                    f"{DEVICES} devices)",
                    f"{uploads.rate * SCANS_PER_UPLOAD:,.0f} scans/s "
                    f"({uploads.rate:,.0f} req/s{_errors(uploads)})",
                    "--",
                    f"p50 {uploads.p50_ms:.1f} ms, p99 {uploads.p99_ms:.1f} ms",
                )
            )

        if "offline" in only:
            offline, raw = offline_rate(base, gate, qr_text)
            rows.append(
                (
                    "Offline verifier, one core",
                    f"{offline:,.0f}/s",
                    f"{raw:,.0f}/s (raw ES256)",
                    f"**{offline / raw:.0%}** (goal ≥ 85%)",
                )
            )
    if "cold" in only:
        cold = qr_cold_ms(qr_text)
        rows.append(("QR image, cold render", f"{cold:.1f} ms", "--", "goal ≤ 15 ms"))
    feeds = feed_ratio(options.feed_rows) if "feeds" in only else None
    if feeds:
        rows.append(
            (
                "Feed ingestion, 100,000 rows",
                f"{feeds[0]:,.0f} rows/s",
                f"{feeds[1]:,.0f} rows/s (raw COPY)",
                f"**{feeds[2]:.0%}** (goal ≥ 50%), the median of 5 rounds' ratios ({feeds[3]})",
            )
        )

    if "identity" in only:
        rows.extend(identity_rows())
    if "metrics" in only:
        rows.extend(metrics_rows())
    rush = rush_report() if "rush" in only else None
    if rush is not None:
        rows.append(rush[0])

    table = [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {machine()}; "
        f"raw ES256 {verify_raw:,.0f} verifications and {sign_raw:,.0f} signatures per second "
        f"per core; wrk -t2 -c{options.connections} -d{options.seconds}s, "
        f"{options.workers} uvicorn workers for every server.",
        "",
        "| Hot path | yuekang | limit (same run) | ratio, latency |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
    ]
    print("\n".join(table))
    if rush is not None:
        print("\n" + rush[1])
    if options.write:
        text = _replaced(PERFORMANCE.read_text(), BEGIN, END, "\n".join(table))
        if rush is not None:
            text = _replaced(text, RUSH_BEGIN, RUSH_END, rush[1])
        PERFORMANCE.write_text(text)
    shutil.rmtree(work, ignore_errors=True)


def _replaced(text: str, begin: str, end: str, content: str) -> str:
    block = f"{begin}\n{content}\n{end}"
    if begin in text:
        return re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    return text + "\n" + block + "\n"


def _errors(load: Load) -> str:
    return f", {load.errors} error{'s' if load.errors > 1 else ''}" if load.errors else ""


def upload_script(checkpoint_keys: list[str], code_id: str, per_upload: int) -> str:
    """wrk: ``POST /v1/scans`` batches of ``per_upload`` new scan records of one code, each
    with an id never sent before (a repeated id is a duplicate, not a new record), from the
    checkpoints in turn (a checkpoint's uploads are stored one batch at a time)."""
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    record = (
        '{"scan_id":"%s-%d-%d","code_id":"' + code_id + '","scanned_at":"' + when + '",'
        '"verdict":"valid","decision":"allow"}'
    )
    keys = ", ".join(json.dumps(k) for k in checkpoint_keys)
    return f"""{THREAD_PLACES}keys = {{{keys}}}
counter = 0
request = function()
  counter = counter + 1
  local parts = {{}}
  for j = 1, {per_upload} do
    parts[j] = string.format({json.dumps(record)}, prefix, counter, j)
  end
  local key = keys[((counter + offset) % #keys) + 1]
  return wrk.format("POST", "/v1/scans",
                    {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}},
                    '{{"scans":[' .. table.concat(parts, ",") .. ']}}')
end
"""


def _module(module: str, *args: str, timeout: int = 1800) -> str | None:
    """The output of another benchmark of this directory, run on its own; None if it failed."""
    done = subprocess.run(
        [sys.executable, "-m", f"loadtests.{module}", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
    if done.returncode != 0:
        print(f"loadtests.{module} failed:", done.stdout[-3000:], done.stderr[-3000:])
        return None
    return done.stdout


def identity_rows() -> list[tuple[str, ...]]:
    """Proofing beside the reference registry alone, and the document check beside a code scan
    (``loadtests.bench_identity``)."""
    out = _module("bench_identity", "--binds", "600")
    rows = []
    for line in (out or "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith(("Proofing", "Document check")):
            path, rate, limit, ratio, p99 = cells
            rows.append((path, rate, limit, f"**{ratio}**; p99 {p99}"))
    return rows


def metrics_rows() -> list[tuple[str, ...]]:
    """What the metrics cost online verification (``loadtests.bench_metrics``)."""
    out = _module("bench_metrics", "--rounds", "2", "--seconds", "8") or ""
    on = re.search(r"metrics on\s+([\d,]+) req/s", out)
    off = re.search(r"metrics off\s+([\d,]+) req/s", out)
    ratio = re.search(r"ratio\s+([\d.]+%) \(median of rounds; ([^)]*)\)", out)
    added = re.search(r"= ([\d.]+)% of one ES256", out)
    if not (on and off and ratio):
        return []
    extra = f"; in process, {added.group(1)}% of an ES256 verification" if added else ""
    return [
        (
            "Metrics on, online verify (`loadtests.bench_metrics`)",
            f"{on.group(1)} req/s",
            f"{off.group(1)} req/s (metrics off)",
            f"**{ratio.group(1)}** (goal ≥ 97%), rounds {ratio.group(2)}{extra}",
        )
    ]


def rush_report() -> tuple[tuple[str, ...], str] | None:
    """The morning rush (``loadtests.bench_rush``): a row for the table, and its own report."""
    out = _module("bench_rush")
    if not out:
        return None
    report = out[out.index("The rush:") :].strip() if "The rush:" in out else out.strip()
    answered = re.search(r"([\d,]+) req/s answered", report)
    nodes = re.search(r"([\d,]+) at the autoscaler's 70%", report)
    p99s = [
        float(m.group(1).replace(",", ""))
        for m in re.finditer(r"\| [\d,]+ req/s \| [\d.]+ ms \| ([\d,.]+) ms \|", report)
    ]
    row = (
        "Morning rush, the whole mix at once (`loadtests.bench_rush`, below)",
        f"{answered.group(1) if answered else '?'} req/s",
        "--",
        f"worst p99 in the mix {max(p99s) if p99s else float('nan'):.1f} ms; "
        f"{nodes.group(1) if nodes else '?'} such nodes for the seed's peak at 70%",
    )
    return row, report


def _row(
    name: str,
    ours: Load,
    bare: Load,
    goal: float,
    p99_goal: float | None,
    doing: str | None = None,
) -> tuple[str, ...]:
    """A path beside its bare app; ``doing`` says what the bare app does when it is not the
    same work as the path's."""
    print(f"{name}: yuekang {ours}, limit {bare}", flush=True)
    errors = f", {ours.errors} errors" if ours.errors else ""
    latency = f"p50 {ours.p50_ms:.1f} ms, p99 {ours.p99_ms:.1f} ms"
    if p99_goal is not None:
        latency += f" (goal ≤ {p99_goal} ms)"
    return (
        name,
        f"{ours.rate:,.0f} req/s{errors}",
        f"{bare.rate:,.0f} req/s (bare ASGI{'' if doing is None else ', ' + doing}; "
        f"wrk used {bare.wrk_cpu:.2f} cores)",
        f"**{ours.rate / bare.rate:.0%}** (goal ≥ {goal:.0%}); {latency}",
    )


def _bare(
    app: str, work: Path, workers: int, extra: dict[str, str], run: Callable[[str], Load]
) -> Load:
    port = free_port()
    env = {**os.environ, **extra, "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        f"loadtests.bare:{app}",
        "--factory",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    url = f"http://127.0.0.1:{port}/"
    with process(args, env, url, work / f"{app}.log"):
        return run(url)


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def _bare_table(url: str) -> None:
    import asyncio

    import asyncpg  # type: ignore[import-untyped]

    async def create() -> None:
        connection = await asyncpg.connect(_dsn(url))
        try:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS bare_codes "
                "(code_id text PRIMARY KEY, qr_text text NOT NULL, issued_at timestamptz NOT NULL)"
            )
        finally:
            await connection.close()

    asyncio.run(create())


if __name__ == "__main__":
    main()
