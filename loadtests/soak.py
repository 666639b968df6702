"""A bounded soak: the real mix (loadtests/locustfile.py) against a real server, with its memory
watched, in one run.

    .venv/bin/python -m loadtests.soak [--minutes 10] [--users 100] [--warmup 60] [--rate 5]
                                       [--refresh-seconds 60] [--feed-rows 500] [--write]

Starts a throwaway PostgreSQL cluster and ``yuekang serve --workers 2`` on 127.0.0.1 with the
settings ``loadtests.bench`` uses (``support.servers.server_env``: the server's defaults, with
development secrets; the per-address OTP limit is lifted, since every resident signs in from
127.0.0.1 -- each resident asks for one code for its own random phone, once, so the per-phone
limit stays as configured). It creates a checkpoint key and a ``nat-results`` feed key, then runs
locust headless in a separate process for ``--minutes``, the first ``--warmup`` seconds of which
are the warm-up (users spawn at ``--rate`` a second and every process loads what it caches),
with ``--users`` users in the locustfile's proportions (residents 10 : checkpoints 5 : labs 1;
Macao is left out).

Every 10 seconds it reads the resident memory (VmRSS) of the uvicorn parent and of each worker
process. At the end it prints that series; each process's RSS at the end of the warm-up and at
the end; whether it kept growing after the warm-up (the mean of the last quarter of the samples
after the warm-up beside the mean of the first quarter); and from locust's CSV files the
requests, failures, requests per second and p50/p99 of each request type.

It exits non-zero if locust saw any failure or exception (a 5xx is one; locust's exit code
counts the last second too, which its CSV files may miss), or the server log holds a traceback;
the logs are then kept, and their directory printed. ``--write`` puts a short result block into
docs/PERFORMANCE.md (between the soak markers, added at the end of the file the first time).

Locust is not a project dependency: ``.venv/bin/pip install locust``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from loadtests.bench import (  # also puts tests/ on sys.path, for support.*
    ROOT,
    machine,
    served,
)
from support.api import Enrolment, enrol_many, random_phone, random_prc_id
from support.servers import cli

PERFORMANCE = ROOT / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
SAMPLE_SECONDS = 10
MIB = 1024.0
SERVER_ERROR = re.compile(r"\b5\d\d Server Error")
"""How requests words a 5xx in locust's failure list."""
ACCESS = re.compile(r'"[A-Z]+ \S+ HTTP/[\d.]+" (\d{3})\b')
"""uvicorn's access log line: ``INFO:     127.0.0.1:5678 - "POST /v1/verify HTTP/1.1" 200 OK``."""


# -- memory ---------------------------------------------------------------------------------


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB, or None once the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(p) for p in task.read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return sorted(set(found))


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def server_pid(port: int) -> int:
    """The ``yuekang serve`` process this script started (``process`` does not hand it out)."""
    for pid in children(os.getpid()):
        line = cmdline(pid)
        if " serve " in f"{line} " and f"--port {port}" in line:
            return pid
    raise RuntimeError(f"no yuekang serve --port {port} among this process's children")


@dataclass
class Memory:
    """RSS samples (KiB) of the server's processes, by label, at seconds since the load began."""

    parent: int
    times: list[float] = field(default_factory=list)
    series: dict[str, list[int | None]] = field(default_factory=dict)

    def sample(self, elapsed: float) -> None:
        pids = {"parent": self.parent}
        for pid in children(self.parent):
            if "resource_tracker" in cmdline(pid):
                continue
            pids[f"worker {pid}"] = pid
        index = len(self.times)
        self.times.append(elapsed)
        for label, pid in pids.items():
            self.series.setdefault(label, [None] * index).append(rss_kib(pid))
        for values in self.series.values():
            if len(values) <= index:
                values.append(None)

    def table(self) -> list[str]:
        labels = list(self.series)
        lines = ["     t  " + "".join(f"{label:>16}" for label in labels) + "   (RSS, MiB)"]
        for i, t in enumerate(self.times):
            cells = "".join(_mib(self.series[label][i]).rjust(16) for label in labels)
            lines.append(f"{t:6.0f}s " + cells)
        return lines


