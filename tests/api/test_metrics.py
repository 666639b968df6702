"""/metrics as Prometheus and an operator see it: the counts of a real flow by label, route
templates rather than paths, and a scrape refused to anyone it is not meant for."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from conftest import RunningApp, make_settings, start_app
from feeds.feedkit import case, ndjson, post, today
from support.api import random_prc_id
from yuekang import metrics, scrape
from yuekang.clock import ManualClock
from yuekang.config import MetricsSettings, Settings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

AGREED = (
    # The names the alert rules and the dashboard in deploy/ are written against: a name
    # changed here breaks them.
    "yuekang_http_requests_total",
    "yuekang_http_request_duration_seconds",
    "yuekang_codes_issued_total",
    "yuekang_verifications_total",
    "yuekang_revocations_total",
    "yuekang_feed_rows_total",
    "yuekang_outbox_depth",
    "yuekang_outbox_oldest_age_seconds",
    "yuekang_partner_circuit_open",
    "yuekang_trust_bundle_version",
    "yuekang_trust_bundle_age_seconds",
    "yuekang_trust_bundle_expires_in_seconds",
    "yuekang_signing_key_age_seconds",
    "yuekang_signing_key_expires_in_seconds",
    "yuekang_db_pool_in_use",
    "yuekang_db_pool_size",
    "yuekang_db_errors_total",
    "yuekang_proofing_total",
    "yuekang_build_info",
)
TOKEN = "metrics-token-" + "x" * 32


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def parsed(text: str) -> Samples:
    """Every sample of an exposition, as prometheus_client's own parser reads it."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scraped(client: httpx.AsyncClient, **headers: str) -> Samples:
    answer = await client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parsed(answer.text)


def grown(before: Samples, after: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """How much each labelled sample of ``name`` grew between two scrapes (this process's
    counters are shared by every test that ran before)."""
    return {
        labels: value - before.get((sample, labels), 0.0)
        for (sample, labels), value in after.items()
        if sample == name and value != before.get((sample, labels), 0.0)
    }


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


async def test_a_flow_is_counted_once_by_its_labels(running: RunningApp) -> None:
    client, api = running.client, running.api
    before = await scraped(client)

    resident = await api.registered()  # sign-in, bind: one proofing
    code = await api.code(resident)  # issued green
    key = {"Idempotency-Key": uuid.uuid4().hex}
    for _ in range(2):  # another code, and its replay: counted once
        again = await api.issue(resident, **key)
        assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    gate = await running.checkpoint_key()
    verdict = await client.post(
        "/v1/verify", headers=bearer(gate), json={"qr_text": code["qr_text"]}
    )
    assert verdict.json()["decision"] == "allow"
    image = await client.get(f"/v1/codes/{code['code_id']}.png", headers=resident.auth)
    assert image.status_code == 200
    scan = {
        "scan_id": uuid.uuid4().hex,
        "code_id": code["code_id"],
        "scanned_at": running.context.clock.now().isoformat(),
        "verdict": "valid",
        "decision": "allow",
    }
    for _ in range(2):  # an upload repeated stores (and counts) its scan once
        uploaded = await client.post("/v1/scans", headers=bearer(gate), json={"scans": [scan]})
        assert uploaded.status_code == 200, uploaded.text
    # A close contact (the resident's code is revoked as the status worsens) and a bad row.
    feed = await running.feed_key("cases")
    batch = ndjson(case(resident, today(running).isoformat()), {"doc_type": "prc_id"})
    pushed = await post(running, feed, "cases", batch, idempotency_key=uuid.uuid4().hex)
    assert pushed.status_code == 201, pushed.text
    assert (pushed.json()["rows_accepted"], pushed.json()["rows_rejected"]) == (1, 1)
    await client.get(f"/nothing/{code['code_id']}")

    answer = await client.get("/metrics")
    after = parsed(answer.text)

    assert grown(before, after, "yuekang_proofing_total") == {labels(outcome="verified"): 1}
    assert grown(before, after, "yuekang_codes_issued_total") == {labels(status="green"): 2}
    assert grown(before, after, "yuekang_verifications_total") == {
        labels(via="online", verdict="valid", decision="allow"): 1,
        labels(via="upload", verdict="valid", decision="allow"): 1,
    }
    assert grown(before, after, "yuekang_feed_rows_total") == {
        labels(kind="cases", outcome="accepted"): 1,
        labels(kind="cases", outcome="rejected"): 1,
    }
    # Both of the resident's live codes.
    assert grown(before, after, "yuekang_revocations_total") == {
        labels(reason="status_worsened"): 2
    }
    requests = grown(before, after, "yuekang_http_requests_total")
    # The fast lane's answers (verify, the image) are counted with the routes' templates.
    assert requests[labels(route="/v1/verify", method="POST", status="200")] == 1
    assert requests[labels(route="/v1/codes", method="POST", status="201")] == 3
    assert requests[labels(route="/v1/codes/{code_id}.png", method="GET", status="200")] == 1
    assert requests[labels(route="/v1/scans", method="POST", status="200")] == 2
    assert requests[labels(route="/v1/feeds/{kind}", method="POST", status="201")] == 1
    assert requests[labels(route="unmatched", method="GET", status="404")] == 1
    observed = grown(before, after, "yuekang_http_request_duration_seconds_count")
    assert observed[labels(route="/v1/verify", method="POST")] == 1
    # No path, and so no code id, is ever a label.
    assert code["code_id"] not in answer.text
    assert "/nothing" not in answer.text


async def test_the_state_is_read_at_scrape_time(running: RunningApp) -> None:
    samples = await scraped(running.client)

    assert samples[("yuekang_db_up", frozenset())] == 1
    assert samples[("yuekang_build_info", labels(version=_version()))] == 1
    # The development key made at start-up signs: its age and the time left to rotate it.
    expires_in = samples[("yuekang_signing_key_expires_in_seconds", labels(purpose="health_code"))]
    validity = running.context.settings.keys.validity_days * 86400
    assert 0 < expires_in <= validity
    assert samples[("yuekang_signing_key_age_seconds", labels(purpose="health_code"))] >= 0
    assert samples[("yuekang_db_pool_size", frozenset())] >= 1


async def test_a_database_that_does_not_answer_still_gives_a_scrape_that_says_so(
    running: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(*_: Any) -> None:
        raise ConnectionRefusedError("the database is down")

    monkeypatch.setattr(scrape, "read_state", unreachable)
    samples = await scraped(running.client)

    assert samples[("yuekang_db_up", frozenset())] == 0
    assert not any(name == "yuekang_trust_bundle_version" for name, _ in samples)
    assert any(name == "yuekang_http_requests_total" for name, _ in samples)


async def test_every_agreed_name_is_in_the_exposition(running: RunningApp) -> None:
    answer = await running.client.get("/metrics")
    declared = {line.split()[2] for line in answer.text.splitlines() if line.startswith("# TYPE ")}

    assert sorted(set(AGREED) - declared) == []


@pytest.fixture
async def with_token(
    settings: Settings, clock: ManualClock, sms: Any, request: pytest.FixtureRequest
) -> AsyncIterator[RunningApp]:
    address, token = request.param
    configured = settings.model_copy(
        update={
            "metrics": MetricsSettings(token=None if token is None else SecretStr(token)),
        }
    )
    async for running_app in start_app(configured, clock, sms, client_address=address):
        yield running_app


@pytest.mark.parametrize("with_token", [("10.1.2.3", None)], indirect=True)
async def test_without_a_token_another_machine_gets_the_404_of_a_missing_path(
    with_token: RunningApp,
) -> None:
    refused = await with_token.client.get("/metrics")
    missing = await with_token.client.get("/no-such-path")

    assert refused.status_code == 404
    assert refused.json() == missing.json()
    # Nor does another method or a trailing slash tell the path exists (a 405, a redirect).
    for method, path in [("POST", "/metrics"), ("HEAD", "/metrics"), ("GET", "/metrics/")]:
        other = await with_token.client.request(method, path)
        assert other.status_code == 404, (method, path)
        assert method == "HEAD" or other.json() == missing.json()


async def test_a_local_client_through_a_proxy_is_refused(running: RunningApp) -> None:
    forwarded = await running.client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})

    assert forwarded.status_code == 404


