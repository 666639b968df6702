"""``HttpProofing``, the YKP1 client: against the reference registry (over ASGI), and against
small fake registries that fail in the ways a network and a registry do."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from yuekang.codec import proofing as wire
from yuekang.codec.proofing import Person
from yuekang.residents.proofing import HttpProofing, ProofingUnavailable
from yuekang_reference.registry import RegistrySettings, create_app

SECRET = b"test-registry-client-secret-0123456789"
URL = "http://registry.test"
ZHANG = Person("张小三", "prc_id", "11010519491231002X", dt.date(1949, 12, 31))
ZHANG_PHONE = "+8613800138000"
LI_PHONE = "+8613700137000"

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The reference registry with the sample people, on the system clock (the client dates its
    requests by it)."""
    settings = RegistrySettings(
        data_dir=tmp_path / "registry", client_secret=SECRET.decode(), admin_token="a" * 16
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client,
    ):
        await app.state.store.seed_samples()
        yield client


def over(client: httpx.AsyncClient, **options: Any) -> HttpProofing:
    return HttpProofing(client=client, url=URL, client_id="yk-gd", secret=SECRET, **options)


@pytest.mark.parametrize(
    ("person", "phone", "identity", "phone_answer"),
    [
        (ZHANG, ZHANG_PHONE, True, "match"),
        (Person("张小四", ZHANG.doc_type, ZHANG.doc_number, ZHANG.birth_date), None, False,
         "not_requested"),
        (Person(ZHANG.name, ZHANG.doc_type, ZHANG.doc_number, dt.date(1950, 1, 1)), None, False,
         "not_requested"),
        (ZHANG, LI_PHONE, True, "no_match"),
        (ZHANG, "+85366123456", True, "unsupported"),
    ],
)  # fmt: skip
async def test_answers_from_the_reference_registry(
    registry: httpx.AsyncClient,
    person: Person,
    phone: str | None,
    identity: bool,
    phone_answer: str,
) -> None:
    result = await over(registry).check(person=person, phone=phone, purpose="bind")
    assert (result.identity_matches, result.phone) == (identity, phone_answer)
    assert result.phone_matches is (phone_answer == "match")


async def test_a_wrong_secret_is_no_answer(registry: httpx.AsyncClient) -> None:
    proofing = HttpProofing(
        client=registry, url=URL, client_id="yk-gd", secret=b"x" * 40, backoff=0.01
    )
    with pytest.raises(ProofingUnavailable, match="401"):
        await proofing.check(person=ZHANG, phone=None, purpose="bind")


# --- fake registries --------------------------------------------------------------------------


class FakeRegistry:
    """Answers what ``script`` says, one entry per request (the last one repeats); ``"answer"``
    is a correct, signed match. Counts requests."""

    def __init__(self, *script: str | Handler, secret: bytes = SECRET) -> None:
        self.script = list(script)
        self.secret = secret
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script[min(len(self.requests), len(self.script)) - 1]
        if callable(step):
            return await step(request)
        if step == "answer":
            return self.answer(request)
        if step == "connect-error":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(int(step), content=wire.error_body("x", "scripted"))

    def answer(
        self,
        request: httpx.Request,
        *,
        check_id: str | None = None,
        nonce: str | None = None,
        secret: bytes | None = None,
        signed: bool = True,
    ) -> httpx.Response:
        checked = wire.parse_check_request(request.content)
        body = wire.CheckAnswer(
            check_id or checked.check_id, "match", "not_requested", int(time.time())
        ).to_json()
        headers = {}
        if signed:
            headers[wire.SIGNATURE_HEADER] = wire.response_signature(
                secret or self.secret,
                status=200,
                nonce=nonce or request.headers[wire.NONCE_HEADER],
                body=body,
            )
        return httpx.Response(200, content=body, headers=headers)

    def proofing(self, **options: Any) -> HttpProofing:
        client = httpx.AsyncClient(transport=httpx.MockTransport(self))
        return HttpProofing(client=client, url=URL, client_id="yk-gd", secret=SECRET, **options)


async def check(proofing: HttpProofing) -> bool:
    try:
        result = await proofing.check(person=ZHANG, phone=None, purpose="bind")
    finally:
        await proofing.client.aclose()
    return result.identity_matches


async def test_retries_a_503_then_answers() -> None:
    fake = FakeRegistry("503", "connect-error", "answer")
    assert await check(fake.proofing(backoff=0.01))
    assert len(fake.requests) == 3
    # Each attempt is a new request: its own nonce, the same check.
    nonces = {r.headers[wire.NONCE_HEADER] for r in fake.requests}
    assert len(nonces) == 3
    assert len({json.loads(r.content)["check_id"] for r in fake.requests}) == 1


