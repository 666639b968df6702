"""Prometheus metrics: the one list of names (the alert rules and the dashboard in ``deploy/``
are written against it), the counters the domain increments, and the scrape.

Two kinds of figure:

* **Events** -- requests, codes issued, verifications, revocations, feed rows, proofing,
  database errors -- are counters and a histogram incremented where the thing happens, after
  the commit (``db.after_commit``), so that a rolled-back issuance is not counted.
* **State** -- outbox depth and age, circuits, the trust bundle, the key ring -- is read when
  Prometheus scrapes (``/metrics`` asks the database with a short budget), so it is never stale
  and costs nothing between scrapes. A database that does not answer in time gives a scrape
  with ``yuekang_db_up 0`` and without those figures, rather than no scrape.

With several uvicorn workers (``yuekang serve --workers N``) each worker writes its events to
files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, chosen when the
variable is set before prometheus_client is imported); whichever worker answers a scrape sums
them all. ``yuekang serve`` makes a private directory when it starts several workers and none is
given. prometheus_client reads the variable once, at import: this module follows the same
reading, so a process is in one mode for its lifetime.

Label values come from short closed lists (statuses, verdicts, route templates): never a path,
an id, a name or anything a person typed. The request metrics are labelled by the route's
template, ``/v1/codes/{code_id}``, or ``unmatched``.
"""

from __future__ import annotations

import collections
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
"""Where the workers' files are, when this process is one of several workers."""

if MULTIPROCESS_DIR is not None:
    from prometheus_client import values

    # prometheus_client asks the system for the pid on every increment, to notice a fork
    # (several microseconds a call on this machine: the larger part of a request's metrics).
    # The pid is kept here instead and renewed in a forked child; uvicorn's workers are spawned.
    _pid = [os.getpid()]
    os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))
    values.ValueClass = values.MultiProcessValue(process_identifier=lambda: _pid[0])  # type: ignore[no-untyped-call]

ROUTE_KEY = "yuekang.route"
"""Scope key in which a handler that answers before the router (``fastlane.DirectTable``)
leaves the template of the route it answered."""