@pytest.mark.parametrize("with_token", [("10.1.2.3", TOKEN), ("127.0.0.1", TOKEN)], indirect=True)
async def test_with_a_token_only_its_bearer_may_scrape(with_token: RunningApp) -> None:
    client = with_token.client

    assert (await client.get("/metrics")).status_code == 404
    assert (await client.get("/metrics", headers=bearer(TOKEN[:-1] + "y"))).status_code == 404
    assert (await client.get("/metrics", headers=bearer(TOKEN))).status_code == 200


async def test_the_path_is_not_in_the_api_document(running: RunningApp) -> None:
    document = (await running.client.get("/openapi.json")).json()

    assert "/metrics" not in document["paths"]


async def test_metrics_off_count_nothing_and_answer_404(
    settings: Settings, clock: ManualClock, sms: Any
) -> None:
    off = settings.model_copy(update={"metrics": MetricsSettings(enabled=False)})
    async for running_app in start_app(off, clock, sms):
        before = list(metrics.events())
        assert (await running_app.client.get("/metrics")).status_code == 404
        assert (await running_app.client.get("/livez")).status_code == 200
        assert list(metrics.events()) == before


def test_a_short_token_is_refused_by_the_settings(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r"METRICS__TOKEN|metrics\.token"):
        make_settings("sqlite+aiosqlite://", tmp_path, metrics={"token": "short"})


def _version() -> str:
    from yuekang import __version__

    return __version__


async def test_an_invented_method_is_counted_as_other(running: RunningApp) -> None:
    before = await scraped(running.client)
    for name in ("BREW", "WHEN"):
        await running.client.request(name, "/livez")
    after = await scraped(running.client)

    methods = {
        dict(labels)["method"] for labels in grown(before, after, "yuekang_http_requests_total")
    }
    assert methods == {"other", "GET"}  # GET: the first scrape


async def test_every_method_on_every_route_grows_no_series(running: RunningApp) -> None:
    """405s are counted under method "other": trying every method on every route made a
    histogram per route and method (hostile review)."""
    before = await scraped(running.client)
    for method in ("PUT", "PATCH", "DELETE"):
        assert (await running.client.request(method, "/livez")).status_code == 405
    after = await scraped(running.client)

    grown_methods = {
        dict(labels)["method"]
        for labels in grown(before, after, "yuekang_http_requests_total")
        if dict(labels)["route"] == "/livez"
    }
    assert grown_methods == {"other"}


async def test_document_checks_are_counted_by_verdict_and_decision(running: RunningApp) -> None:
    gate = await running.checkpoint_key()
    resident = await running.api.registered()
    assert resident.doc_number is not None
    before = await scraped(running.client)
    for number in (resident.doc_number, random_prc_id()[0]):  # bound; nobody's
        checked = await running.client.post(
            "/v1/verify/document",
            headers=bearer(gate),
            json={"doc_type": "prc_id", "doc_number": number},
        )
        assert checked.status_code == 200, checked.text
    after = await scraped(running.client)

    assert grown(before, after, "yuekang_verifications_total") == {
        labels(via="document", verdict="valid", decision="allow"): 1,
        labels(via="document", verdict="invalid", decision="deny"): 1,
    }
