"""The Prometheus rules and the Grafana dashboard in deploy/, held to the service they watch.

``promtool`` (Debian's ``prometheus`` package) checks the rules and runs their unit tests
(deploy/prometheus/tests), which feed series and assert which alerts fire and which stay
silent. Every PromQL expression of the rules and of the dashboard is parsed (``promql-parser``)
and may name only what a real scrape of the app shows (a histogram by its ``_bucket``,
``_sum`` and ``_count``), what a recording rule records, or Prometheus's own ``up``; its label
matchers only labels those metrics carry, and its routes only real route templates.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import make_settings, start_app
from yuekang import metrics
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.db import migrate

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "yuekang.json"
RUNBOOK = ROOT / "docs" / "OPERATIONS.md"
SEVERITIES = {"critical", "warning"}
TARGET_LABELS = {"job", "instance", "pod", "namespace"}
"""Labels Prometheus adds to every scraped series (deploy/prometheus/prometheus.yml)."""

# Grafana's variables, as a panel's query sends them.
GRAFANA_VARIABLES = {"$__rate_interval": "2m", "$__interval": "30s", "$__range": "6h"}


def rules(name: str) -> list[dict[str, Any]]:
    document = yaml.safe_load((PROMETHEUS / name).read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return rules("alerts.yml")


def dashboard() -> dict[str, Any]:
    import json

    return dict(json.loads(DASHBOARD.read_text()))


def panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions() -> Iterator[tuple[str, str]]:
    """Every PromQL expression in deploy/, with where it comes from."""
    for name in ("recording.yml", "alerts.yml"):
        for rule in rules(name):
            yield f"{name}:{rule.get('alert') or rule['record']}", rule["expr"]
    for panel in panels():
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            yield f"yuekang.json:{panel['title']}", expr


def selectors(expr: str) -> list[tuple[str, dict[str, str]]]:
    """The series an expression reads: metric name and its equality/regex matchers."""
    found: list[tuple[str, dict[str, str]]] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = {m.name: m.value for m in node.matchers.matchers}
            found.append((node.name or matchers.pop("__name__", ""), matchers))
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool not installed: Debian's prometheus package (scripts/test installs it)"
        )
    return path


# -- promtool -------------------------------------------------------------------------------


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", PROMETHEUS / "recording.yml", PROMETHEUS / "alerts.yml"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_fire_as_their_unit_tests_say() -> None:
    files = sorted((PROMETHEUS / "tests").glob("*.yml"))
    result = subprocess.run(
        [promtool(), "test", "rules", *files], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files)


def test_promtool_fails_an_alert_that_does_not_fire_as_expected(tmp_path: Path) -> None:
    """The unit tests can fail: the same input with a threshold an operator would notice is
    wrong (a 5xx share of 10% called silent) is refused."""
    case = yaml.safe_load((PROMETHEUS / "tests" / "availability_test.yml").read_text())
    case["rule_files"] = [str(PROMETHEUS / "recording.yml"), str(PROMETHEUS / "alerts.yml")]
    for test in case["tests"]:
        for check in test.get("alert_rule_test", []):
            if check["alertname"] == "YuekangHighErrorRatio":
                check["exp_alerts"] = []
    path = tmp_path / "wrong_test.yml"
    path.write_text(yaml.safe_dump(case))

    result = subprocess.run(
        [promtool(), "test", "rules", path], capture_output=True, text=True, check=False
    )

    assert result.returncode != 0
    assert "YuekangHighErrorRatio" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for check in test.get("alert_rule_test", []):
                (firing if check["exp_alerts"] else silent).add(check["alertname"])
    names = {alert["alert"] for alert in alerts()}

    assert sorted(names - firing) == []
    assert sorted(names - silent) == []


def test_the_scrape_configuration_is_valid_prometheus(tmp_path: Path) -> None:
    """Debian's Prometheus is built without Kubernetes service discovery, so its promtool
    refuses ``kubernetes_sd_configs``: that block is swapped for a static target and the rest
    (authorization, relabelling, rule files) is checked as written."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "yuekang"  # the rules select job="yuekang"
    assert job["kubernetes_sd_configs"][0]["role"] == "endpoints"
    job["static_configs"] = [{"targets": ["127.0.0.1:8000"]}]
    del job["kubernetes_sd_configs"]
    token = tmp_path / "metrics-token"
    token.write_text("t" * 40)
    job["authorization"]["credentials_file"] = str(token)
    config["rule_files"] = [str(PROMETHEUS / name) for name in config["rule_files"]]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))

    result = subprocess.run(
        [promtool(), "check", "config", path], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


# -- what an on-call engineer reads ---------------------------------------------------------


def test_every_alert_has_a_severity_a_summary_and_its_runbook_section() -> None:
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        assert alert["annotations"]["summary"], name
        assert alert["annotations"]["description"], name
        assert alert["annotations"]["runbook_url"] == f"docs/OPERATIONS.md#alert-{name.lower()}"
        assert dt.timedelta(0) < _duration(alert.get("for", "0s")) <= dt.timedelta(hours=1), name


def _duration(text: str) -> dt.timedelta:
    units = {"s": "seconds", "m": "minutes", "h": "hours"}
    match = re.fullmatch(r"(\d+)([smh])", text)
    assert match is not None, text
    return dt.timedelta(**{units[match.group(2)]: int(match.group(1))})


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_runbook_has_a_section_for_every_alert() -> None:
    if not RUNBOOK.exists():
        pytest.skip("docs/OPERATIONS.md is not written yet")
    anchors = {
        _slug(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines() if line.startswith("#")
    }
    anchors |= set(re.findall(r'<a (?:id|name)="([^"]+)"', RUNBOOK.read_text()))
    wanted = {alert["annotations"]["runbook_url"].split("#")[1] for alert in alerts()}

    assert sorted(wanted - anchors) == []


# -- the names against a real scrape --------------------------------------------------------


@pytest.fixture(scope="module")
def scraped_database(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp("scraped")
    url = f"sqlite+aiosqlite:///{tmp / 'yuekang.db'}"
    migrate(url)  # runs its own event loop: outside the async fixture below
    return url, tmp


@pytest.fixture(scope="module")
async def exposition(scraped_database: tuple[str, Path]) -> AsyncIterator[str]:
    """A real app's /metrics, on its own SQLite database, after a request or two."""
    url, tmp = scraped_database
    clock = ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    async for running in start_app(make_settings(url, tmp / "keys"), clock, MemorySmsSender()):
        assert (await running.client.get("/livez")).status_code == 200
        assert (await running.client.get("/nothing-here")).status_code == 404
        answer = await running.client.get("/metrics")
        assert answer.status_code == 200, answer.text
        yield answer.text


def exposed(text: str) -> dict[str, str]:
    """Each series name a scrape can hold, with the family it belongs to. A family that has
    no sample yet (a counter nothing has counted) is named by its ``# TYPE``."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        for suffix in suffixes.get(family.type, ("",)):
            names[family.name + suffix] = family.name
        for sample in family.samples:
            names[sample.name] = family.name
    return names


def labels_of(family: str) -> set[str]:
    """The labels a family carries, from its definition in yuekang.metrics."""
    for metric in metrics.EVENT_METRICS:
        if metric._name == family:
            labelled = set(metric._labelnames)
            return labelled | ({"le"} if isinstance(metric, metrics.Histogram) else set())
    return set(metrics.STATE_GAUGES[family][1])


def recorded() -> dict[str, set[str]]:
    """Recording rules' names, with the labels they keep (their ``by`` lists)."""
    kept = {}
    for rule in rules("recording.yml"):
        by = re.search(r"by \(([^)]*)\)", rule["expr"])
        assert by is not None, rule["record"]
        kept[rule["record"]] = {label.strip() for label in by.group(1).split(",")} - {"le"}
    return kept


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    from yuekang.app import create_app
    from yuekang.config import Settings

    app = create_app(Settings(keys_dir=tmp_path_factory.mktemp("keys")))
    return set(app.openapi()["paths"]) | {metrics.UNMATCHED}


def test_every_expression_reads_only_what_the_service_exposes(
    exposition: str, routes: set[str]
) -> None:
    names = exposed(exposition)
    records = recorded()
    problems = []
    count = 0
    for where, expr in expressions():
        for name, matchers in selectors(expr):
            count += 1
            if name == "up":
                allowed = set(TARGET_LABELS)
            elif name in records:
                allowed = records[name]
            elif name in names:
                allowed = labels_of(names[name]) | TARGET_LABELS
            else:
                problems.append(f"{where}: {name} is not in the exposition")
                continue
            problems += [
                f"{where}: {name} has no label {label}" for label in matchers.keys() - allowed
            ]
            route = matchers.get("route")
            if route is not None and route not in routes:
                problems.append(f"{where}: {route} is not a route of the app")

    assert problems == []
    assert count > 40  # the walk found the selectors: the check above is not vacuous


def test_a_misspelt_metric_would_be_caught(exposition: str) -> None:
    names = exposed(exposition)

    assert "yuekang_http_request_duration_seconds_bucket" in names
    assert "yuekang_codes_issued_total" in names
    assert "yuekang_http_request_duration_seconds" not in names  # a histogram by its series
    assert [n for n, _ in selectors("rate(yuekang_code_issued_total[5m])") if n in names] == []


def test_the_dashboard_shows_every_figure_the_service_exposes(exposition: str) -> None:
    families = set(exposed(exposition).values())
    records = recorded()
    shown = set()
    for panel in panels():
        for target in panel.get("targets", []):
            for name, _ in selectors(target["expr"].replace("$__rate_interval", "2m")):
                shown.add(name)
                if name in records:
                    # A recorded series shows what its rule reads.
                    rule = next(r for r in rules("recording.yml") if r["record"] == name)
                    shown |= {n for n, _ in selectors(rule["expr"])}
    shown_families = {exposed(exposition).get(name) for name in shown}

    # prometheus_client's *_created series (when a counter started) are not figures to show.
    figures = {f for f in families if f.startswith("yuekang_") and not f.endswith("_created")}
    assert sorted(figures - shown_families) == []
    assert len(figures) >= 19


def test_the_dashboard_is_one_grafana_dashboard_on_a_chosen_prometheus() -> None:
    board = dashboard()
    ids = [panel["id"] for panel in panels()]
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}

    assert board["uid"] == "yuekang"
    assert len(ids) == len(set(ids))
    assert variables["datasource"]["type"] == "datasource"
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), panel["title"]
    # Laid out as it will show: inside the 24-column grid, no panel over another.
    boxes = [(panel["title"], panel["gridPos"]) for panel in panels()]
    for title, box in boxes:
        assert box["x"] + box["w"] <= 24, title
    overlapping = [
        (a, b)
        for i, (a, p) in enumerate(boxes)
        for b, q in boxes[i + 1 :]
        if p["x"] < q["x"] + q["w"]
        and q["x"] < p["x"] + p["w"]
        and p["y"] < q["y"] + q["h"]
        and q["y"] < p["y"] + p["h"]
    ]
    assert overlapping == []


# -- thresholds against the service's defaults ---------------------------------------------


def threshold(name: str) -> float:
    """The constant an alert compares its figure with (the first comparison of its expr)."""
    (alert,) = [a for a in alerts() if a["alert"] == name]
    node = promql_parser.parse(alert["expr"])
    while str(node.op) in ("and", "or", "unless"):
        node = node.lhs
    return constant(node.rhs)


def constant(node: Any) -> float:
    if isinstance(node, promql_parser.NumberLiteral):
        return float(node.val)
    if isinstance(node, promql_parser.ParenExpr):
        return constant(node.expr)
    operations = {"*": float.__mul__, "/": float.__truediv__, "+": float.__add__}
    assert isinstance(node, promql_parser.BinaryExpr), node
    return operations[str(node.op)](constant(node.lhs), constant(node.rhs))


def test_the_thresholds_sit_where_the_defaults_put_normal_operation() -> None:
    """An alert whose threshold normal operation crosses pages every night; one past where
    the service gives up never fires. Each is held against the setting it assumes."""
    from yuekang.config import ExchangeSettings, KeySettings, TrustSettings

    trust = TrustSettings()
    # A bundle is re-signed at half its life: a healthy one never has less left than that.
    assert threshold("YuekangTrustBundleExpiringSoon") < trust.bundle_lifetime_seconds / 2
    assert threshold("YuekangTrustBundleExpired") == 0
    validity = KeySettings().validity_days * 86400
    assert (
        threshold("YuekangSigningKeyExpiringSoon")
        < threshold("YuekangSigningKeyRotationOverdue")
        < validity
    )
    exchange = ExchangeSettings()
    # Stale well after a retry or an open circuit would have delivered, well before the
    # message fails for good.
    stale = threshold("YuekangOutboxStale")
    assert exchange.backoff_max_seconds + exchange.circuit_open_seconds < stale
    assert stale < exchange.max_age_seconds / 10
    # Each latency goal is a bucket bound, so the p99 is not interpolated across a goal.
    for name in ("YuekangVerifyLatencyHigh", "YuekangIssueLatencyHigh", "YuekangStatusLatencyHigh"):
        assert threshold(name) in metrics.LATENCY_BUCKETS, name
    assert threshold("YuekangVerifyLatencyHigh") == 0.025  # docs/PERFORMANCE.md's goals
    assert threshold("YuekangIssueLatencyHigh") == 0.05