UNMATCHED = "unmatched"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds. The p99 goals (docs/PERFORMANCE.md) fall between 5 ms and 500 ms: each has a bound
near it, so ``histogram_quantile`` is not guessing across a wide bucket."""

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Created without a registry: single-process scrapes register them in the scrape's registry;
# multiprocess scrapes read the workers' files instead.
HTTP_REQUESTS = Counter(
    "yuekang_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ("route", "method", "status"),
    registry=None,
)
HTTP_DURATION = Histogram(
    "yuekang_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template and method.",
    ("route", "method"),
    buckets=LATENCY_BUCKETS,
    registry=None,
)
CODES_ISSUED = Counter(
    "yuekang_codes_issued",
    "Health codes issued (committed), by the status they carry.",
    ("status",),
    registry=None,
)
VERIFICATIONS = Counter(
    "yuekang_verifications",
    "Codes verified: via online (POST /v1/verify), document (a document check) or upload "
    "(scans uploaded by checkpoints); verdict and the checkpoint policy's decision "
    "(none when there is no decision).",
    ("via", "verdict", "decision"),
    registry=None,
)
REVOCATIONS = Counter(
    "yuekang_revocations",
    "Health codes revoked, by reason.",
    ("reason",),
    registry=None,
)
FEED_ROWS = Counter(
    "yuekang_feed_rows",
    "Authority feed rows, by feed kind and outcome (accepted or rejected).",
    ("kind", "outcome"),
    registry=None,
)
PROOFING = Counter(
    "yuekang_proofing",
    "Identity proofing attempts, by outcome.",
    ("outcome",),
    registry=None,
)
DB_ERRORS = Counter(
    "yuekang_db_errors",
    "Requests answered with a database error: unavailable (503 database_unavailable), "
    "conflict (503 busy_retry) or unexpected (500).",
    ("kind",),
    registry=None,
)
# Each worker has its own pool: the scrape shows the sum over the living workers.
DB_POOL_IN_USE = Gauge(
    "yuekang_db_pool_in_use",
    "Database connections checked out of the pools, summed over the workers.",
    registry=None,
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "yuekang_db_pool_size",
    "Database connections the pools keep (overflow not counted), summed over the workers.",
    registry=None,
    multiprocess_mode="livesum",
)

EVENT_METRICS: tuple[Counter | Histogram | Gauge, ...] = (
    HTTP_REQUESTS,
    HTTP_DURATION,
    CODES_ISSUED,
    VERIFICATIONS,
    REVOCATIONS,
    FEED_ROWS,
    PROOFING,
    DB_ERRORS,
    DB_POOL_IN_USE,
    DB_POOL_SIZE,
)

# The figures read at scrape time (StateCollector): name -> (help, labels).
STATE_GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "yuekang_build_info": ("Always 1; the version in a label.", ("version",)),
    "yuekang_db_up": (
        "1 when this scrape read the state figures from the database in time, 0 otherwise.",
        (),
    ),
    "yuekang_outbox_depth": ("Messages waiting in the outbox, by partner.", ("partner",)),
    "yuekang_outbox_oldest_age_seconds": (
        "Age of the oldest message waiting in the outbox, by partner (0 when none waits).",
        ("partner",),
    ),
    "yuekang_partner_circuit_open": (
        "1 while the outbox has stopped sending to a partner after failures, else 0.",
        ("partner",),
    ),
    "yuekang_trust_bundle_version": ("Version of the current trust bundle.", ()),
    "yuekang_trust_bundle_age_seconds": ("Seconds since the current trust bundle was made.", ()),
    "yuekang_trust_bundle_expires_in_seconds": (
        "Seconds until the current trust bundle expires (negative once expired).",
        (),
    ),
    "yuekang_signing_key_age_seconds": (
        "Seconds since the active signing key was activated, by purpose.",
        ("purpose",),
    ),
    "yuekang_signing_key_expires_in_seconds": (
        "Seconds until the active signing key expires (the latest time to rotate), by purpose.",
        ("purpose",),
    ),
    "yuekang_db_replica_lag_seconds": (
        "Seconds a streaming replica is behind the primary, as the answering worker measured it "
        "(absent while it does not answer or is not in recovery).",
        ("replica",),
    ),
    "yuekang_db_replica_serving": (
        "1 while a streaming replica serves reads (answers, in recovery, within the lag "
        "bound), else 0.",
        ("replica",),
    ),
}

METRIC_NAMES: tuple[str, ...] = (
    "yuekang_http_requests_total",
    "yuekang_http_request_duration_seconds",
    "yuekang_codes_issued_total",
    "yuekang_verifications_total",
    "yuekang_revocations_total",
    "yuekang_feed_rows_total",
    "yuekang_proofing_total",
    "yuekang_db_errors_total",
    "yuekang_db_pool_in_use",
    "yuekang_db_pool_size",
    *STATE_GAUGES,
)
"""Every name a scrape can show (counters with their ``_total``): the list agreed with the alert
rules and the dashboard."""


@dataclass(frozen=True, slots=True)
class State:
    """What a scrape read from the database (and the key ring) for the state gauges. A field
    left None or empty is a figure the scrape could not read; it is left out of the
    exposition rather than shown as 0."""

    database_up: bool
    outbox_depth: dict[str, int] = field(default_factory=dict)
    outbox_oldest_age: dict[str, float] = field(default_factory=dict)
    circuit_open: dict[str, bool] = field(default_factory=dict)
    bundle_version: int | None = None
    bundle_age: float | None = None
    bundle_expires_in: float | None = None
    key_age: dict[str, float] = field(default_factory=dict)
    key_expires_in: dict[str, float] = field(default_factory=dict)
    replica_lag: dict[str, float] = field(default_factory=dict)
    """From the process's own checks (replicas.py), not the database: shown when it is down."""
    replica_serving: dict[str, bool] = field(default_factory=dict)


