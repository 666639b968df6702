"""Optional OpenTelemetry tracing (yuekang/tracing.py): off, nothing is set up; on, issuing a code
and delivering to a partner make spans around the database, signing and the partner call, each
carrying the request id. Spans go to the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from api.test_exchange_outbound import consent, green_resident, stop_background_outbox
from conftest import TEST_SECRETS, RunningApp, make_settings
from exchange.kit import OUTBOUND, register
from support.api import Api
from yuekang import tracing
from yuekang.app import bootstrap_dev_key, create_app
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.config import ResolvedSettings, Settings
from yuekang.residents.proofing import MemoryProofing

REQUEST_ID = tracing.REQUEST_ID_ATTRIBUTE


class Traced(RunningApp):
    exporter: InMemorySpanExporter
    app: Any

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def settings(fresh_database_url: str, tmp_path: Path) -> Settings:
    # A database of its own: a delivery left pending would be another test's to send.
    return make_settings(fresh_database_url, tmp_path / "keys")


@pytest.fixture
async def traced(
    settings: Settings, clock: ManualClock, sms: MemorySmsSender
) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    registry = MemoryProofing()
    app = create_app(
        ResolvedSettings(settings, settings.secrets or TEST_SECRETS),
        clock=clock,
        sms=sms,
        proofing=registry,
        span_exporter=exporter,
    )
    async with app.router.lifespan_context(app):
        await bootstrap_dev_key(app.state.context)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            running = Traced(app.state.context, client, sms, registry)
            running.api = Api(client, registry)
            running.exporter = exporter
            running.app = app
            yield running


def _named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


async def test_issuing_a_code_is_traced_with_its_request_id(traced: Traced):
    resident = await traced.api.registered()
    traced.exporter.clear()
    issued = await traced.client.post(
        "/v1/codes", headers={**resident.auth, "Idempotency-Key": "k-" + uuid.uuid4().hex}
    )
    assert issued.status_code == 201, issued.text
    request = issued.headers["X-Request-ID"]
    spans = traced.spans()
    # FastAPI's span of the request (named by its method alone: the fast lane answers before
    # the router could name the route in it). The background loops' statements have traces of
    # their own.
    [server] = [span for span in spans if span.kind == SpanKind.SERVER]
    assert server.context is not None
    ours = [
        s for s in spans if s.context is not None and s.context.trace_id == server.context.trace_id
    ]
    [signed] = _named(ours, "yuekang.sign")
    statements = [span for span in ours if span.name.startswith("db ")]
    assert server.attributes is not None
    assert server.attributes[REQUEST_ID] == request
    assert signed.attributes is not None
    assert signed.attributes[REQUEST_ID] == request
    assert signed.attributes["alg"] == "ES256"
    assert {"db SELECT", "db INSERT"} <= {span.name for span in statements}
    assert len(ours) == len([s for s in spans if REQUEST_ID in (s.attributes or {})])
    for span in [signed, *statements]:
        assert span.attributes is not None
        assert span.attributes[REQUEST_ID] == request
    # The statement's text, never its values.
    inserted = [s for s in statements if s.name == "db INSERT"]
    assert any("health_codes" in str((s.attributes or {}).get("db.query.text")) for s in inserted)
    body = issued.json()
    assert not [s for s in spans if body["qr_text"] in str(dict(s.attributes or {}))]
    # A path names a code, a query may carry staff's words: neither is in a span.
    traced.exporter.clear()
    shown = await traced.client.get(
        f"/v1/codes/{body['code_id']}.png?size=3", headers=resident.auth
    )
    assert shown.status_code == 200
    spans = traced.spans()
    assert spans
    assert not [s for s in spans if body["code_id"] in str(dict(s.attributes or {}))]
    assert not [s for s in spans if "size=3" in str(dict(s.attributes or {}))]


async def test_a_code_issued_in_a_batch_is_signed_in_a_span_of_no_one_request(traced: Traced):
    """The issuance batch serves many requests at once: its spans name none of them."""
    resident = await traced.api.registered()
    traced.exporter.clear()
    issued = await traced.api.issue(resident)
    assert issued.status_code == 201, issued.text
    [signed] = _named(traced.spans(), "yuekang.sign")
    assert REQUEST_ID not in (signed.attributes or {})


async def test_a_delivery_to_a_partner_is_traced_with_the_queuing_request_id(traced: Traced):
    await stop_background_outbox(traced)
    await register(traced)
    resident = await green_resident(traced)
    queued = await traced.client.post(
        OUTBOUND,
        json=consent(),
        headers={**resident.auth, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert queued.status_code == 202, queued.text
    request = queued.headers["X-Request-ID"]
    traced.exporter.clear()

    def partner_down(_: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    context = traced.context
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner_down)) as http:
        outbox = context.outbox_over(http)
        # As the lifespan starts the delivery loop: with the application's tracing.
        with traced.app.traces.active():
            assert await outbox.run_once() == 1
    spans = traced.spans()
    [delivery] = _named(spans, "yuekang.outbox.deliver")
    [call] = _named(spans, "yuekang.partner.call")
    [sealed] = _named(spans, "yuekang.exchange.seal")
    assert delivery.attributes is not None
    assert delivery.attributes[REQUEST_ID] == request
    # One trace: the delivery's, with its statements, the new code's signature and the call.
    assert delivery.context is not None
    assert {span.context.trace_id for span in spans if span.context is not None} == {
        delivery.context.trace_id
    }
    assert call.attributes is not None
    assert call.attributes["partner"] == "macao"
    assert call.attributes["http.response.status_code"] == 503
    assert call.attributes[REQUEST_ID] == request
    assert sealed.attributes is not None
    assert sealed.attributes["partner"] == "macao"
    assert _named(spans, "yuekang.sign"), "the code sent to the partner is signed in a span"
    assert [span for span in spans if span.name.startswith("db ")]


async def test_off_nothing_is_set_up(running: RunningApp):
    assert tracing.span("anything") is tracing.span("anything else")  # the shared do-nothing
    with tracing.span("anything") as span:
        assert span is None
    answer = await running.client.get("/livez")
    assert answer.status_code == 200
    # Nothing was made the process's provider either.
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"


def test_off_the_sdk_is_not_even_imported(tmp_path):
    program = (
        "import sys\n"
        "from yuekang.app import create_app\n"
        "from yuekang.config import Settings, resolve\n"
        f"app = create_app(resolve(Settings(keys_dir={str(tmp_path)!r})))\n"
        "assert app.traces is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_each_exporter_the_settings_name_is_built():
    from yuekang.config import TracingSettings

    assert tracing.Tracing.build(TracingSettings()) is None
    for exporter in ("console", "otlp"):
        built = tracing.Tracing.build(
            TracingSettings(exporter=exporter, service_name="yuekang-gd-1")
        )
        assert built is not None
        assert built.provider.resource.attributes["service.name"] == "yuekang-gd-1"
        built.shutdown()