@dataclass
class Growth:
    label: str
    at_warmup: float | None
    at_end: float | None
    first_quarter: float
    last_quarter: float

    @property
    def growth(self) -> float:
        return self.last_quarter - self.first_quarter

    @property
    def growing(self) -> bool:
        """More than 2 MiB and 3% between the first and last quarter after the warm-up."""
        return self.growth > max(2.0, 0.03 * self.first_quarter)

    def describe(self) -> str:
        verdict = "still growing" if self.growing else "flat"
        return (
            f"{self.label}: {_mib_f(self.at_warmup)} MiB after warm-up, "
            f"{_mib_f(self.at_end)} MiB at the end; first/last quarter after warm-up "
            f"{self.first_quarter:.1f} / {self.last_quarter:.1f} MiB "
            f"({self.growth:+.1f} MiB): {verdict}"
        )


def growth(memory: Memory, warmup: float) -> list[Growth]:
    after = [i for i, t in enumerate(memory.times) if t >= warmup]
    results = []
    for label, values in memory.series.items():
        kept = [(i, v / MIB) for i, v in enumerate(values) if v is not None and i in after]
        if not kept:
            continue
        quarter = max(1, len(kept) // 4)
        results.append(
            Growth(
                label,
                kept[0][1],
                kept[-1][1],
                statistics.fmean(v for _, v in kept[:quarter]),
                statistics.fmean(v for _, v in kept[-quarter:]),
            )
        )
    return results


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / MIB:.1f}"


def _mib_f(mib: float | None) -> str:
    return "-" if mib is None else f"{mib:.1f}"


# -- locust ---------------------------------------------------------------------------------


@dataclass
class Row:
    method: str
    name: str
    requests: int
    failures: int
    rate: float
    p50: str
    p99: str


@dataclass
class Stats:
    rows: list[Row]
    total: Row
    failures: list[dict[str, str]]
    exceptions: list[dict[str, str]]

    @property
    def server_errors(self) -> int:
        """5xx answers among the failures."""
        return sum(
            int(f.get("Occurrences") or 0)
            for f in self.failures
            if SERVER_ERROR.search(f.get("Error", ""))
        )


def read_stats(prefix: Path) -> Stats:
    with Path(f"{prefix}_stats.csv").open() as stats_file:
        rows = [
            Row(
                r["Type"],
                r["Name"],
                int(r["Request Count"]),
                int(r["Failure Count"]),
                float(r["Requests/s"]),
                r["50%"],
                r["99%"],
            )
            for r in csv.DictReader(stats_file)
        ]
    total = next(r for r in rows if r.name == "Aggregated")
    rows = [r for r in rows if r is not total]
    return Stats(rows, total, _csv(f"{prefix}_failures.csv"), _csv(f"{prefix}_exceptions.csv"))


def _csv(path: str) -> list[dict[str, str]]:
    if not Path(path).exists():
        return []
    with Path(path).open() as rows:
        return list(csv.DictReader(rows))