class StateCollector(Collector):
    """The state gauges of one scrape, from a :class:`State` read just before it."""

    def __init__(self, state: State, *, version: str) -> None:
        self.state = state
        self.version = version

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        state = self.state

        def family(name: str) -> GaugeMetricFamily:
            text, labels = STATE_GAUGES[name]
            return GaugeMetricFamily(name, text, labels=labels)

        info = family("yuekang_build_info")
        info.add_metric([self.version], 1)
        yield info
        up = family("yuekang_db_up")
        up.add_metric([], 1 if state.database_up else 0)
        yield up
        by_partner: list[tuple[str, dict[str, Any], Callable[[Any], float]]] = [
            ("yuekang_outbox_depth", state.outbox_depth, float),
            ("yuekang_outbox_oldest_age_seconds", state.outbox_oldest_age, float),
            ("yuekang_partner_circuit_open", state.circuit_open, lambda v: 1.0 if v else 0.0),
            ("yuekang_signing_key_age_seconds", state.key_age, float),
            ("yuekang_signing_key_expires_in_seconds", state.key_expires_in, float),
            ("yuekang_db_replica_lag_seconds", state.replica_lag, float),
            ("yuekang_db_replica_serving", state.replica_serving, lambda v: 1.0 if v else 0.0),
        ]
        for name, values, convert in by_partner:
            metric = family(name)
            for label, value in sorted(values.items()):
                metric.add_metric([label], convert(value))
            yield metric
        for name, single in (
            ("yuekang_trust_bundle_version", state.bundle_version),
            ("yuekang_trust_bundle_age_seconds", state.bundle_age),
            ("yuekang_trust_bundle_expires_in_seconds", state.bundle_expires_in),
        ):
            metric = family(name)
            if single is not None:
                metric.add_metric([], float(single))
            yield metric


