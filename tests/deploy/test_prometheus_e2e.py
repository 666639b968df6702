"""Debian's Prometheus scraping a real ``yuekang serve``, started as the Deployment starts it,
with deploy/prometheus's scrape job and rules: the token gets the scrape through, the
relabelling finds the pods' port from the Service's annotations, the recording rules turn the
real exposition into per-route figures, a fresh production database is told it has no signing
key until one is made and nothing else is even pending, and a stopped service soon has its
alert.

Prometheus here has no Kubernetes to discover the Service's endpoints from, so the target is
given with the labels Kubernetes discovery would give it (the Service's annotations as
deploy/k8s/service.yaml sets them), and the job's own relabelling does the rest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deploy.manifests import api_container, environment, one
from support.servers import cli, free_port, serve

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
SERVICE = ROOT / "deploy" / "k8s" / "service.yaml"
TOKEN = "scrape-token-" + "p" * 40


def configuration(port: int, token_file: Path) -> dict[str, Any]:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    del job["kubernetes_sd_configs"]
    job["authorization"]["credentials_file"] = str(token_file)
    service = yaml.safe_load(SERVICE.read_text())
    annotations = {
        "__meta_kubernetes_service_annotation_" + key.replace(".", "_").replace("/", "_"): value
        for key, value in service["metadata"]["annotations"].items()
    }
    # The annotation names the pods' port; here the server listens on a free one.
    annotations["__meta_kubernetes_service_annotation_prometheus_io_port"] = str(port)
    job["static_configs"] = [
        {
            # An endpoint as discovery gives it: the pod's address with the Service's port,
            # which the relabelling must replace with the annotated one.
            "targets": ["127.0.0.1:80"],
            "labels": {
                **annotations,
                "__meta_kubernetes_service_name": service["metadata"]["name"],
                "__meta_kubernetes_namespace": "yuekang",
                "__meta_kubernetes_pod_name": "yuekang-0",
            },
        }
    ]
    return dict(config)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[int], str]]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus package is not installed (scripts/test installs it)")
    processes: list[subprocess.Popen[bytes]] = []

    def start(port: int) -> str:
        token_file = tmp_path / "metrics-token"
        token_file.write_text(TOKEN)
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump(configuration(port, token_file)))
        listen = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        processes.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{listen}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        base = f"http://127.0.0.1:{listen}"
        eventually(lambda: httpx.get(f"{base}/-/ready", timeout=1).status_code == 200, 30)
        return base

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


def eventually(check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.5)


def query(base: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"]["result"])


def alert_states(base: str) -> dict[str, str]:
    return {
        alert["metric"]["alertname"]: alert["metric"]["alertstate"]
        for alert in query(base, "ALERTS")
    }


def test_prometheus_watches_the_service_as_deployed(
    prometheus: Callable[[int], str], tmp_path: Path
) -> None:
    """The service runs with the Deployment's environment -- the ConfigMap, production, the
    Secret's keys (placeholders, a SQLite database) -- after the migration Job's command."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    metrics_dir = tmp_path / "metrics"  # the emptyDir
    metrics_dir.mkdir()
    host = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TMPDIR": str(scratch)}
    secrets = {"database-url": f"sqlite+aiosqlite:///{tmp_path / 'yuekang.db'}"}
    secrets["metrics-token"] = TOKEN
    (job,) = one("Job")["spec"]["template"]["spec"]["containers"]
    cli({**host, **environment(job, **secrets)}, tmp_path, *job["args"])
    env = {
        **host,
        **environment(api_container(), **secrets),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    assert env["YUEKANG_ENV"] == "prod"
    # One worker: uvicorn restarts a worker that does not answer its supervisor within 5 s,
    # which a second one starting on a loaded 2-core test machine can miss. The scrape, the
    # relabelling and the rules are what is tested here (tests/e2e/test_metrics_workers.py
    # has the workers' sum).
    # Up to 90 s: a production start imports everything at once, slow on a loaded machine.
    with serve(env, tmp_path, wait_seconds=90) as server:
        base = prometheus(server.port)
        # With a token set, a scrape without it gets a 404: Prometheus sends it.
        assert httpx.get(f"{server.base}/metrics", timeout=5).status_code == 404

        def scraped() -> bool:
            return [r["value"][1] for r in query(base, 'up{job="yuekang"}')] == ["1"]

        eventually(scraped, 30)
        (target,) = query(base, 'up{job="yuekang"}')
        assert target["metric"]["instance"] == f"127.0.0.1:{server.port}"
        assert target["metric"]["pod"] == "yuekang-0"

        # A route's counter exists from its first request: a rate needs Prometheus to have
        # scraped it before the rest come, or every sample holds the same total (rate 0).
        assert httpx.get(f"{server.base}/livez", timeout=5).status_code == 200
        eventually(lambda: bool(query(base, 'yuekang_http_requests_total{route="/livez"}')), 30)
        for _ in range(20):
            assert httpx.get(f"{server.base}/livez", timeout=5).status_code == 200

        def recorded() -> bool:
            rates = query(base, 'route:yuekang_http_requests:rate5m{route="/livez"}')
            return bool(rates) and float(rates[0]["value"][1]) > 0

        # The recording rules' group is evaluated every 30 s (recording.yml): two rounds.
        eventually(recorded, 75)
        (p99,) = query(base, 'route:yuekang_http_request_duration_seconds:p99_5m{route="/livez"}')
        assert 0 < float(p99["value"][1]) < 1
        assert [r["value"][1] for r in query(base, "max(yuekang_db_up)")] == ["1"]

        # Production makes no signing key by itself: a fresh deployment is told, and nothing
        # else is wrong with it.
        eventually(lambda: alert_states(base) == {"YuekangNoActiveSigningKey": "pending"}, 30)
        # The runbook's first step; the command is told not to wait the publish lead.
        keys = {**env, "YUEKANG_KEYS__PUBLISH_LEAD_SECONDS": "0"}
        kid = cli(keys, tmp_path, "keys", "generate").split()[0]
        cli(keys, tmp_path, "keys", "activate", kid)
        eventually(lambda: alert_states(base) == {}, 30)
        assert query(base, 'yuekang_signing_key_expires_in_seconds{purpose="health_code"}')

    # The service stops: its target goes down and the alert is on its way (3 minutes).
    eventually(lambda: alert_states(base) == {"YuekangTargetDown": "pending"}, 30)