def run_locust(
    base: str, env: dict[str, str], options: argparse.Namespace, work: Path, memory: Memory
) -> int:
    """Run locust headless for the soak's length, sampling memory meanwhile; its exit code."""
    locust = shutil.which("locust", path=str(Path(sys.executable).parent))
    if locust is None:
        raise SystemExit("locust is needed: .venv/bin/pip install locust")
    seconds = round(options.minutes * 60)
    args = [
        locust,
        "-f",
        str(ROOT / "loadtests" / "locustfile.py"),
        "--headless",
        "--host",
        base,
        "-u",
        str(options.users),
        "-r",
        str(options.rate),
        "-t",
        f"{seconds}s",
        "--stop-timeout",
        "10",
        "--csv",
        str(work / "locust"),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    with (work / "locust.log").open("wb") as log:
        locust_process = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        start = time.monotonic()
        deadline = start + seconds + 120
        next_sample = start
        while locust_process.poll() is None:
            now = time.monotonic()
            if now >= next_sample:
                memory.sample(now - start)
                if len(memory.times) % 6 == 1:
                    print(f"  {now - start:4.0f}s  {_latest(memory)}", flush=True)
                next_sample += SAMPLE_SECONDS
            if now > deadline:
                locust_process.kill()
                raise RuntimeError("locust did not stop in time")
            time.sleep(min(1.0, max(0.0, next_sample - time.monotonic())))
        memory.sample(time.monotonic() - start)
    return locust_process.returncode


def _latest(memory: Memory) -> str:
    return ", ".join(f"{label} {_mib(v[-1])} MiB" for label, v in memory.series.items())


# -- the run --------------------------------------------------------------------------------


@dataclass
class ServerLog:
    answered: int
    """Requests in the access log (``YUEKANG_ACCESS_LOG``, off by default, so usually none)."""
    errors: int
    """Of them, answered 5xx."""
    tracebacks: list[str]


def read_server_log(log: Path) -> ServerLog:
    """The access log's count of answers and of 5xx, and the tracebacks in the server log."""
    text = log.read_text(errors="replace")
    statuses = [match.group(1) for match in ACCESS.finditer(text)]
    tracebacks = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            block = [line]
            for following in lines[i + 1 :]:
                block.append(following)
                if following and not following.startswith((" ", "\t")):
                    break
            tracebacks.append("\n".join(block))
    return ServerLog(len(statuses), sum(s.startswith("5") for s in statuses), tracebacks)


def report(
    options: argparse.Namespace,
    stats: Stats,
    grown: list[Growth],
    server_5xx: int,
    tracebacks: int,
) -> list[str]:
    total = stats.total
    ok = total.failures == 0 and not stats.exceptions and server_5xx == 0 and tracebacks == 0
    where = machine(f"locust {version('locust')}")
    lines = [
        f"Soaked {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {where}: "
        f"{options.minutes:g} minutes ({options.warmup} s warm-up), {options.users} locust users "
        f"(spawned {options.rate}/s), resident refresh every {options.refresh_seconds:g} s, "
        f"{options.feed_rows}-row NAT batches, `yuekang serve --workers 2` on PostgreSQL.",
        "",
        f"**{total.requests:,} requests, {total.failures} failures, "
        f"{len(stats.exceptions)} locust exceptions, {server_5xx} server 5xx, "
        f"{tracebacks} tracebacks** ({'clean' if ok else 'NOT clean'}); "
        f"{total.rate:,.1f} requests per second.",
        "",
        "| Request | count | req/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
        *(
            f"| {r.method} {r.name} | {r.requests:,} | {r.rate:,.1f} | {r.p50} | {r.p99} |"
            for r in stats.rows
        ),
        "",
        "| Server process | RSS after warm-up | at the end | first → last quarter after warm-up |",
        "|---|---|---|---|",
        *(
            f"| {g.label} | {_mib_f(g.at_warmup)} MiB | {_mib_f(g.at_end)} MiB | "
            f"{g.first_quarter:.1f} → {g.last_quarter:.1f} MiB ({g.growth:+.1f}; "
            f"{'still growing' if g.growing else 'flat'}) |"
            for g in grown
        ),
    ]
    return lines


def write_block(lines: list[str]) -> None:
    text = PERFORMANCE.read_text()
    block = f"{BEGIN}\n" + "\n".join(lines) + f"\n{END}"
    if BEGIN in text and END in text:
        text = re.sub(
            re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, count=1, flags=re.S
        )
    else:
        text = text.rstrip("\n") + "\n\n## The soak — `python -m loadtests.soak`\n\n" + block + "\n"
    PERFORMANCE.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="length of the load, warm-up in")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5, help="users spawned per second")
    parser.add_argument("--warmup", type=int, default=60, help="seconds before memory is judged")
    parser.add_argument(
        "--refresh-seconds", type=float, default=60, help="YK_REFRESH_SECONDS for the residents"
    )
    parser.add_argument("--feed-rows", type=int, default=500, help="YK_FEED_ROWS per lab batch")
    parser.add_argument("--write", action="store_true", help="update docs/PERFORMANCE.md")
    options = parser.parse_args()
    if options.warmup + 4 * SAMPLE_SECONDS > options.minutes * 60:
        parser.error("--minutes must leave at least four samples (40 s) after --warmup")

    work = Path(tempfile.mkdtemp(prefix="yk-soak-"))
    server_log = work / "yuekang.log"
    with served(work, 2, server_log) as server:
        base, port, env = server.base, server.port, server.env
        gate = cli(env, work, "checkpoints", "create", "soak gate")
        lab = cli(env, work, "feeds", "clients", "create", "soak lab", "--kinds", "nat-results")
        people = work / "people.ndjson"
        residents = [(random_phone(), random_prc_id()) for _ in range(options.users)]
        enrol_many(
            Path(env["YUEKANG_PROOFING__BUILTIN_DIR"]),
            [Enrolment("张小三", number, birth, phone) for phone, (number, birth) in residents],
        )
        people.write_text(
            "".join(
                json.dumps({"phone": phone, "doc_number": number, "birth_date": birth.isoformat(),
                            "name": "张小三"}, ensure_ascii=False) + "\n"
                for phone, (number, birth) in residents
            )
        )  # fmt: skip
        load_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("YK_")},
            "YK_PEOPLE": str(people),
            "YK_CHECKPOINT_KEY": gate,
            "YK_FEED_KEY": lab,
            "YK_REFRESH_SECONDS": f"{options.refresh_seconds:g}",
            "YK_FEED_ROWS": str(options.feed_rows),
            "PYTHONPATH": str(ROOT),
        }
        memory = Memory(server_pid(port))
        time.sleep(2)  # let uvicorn's workers finish starting before the first sample
        print(
            f"soak: {options.users} users for {options.minutes:g} min against {base} "
            f"(logs in {work})",
            flush=True,
        )
        exit_code = run_locust(base, load_env, options, work, memory)

    print((work / "locust.log").read_text(errors="replace")[-6000:])
    if not Path(f"{work / 'locust'}_stats.csv").exists():
        sys.exit(f"locust wrote no statistics (exit code {exit_code}); logs kept in {work}")
    stats = read_stats(work / "locust")
    server = read_server_log(server_log)
    tracebacks = server.tracebacks
    grown = growth(memory, options.warmup)

    print("\n".join(memory.table()))
    print()
    for g in grown:
        print(g.describe())
    for failure in stats.failures:
        print(f"FAILURE {failure}")
    for exception in stats.exceptions:
        print(f"EXCEPTION {exception.get('Count')}x {exception.get('Message')}")
        print(exception.get("Traceback", ""))
    for traceback in tracebacks[:5]:
        print(f"SERVER TRACEBACK\n{traceback}")
    if len(tracebacks) > 5:
        print(f"... and {len(tracebacks) - 5} more tracebacks in {server_log}")

    server_5xx = max(stats.server_errors, server.errors)  # the same answers, seen from two sides
    lines = report(options, stats, grown, server_5xx, len(tracebacks))
    print()
    print("\n".join(lines))
    # The CSV files are written every second, so the last second's requests may be missing
    # from them; locust's exit code (1 after any failure or exception) counts them all.
    access = (
        f"the access log holds {server.answered:,} answers, {server.errors} of them 5xx"
        if server.answered
        else "the access log is off (the default): 5xx are counted from locust's failures"
    )
    print(f"\nlocust exit code {exit_code}; {access}")
    failed = bool(stats.total.failures or stats.exceptions or server_5xx or tracebacks or exit_code)
    if options.write:
        write_block(lines)
    if failed:
        print(f"soak failed; logs kept in {work}", file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