def scrape_registry(state: State, *, version: str) -> CollectorRegistry:
    """A registry for one scrape: every worker's events (or this process's) and ``state``."""
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROCESS_DIR is not None:
        from prometheus_client import multiprocess

        _forget_dead_workers(Path(MULTIPROCESS_DIR))
        multiprocess.MultiProcessCollector(registry, path=MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
    else:
        for metric in EVENT_METRICS:
            registry.register(metric)
    registry.register(StateCollector(state, version=version))
    return registry


def _forget_dead_workers(directory: Path) -> None:
    """Drop the live gauges (pool use) of workers that have gone: uvicorn restarts a worker
    that died without telling anyone. Their counters stay, as Prometheus expects of counters."""
    from prometheus_client import multiprocess

    for path in directory.glob("gauge_live*_*.db"):
        pid_text = path.stem.rsplit("_", 1)[-1]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            multiprocess.mark_process_dead(int(pid_text), path=str(directory))  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare_workers(workers: int) -> Path | None:
    """Before ``workers`` uvicorn workers start (``yuekang serve``): with several, a directory
    for their files -- ``PROMETHEUS_MULTIPROC_DIR`` if given, emptied of an earlier run's files,
    else a new private one, set in the environment the workers inherit. Returns the private
    directory, for the caller to remove when the server stops; None otherwise."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        empty_directory(directory)
        return None
    if workers <= 1:
        return None
    private = Path(tempfile.mkdtemp(prefix="yuekang-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(private)
    return private


def empty_directory(directory: Path) -> None:
    """Remove an earlier run's files from a multiprocess directory: prometheus_client would
    add their counts to this run's, under pids that may have been reused."""
    for path in directory.glob("*.db"):
        path.unlink(missing_ok=True)


class HttpMetrics:
    """Counts a request and times it. Each (route, method, status) gets its label children
    once, kept here: a request then costs two dictionary lookups, an increment and an
    observation, not the label checks ``labels()`` makes every time."""

    __slots__ = ("_children", "_clock")

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._clock = clock

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = route_of(scope)
        method: str = scope["method"]
        if method not in _METHODS or status == 405:
            # A client's invented method names, or every method tried on every route (405s),
            # must not grow the table (hostile review: 9,000 series from 1,656 requests).
            method = "other"
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                HTTP_REQUESTS.labels(route, method, str(status)),
                HTTP_DURATION.labels(route, method),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class HttpMetricsMiddleware:
    """Counts and times every HTTP request, whoever answers it: a route, the fast lane
    (``fastlane.DirectTable``, which names its route in ``scope[ROUTE_KEY]``), the body-size
    limit, a 404. Outside them all, so that the time is the application's whole answer."""

    def __init__(self, app: ASGIApp, *, observer: HttpMetrics) -> None:
        self.app = app
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # What the client gets when nothing was sent: the server's 500.
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        clock = self.observer.clock
        begun = clock()
        try:
            await self.app(scope, receive, sending)
        finally:
            self.observer.observe(scope, status, clock() - begun)


def route_of(scope: Scope) -> str:
    """The template of the route that answered, or ``unmatched``: never the path itself."""
    direct = scope.get(ROUTE_KEY)
    if direct is not None:
        return str(direct)
    # FastAPI's route as included (the prefixes of every router it was included through), when
    # it left one; else the route Starlette matched; else a mount (the pages' files).
    fastapi_scope = scope.get("fastapi")
    included = fastapi_scope.get("effective_route_context") if fastapi_scope else None
    template = getattr(included, "path_format", None)
    if template:
        return str(template)
    route = scope.get("route")
    if route is not None:
        template = getattr(route, "path_format", None)
        return str(template) if template else UNMATCHED
    if scope.get("endpoint") is not None and scope.get("root_path"):
        return f"{scope['root_path']}/{{path}}"
    return UNMATCHED


class Children:
    """A labelled metric's children, each made once: ``labels()`` checks and joins its label
    values on every call, which a counter on a hot path need not pay again."""

    __slots__ = ("_made", "_metric")

    def __init__(self, metric: Counter) -> None:
        self._metric = metric
        self._made: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._made.get(labels)
        if child is None:
            child = self._made[labels] = self._metric.labels(*labels)
        return child


codes_issued = Children(CODES_ISSUED)
verifications = Children(VERIFICATIONS)
revocations = Children(REVOCATIONS)
feed_rows = Children(FEED_ROWS)
proofing = Children(PROOFING)
db_errors = Children(DB_ERRORS)


def verified(via: str, verdict: str, decision: str | None) -> None:
    verifications(via, verdict, decision or "none").inc()


def uploaded(scans: Iterable[tuple[str, str | None]]) -> None:
    """Counts a checkpoint's uploaded scans, each (verdict, decision) once."""
    for (verdict, decision), n in collections.Counter(scans).items():
        verifications("upload", verdict, decision or "none").inc(n)


def watch_pool(engine: AsyncEngine) -> None:
    """Keep the pool gauges of ``engine`` (this worker's share of the sum)."""
    pool = engine.sync_engine.pool
    size = getattr(pool, "size", None)
    DB_POOL_SIZE.set(size() if callable(size) else 1)
    event.listen(pool, "checkout", _checked_out)
    event.listen(pool, "checkin", _checked_in)


def _checked_out(*_: Any) -> None:
    DB_POOL_IN_USE.inc()


def _checked_in(*_: Any) -> None:
    DB_POOL_IN_USE.dec()


def events() -> Iterator[tuple[str, dict[str, str], float]]:
    """This process's event samples (tests): name, labels, value."""
    for metric in EVENT_METRICS:
        for family in metric.collect():
            for sample in family.samples:
                yield sample.name, dict(sample.labels), sample.value