async def test_gives_up_after_the_attempts() -> None:
    fake = FakeRegistry("503")
    with pytest.raises(ProofingUnavailable, match="503"):
        await check(fake.proofing(attempts=3, backoff=0.01))
    assert len(fake.requests) == 3


async def test_a_retry_after_past_the_budget_ends_the_call() -> None:
    async def busy(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "30"})

    fake = FakeRegistry(busy)
    started = time.monotonic()
    with pytest.raises(ProofingUnavailable, match="429"):
        await check(fake.proofing(budget=2.0, backoff=0.01))
    assert len(fake.requests) == 1
    assert time.monotonic() - started < 1


async def test_a_slow_registry_is_cut_off_within_the_budget() -> None:
    async def times_out(request: httpx.Request) -> httpx.Response:
        # As a real transport does: nothing comes back within the read timeout.
        await asyncio.sleep(request.extensions["timeout"]["read"])
        raise httpx.ReadTimeout("no answer", request=request)

    fake = FakeRegistry(times_out)
    budget = 1.0
    started = time.monotonic()
    with pytest.raises(ProofingUnavailable, match=r"ReadTimeout|did not answer in time"):
        await check(fake.proofing(timeout=0.4, attempts=10, budget=budget, backoff=0.01))
    elapsed = time.monotonic() - started
    assert elapsed < budget + 2
    assert 2 <= len(fake.requests) <= 3
    # The last attempt only had what was left of the budget.
    assert fake.requests[-1].extensions["timeout"]["read"] < 0.4


async def test_a_registry_that_never_answers_is_cut_off_within_the_budget() -> None:
    async def hangs(_request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(60)
        raise AssertionError("unreachable")

    fake = FakeRegistry(hangs)
    budget = 1.0
    async with asyncio.timeout(budget + 2):
        with pytest.raises(ProofingUnavailable):
            await check(fake.proofing(timeout=0.4, budget=budget, backoff=0.01))


async def test_a_refusal_is_not_retried() -> None:
    fake = FakeRegistry("401", "answer")
    with pytest.raises(ProofingUnavailable, match="401"):
        await check(fake.proofing(backoff=0.01))
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"signed": False}, id="unsigned"),
        pytest.param({"secret": b"y" * 40}, id="another-secret"),
        pytest.param({"nonce": "another-nonce-0123456789"}, id="another-request"),
        pytest.param({"check_id": "00000000-0000-4000-8000-000000000000"}, id="another-check"),
    ],
)
async def test_an_answer_that_does_not_verify_is_no_answer(answer: dict[str, Any]) -> None:
    fake = FakeRegistry("answer")

    async def wrong(request: httpx.Request) -> httpx.Response:
        return fake.answer(request, **answer)

    fake.script = [wrong, "answer"]
    with pytest.raises(ProofingUnavailable):
        await check(fake.proofing(backoff=0.01))
    assert len(fake.requests) == 1


async def test_requests_are_signed_as_ykp1_says() -> None:
    fake = FakeRegistry("answer")
    assert await check(fake.proofing())
    (request,) = fake.requests
    assert request.url == URL + wire.PATH
    client, date, nonce = wire.check_headers(
        client=request.headers[wire.CLIENT_HEADER],
        date=request.headers[wire.DATE_HEADER],
        nonce=request.headers[wire.NONCE_HEADER],
        now=int(time.time()),
    )
    expected = wire.request_signature(
        SECRET, method="POST", path=wire.PATH, client=client, date=date, nonce=nonce,
        body=request.content,
    )  # fmt: skip
    assert request.headers[wire.SIGNATURE_HEADER] == expected
    assert wire.parse_check_request(request.content).person == ZHANG


async def test_a_refusal_that_echoes_the_person_is_logged_by_its_code_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Registries often echo a request they refuse; the log keeps the status and the error's
    code, never the name or the document number that came back (found by a hostile review)."""

    async def echoing(request: httpx.Request) -> httpx.Response:
        echoed = json.loads(request.content)
        return httpx.Response(
            400, json={"error": {"code": "malformed", "message": f"rejected {echoed}"}}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(echoing)) as client:
        with caplog.at_level("DEBUG"), pytest.raises(ProofingUnavailable, match="400"):
            await over(client, backoff=0.01).check(person=ZHANG, phone=ZHANG_PHONE, purpose="bind")
    lines = "\n".join(record.getMessage() for record in caplog.records)
    assert "refused our check (400, malformed)" in lines
    for secret in (ZHANG.name, ZHANG.doc_number, ZHANG_PHONE, "1949-12-31"):
        assert secret not in lines
