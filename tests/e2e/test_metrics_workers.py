"""/metrics of a real ``yuekang serve --workers 2``: whichever worker answers the scrape counts
the requests both workers answered, and the directory their counts live in is serve's own."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.servers import serve, server_env

# What is tested -- workers writing one multiprocess directory, a scrape summing them -- does not
# depend on the database: on PostgreSQL, as deployed, and not again on SQLite (CI's time budget).
pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("backend", ["postgresql"])]

STARTUP = 120
"""Seconds two workers may take to start: each imports the whole service, slow on a busy
2-core machine (measured: over 20 s)."""
LIVEZ = {"route": "/livez", "method": "GET", "status": "200"}


def livez_count(base: str) -> float:
    # A new connection each time: either worker may take it.
    answer = httpx.get(f"{base}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == "yuekang_http_requests_total" and sample.labels == LIVEZ:
                return sample.value
    return 0.0


def test_a_scrape_sums_the_requests_of_both_workers(
    fresh_database_url: str, tmp_path: Path
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = server_env(fresh_database_url, tmp_path / "keys", TMPDIR=str(scratch))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with serve(env, tmp_path, command=("serve", "--workers", "2"), wait_seconds=STARTUP) as running:
        [directory] = scratch.glob("yuekang-metrics-*")  # made by serve, before the workers
        sent = 0

        def counting_workers() -> set[str]:
            return {path.stem.rsplit("_", 1)[1] for path in directory.glob("counter_*.db")}

        def get(_: int) -> int:
            return httpx.get(f"{running.base}/livez", timeout=10).status_code

        # Until both workers have answered some (the kernel hands connections to either).
        with ThreadPoolExecutor(max_workers=8) as pool:
            while len(counting_workers()) < 2 and sent < 4000:
                assert set(pool.map(get, range(100))) == {200}
                sent += 100
        assert len(counting_workers()) == 2

        # Several scrapes, so that both workers answer some of them: each sees every request.
        assert {livez_count(running.base) for _ in range(10)} == {sent}
    assert not directory.exists()  # removed when serve stopped


def test_a_given_directory_is_emptied_of_an_earlier_run(
    fresh_database_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    # What a worker of an earlier run left: its counts must not be added to this run's.
    (directory / "counter_999999.db").write_bytes(b"\0" * 16)
    env = server_env(fresh_database_url, tmp_path / "keys", PROMETHEUS_MULTIPROC_DIR=str(directory))
    with serve(env, tmp_path, command=("serve", "--workers", "2"), wait_seconds=STARTUP) as running:
        assert not (directory / "counter_999999.db").exists()
        httpx.get(f"{running.base}/livez", timeout=10)
        assert livez_count(running.base) == 1
    assert directory.exists()  # the operator's: kept
