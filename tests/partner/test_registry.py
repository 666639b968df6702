"""The reference identity registry: its store (loading, upserts, numbers given back, samples,
nonces), the YKP1 server over ASGI (answers, signatures, every refusal), the admin load, the
in-process backend and the command line. Nothing it answers is ever a record."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from support.postgres import create_database
from yuekang.cli.partner import partner_app
from yuekang.clock import ManualClock, epoch
from yuekang.codec import proofing as wire
from yuekang.codec.proofing import Person
from yuekang.residents.documents import mod11_2_check
from yuekang.residents.proofing import ProofingResult, ProofingUnavailable
from yuekang_reference.registry import (
    BuiltinProofing,
    RegistrySettings,
    RegistryStore,
    create_app,
    open_store,
)
from yuekang_reference.registry.settings import client_secret
from yuekang_reference.registry.store import CheckLog

SECRET = "test-registry-client-secret-0123456789"
ADMIN = "test-registry-admin-token"
BASE = "http://registry.test"

# From samples.ndjson.
ZHANG = Person("张小三", "prc_id", "11010519491231002X", dt.date(1949, 12, 31))
ZHANG_PHONE = "+8613800138000"
LI_PHONE = "+8613700137000"
CHAN = Person("Chan Tai Man", "hkid", "A1234563", dt.date(1985, 7, 1))
UNKNOWN_NUMBER = "44010419900101123" + mod11_2_check("44010419900101123")
WANG = Person("王五", "prc_id", UNKNOWN_NUMBER, dt.date(1990, 1, 1))
WANG_PHONE = "+8613911112222"


def registry_settings(data_dir: Path, **overrides: Any) -> RegistrySettings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "client_secret": SECRET,
        "admin_token": ADMIN,
    }
    values.update(overrides)
    return RegistrySettings(**values)


def check_body(
    person: Person = ZHANG, phone: str | None = ZHANG_PHONE, *, check_id: str | None = None
) -> bytes:
    request = wire.CheckRequest(check_id or str(uuid.uuid4()), "bind", person, phone)
    return request.to_json()


def signed_headers(
    body: bytes,
    *,
    now: int,
    secret: str = SECRET,
    client: str = "yk-gd",
    nonce: str | None = None,
) -> dict[str, str]:
    nonce = nonce or secrets.token_urlsafe(16)
    return {
        "Content-Type": "application/json",
        wire.CLIENT_HEADER: client,
        wire.DATE_HEADER: str(now),
        wire.NONCE_HEADER: nonce,
        wire.SIGNATURE_HEADER: wire.request_signature(
            secret.encode(),
            method="POST",
            path=wire.PATH,
            client=client,
            date=now,
            nonce=nonce,
            body=body,
        ),
    }


@dataclass
class Registry:
    app: Any
    client: httpx.AsyncClient
    store: RegistryStore
    clock: ManualClock
    responses: list[httpx.Response] = field(default_factory=list)
    """Every response seen, for the test that no answer is a record."""

    def now(self) -> int:
        return epoch(self.clock.now())

    async def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        response = await self.client.post(wire.PATH, content=body, headers=headers)
        self.responses.append(response)
        return response

    async def check(self, body: bytes, **signing: Any) -> httpx.Response:
        return await self.post(body, signed_headers(body, now=self.now(), **signing))

    async def admin(self, records: bytes, token: str | None = ADMIN) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = await self.client.post("/v1/admin/records", content=records, headers=headers)
        self.responses.append(response)
        return response


@pytest.fixture
async def registry(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Registry]:
    settings = registry_settings(tmp_path / "registry", rate_limit_per_second=1000)
    app = create_app(settings, clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client,
    ):
        store: RegistryStore = app.state.store
        await store.seed_samples()
        yield Registry(app, client, store, clock)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """The store's database: SQLite in its data directory (None), or a fresh PostgreSQL one."""
    if request.param == "sqlite":
        return None
    return create_database(request.getfixturevalue("pg_server"))


@pytest.fixture
async def store(
    tmp_path: Path, clock: ManualClock, store_url: str | None
) -> AsyncIterator[RegistryStore]:
    opened = open_store(tmp_path / "store", store_url, clock=clock)
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


def person_line(person: Person = ZHANG, **changes: Any) -> str:
    entry = {
        "kind": "person",
        "name": person.name,
        "doc_type": person.doc_type,
        "doc_number": person.doc_number,
        "birth_date": person.birth_date.isoformat(),
        **changes,
    }
    return json.dumps(entry, ensure_ascii=False)


def subscription_line(phone: str, person: Person = ZHANG, **changes: Any) -> str:
    entry = {
        "kind": "subscription",
        "phone": phone,
        "doc_type": person.doc_type,
        "doc_number": person.doc_number,
        "name": person.name,
        "carrier": "China Mobile",
        **changes,
    }
    return json.dumps(entry, ensure_ascii=False)


def given_back(phone: str) -> str:
    return json.dumps({"kind": "subscription", "phone": phone, "action": "delete"})


async def logged_checks(store: RegistryStore) -> list[dict[str, Any]]:
    async with store.engine.connect() as connection:
        rows = (await connection.execute(select(CheckLog).order_by(CheckLog.id))).mappings()
        return [dict(row) for row in rows]


# --- the store ------------------------------------------------------------------------------


async def test_load_reports_bad_lines_by_number_and_loads_the_rest(store: RegistryStore) -> None:
    lines: list[str | bytes] = [
        person_line(WANG),
        "",
        subscription_line(WANG_PHONE, WANG),
        "not json",
        person_line(WANG, doc_number=UNKNOWN_NUMBER[:-1] + "0"),  # check digit
        person_line(WANG, birth_date="1990-01-02"),  # not the date in the number
        person_line(WANG, birth_date="01/01/1990"),
        person_line(WANG, doc_type="library_card"),
        subscription_line("13911112222", WANG),
        person_line(WANG, nmae="王五"),
        b"\xff\xfe",
        json.dumps({"kind": "pet", "name": "Rex"}),
        subscription_line(WANG_PHONE, WANG, action="upsert"),
        "   ",
        person_line(CHAN, doc_number="a123456(3)"),  # the printed form, normalised
    ]
    report = await store.load(lines)
    assert (report.people, report.subscriptions) == (2, 1)
    assert [e.line for e in report.errors] == [4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    messages = [e.message for e in report.errors]
    expected = ["JSON", "check digit", "birth_date", "YYYY-MM-DD", "doc_type", "E.164", "nmae"]
    expected += ["UTF-8", "kind", "action"]
    for message, words in zip(messages, expected, strict=True):
        assert words in message
    # A message names the field and the rule, never the number.
    assert not any(UNKNOWN_NUMBER[:-1] in m for m in messages)
    assert await store.person("prc_id", UNKNOWN_NUMBER) == WANG
    assert await store.subscription(WANG_PHONE) == wire.Subscription(
        WANG_PHONE, "prc_id", UNKNOWN_NUMBER, "王五"
    )
    assert await store.person("hkid", "A1234563") == CHAN


async def test_load_replaces_records_and_drops_numbers(store: RegistryStore) -> None:
    li = Person("李秀英", "prc_id", "440304194003080029", dt.date(1940, 3, 8))
    await store.load([person_line(), subscription_line(ZHANG_PHONE)])
    # Renamed in the register; the number goes to someone else.
    report = await store.load(
        [person_line(name="张 小三"), person_line(li), subscription_line(ZHANG_PHONE, li)]
    )
    assert (report.people, report.subscriptions, report.errors) == (2, 1, [])
    assert await store.person(ZHANG.doc_type, ZHANG.doc_number) == Person(
        "张 小三", ZHANG.doc_type, ZHANG.doc_number, ZHANG.birth_date
    )
    assert await store.subscription(ZHANG_PHONE) == wire.Subscription(
        ZHANG_PHONE, li.doc_type, li.doc_number, li.name
    )
    # A number given back to the carrier.
    report = await store.load([given_back(ZHANG_PHONE)])
    assert (report.people, report.subscriptions, report.errors) == (0, 1, [])
    assert await store.subscription(ZHANG_PHONE) is None
    # Within one load, the last line about a number wins.
    await store.load([given_back(ZHANG_PHONE), subscription_line(ZHANG_PHONE)])
    assert await store.subscription(ZHANG_PHONE) is not None
    await store.load([subscription_line(ZHANG_PHONE), given_back(ZHANG_PHONE)])
    assert await store.subscription(ZHANG_PHONE) is None


async def test_all_or_nothing_writes_nothing_when_a_line_fails(store: RegistryStore) -> None:
    report = await store.load(
        [person_line(birth_date="1949-12-30"), subscription_line(ZHANG_PHONE)],
        all_or_nothing=True,
    )
    assert (report.people, report.subscriptions, [e.line for e in report.errors]) == (0, 0, [1])
    assert await store.person(ZHANG.doc_type, ZHANG.doc_number) is None
    assert await store.subscription(ZHANG_PHONE) is None


async def test_samples_are_seeded_into_an_empty_register_only(
    store: RegistryStore, tmp_path: Path, clock: ManualClock
) -> None:
    first = await store.seed_samples()
    assert first is not None
    assert (first.people, first.subscriptions, first.errors) == (5, 3, [])
    assert await store.person(ZHANG.doc_type, ZHANG.doc_number) == ZHANG
    await store.load([given_back(ZHANG_PHONE)])
    assert await store.seed_samples() is None
    assert await store.subscription(ZHANG_PHONE) is None

    elsewhere = open_store(tmp_path / "other", clock=clock)
    await elsewhere.start()
    try:
        await elsewhere.load([person_line(CHAN)])
        assert await elsewhere.seed_samples() is None
        assert await elsewhere.person(ZHANG.doc_type, ZHANG.doc_number) is None
    finally:
        await elsewhere.close()


async def test_stores_starting_at_once_on_one_file(tmp_path: Path) -> None:
    stores = [open_store(tmp_path / "shared") for _ in range(4)]
    try:
        await asyncio.gather(*(s.start() for s in stores))
        reports = await asyncio.gather(*(s.seed_samples() for s in stores))
        assert sum(r is not None for r in reports) == 1
        await stores[0].load([person_line(CHAN, name="Chan Tai-man")])
        assert await stores[3].person("hkid", "A1234563") == Person(
            "Chan Tai-man", "hkid", "A1234563", CHAN.birth_date
        )
    finally:
        for s in stores:
            await s.close()


async def test_nonces_are_single_use_until_they_expire(store: RegistryStore) -> None:
    ttl = wire.NONCE_TTL_SECONDS
    assert await store.remember_nonce("yk-gd", "n" * 16, now=1000)
    assert not await store.remember_nonce("yk-gd", "n" * 16, now=1000)
    assert await store.remember_nonce("other", "n" * 16, now=1000)
    assert not await store.remember_nonce("yk-gd", "n" * 16, now=1000 + ttl)
    assert await store.remember_nonce("yk-gd", "n" * 16, now=1001 + ttl)
    assert not await store.remember_nonce("yk-gd", "n" * 16, now=1002 + ttl)


# --- checks over HTTP -----------------------------------------------------------------------

OTHER_NAME = Person("张小四", ZHANG.doc_type, ZHANG.doc_number, ZHANG.birth_date)
OTHER_BIRTH = Person(ZHANG.name, ZHANG.doc_type, ZHANG.doc_number, dt.date(1949, 12, 30))
UNKNOWN = Person(ZHANG.name, "prc_id", UNKNOWN_NUMBER, dt.date(1990, 1, 1))


@pytest.mark.parametrize(
    ("person", "phone", "identity", "phone_answer"),
    [
        pytest.param(ZHANG, ZHANG_PHONE, "match", "match", id="match"),
        pytest.param(OTHER_NAME, ZHANG_PHONE, "no_match", "no_match", id="wrong-name"),
        # Carriers hold no birth dates: the number is still the document holder's.
        pytest.param(OTHER_BIRTH, ZHANG_PHONE, "no_match", "match", id="wrong-birth-date"),
        pytest.param(UNKNOWN, ZHANG_PHONE, "no_match", "no_match", id="unknown-document"),
        pytest.param(ZHANG, LI_PHONE, "match", "no_match", id="someone-elses-phone"),
        pytest.param(ZHANG, "+8613912345678", "match", "no_match", id="unregistered-phone"),
        pytest.param(ZHANG, "+85366123456", "match", "unsupported", id="macao-phone"),
        pytest.param(ZHANG, None, "match", "not_requested", id="no-phone"),
        pytest.param(
            Person("CHAN  TAI MAN", "hkid", "A1234563", CHAN.birth_date),
            None,
            "match",
            "not_requested",
            id="name-spacing-and-case",
        ),
    ],
)
async def test_check_answers(
    registry: Registry, person: Person, phone: str | None, identity: str, phone_answer: str
) -> None:
    check_id = str(uuid.uuid4())
    body = check_body(person, phone, check_id=check_id)
    headers = signed_headers(body, now=registry.now())
    response = await registry.post(body, headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "check_id": check_id,
        "identity": identity,
        "phone": phone_answer,
        "checked_at": registry.now(),
    }
    expected = wire.response_signature(
        SECRET.encode(), status=200, nonce=headers[wire.NONCE_HEADER], body=response.content
    )
    assert response.headers[wire.SIGNATURE_HEADER] == expected
    # Bound to this request: the same answer under another nonce does not verify.
    assert expected != wire.response_signature(
        SECRET.encode(), status=200, nonce=secrets.token_urlsafe(16), body=response.content
    )
    assert response.headers["cache-control"] == "no-store"
    logged = await logged_checks(registry.store)
    assert [(r["check_id"], r["client"], r["identity"], r["phone"]) for r in logged] == [
        (check_id, "yk-gd", identity, phone_answer)
    ]


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert wire.SIGNATURE_HEADER not in response.headers


async def test_the_client_must_be_named_and_known(registry: Registry) -> None:
    body = check_body()
    headers = signed_headers(body, now=registry.now())
    del headers[wire.CLIENT_HEADER]
    refused(await registry.post(body, headers), 401, "unknown_client")
    refused(await registry.check(body, client="yk-hk"), 401, "unknown_client")
    refused(await registry.check(body, client="yk gd"), 401, "unknown_client")
    assert await logged_checks(registry.store) == []


async def test_the_signature_must_cover_this_request_with_our_secret(registry: Registry) -> None:
    body = check_body()
    headers = signed_headers(body, now=registry.now())
    changed = body.replace(b'"bind"', b'"counter"')
    refused(await registry.post(changed, headers), 401, "bad_signature")
    other_secret = "another-clients-secret-0123456789abcdef"
    refused(await registry.check(body, secret=other_secret), 401, "bad_signature")
    unsigned = signed_headers(body, now=registry.now())
    del unsigned[wire.SIGNATURE_HEADER]
    refused(await registry.post(body, unsigned), 401, "bad_signature")
    # The date is signed too: moved after signing, the signature no longer matches.
    moved = signed_headers(body, now=registry.now())
    moved[wire.DATE_HEADER] = str(registry.now() - 1)
    refused(await registry.post(body, moved), 401, "bad_signature")
    assert await logged_checks(registry.store) == []


@pytest.mark.parametrize("skew", [-wire.MAX_SKEW_SECONDS - 1, wire.MAX_SKEW_SECONDS + 1])
async def test_stale_dates_are_refused(registry: Registry, skew: int) -> None:
    body = check_body()
    stale = await registry.post(body, signed_headers(body, now=registry.now() + skew))
    refused(stale, 401, "stale_date")
    edge = skew - 1 if skew > 0 else skew + 1
    fresh = await registry.post(body, signed_headers(body, now=registry.now() + edge))
    assert fresh.status_code == 200, fresh.text


async def test_a_nonce_is_used_once(registry: Registry) -> None:
    body = check_body()
    headers = signed_headers(body, now=registry.now())
    assert (await registry.post(body, headers)).status_code == 200
    refused(await registry.post(body, headers), 401, "replayed_nonce")
    # Even for another, correctly signed request.
    again = check_body()
    nonce = headers[wire.NONCE_HEADER]
    refused(await registry.check(again, nonce=nonce), 401, "replayed_nonce")
    # Once any request carrying it would be stale, the nonce may come back.
    registry.clock.advance(wire.NONCE_TTL_SECONDS + 1)
    assert (await registry.check(again, nonce=nonce)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[]", id="array"),
        pytest.param(b"{}", id="empty"),
        pytest.param(check_body().replace(b'"bind"', b'"curiosity"'), id="purpose"),
        pytest.param(check_body().replace(b'"prc_id"', b'["prc_id"]'), id="unhashable-doc-type"),
        pytest.param(check_body().replace(b"1949-12-31", b"31/12/1949"), id="date"),
        pytest.param(
            check_body().replace(b"11010519491231002X", b"11010519491231002x"), id="unnormalised"
        ),
        pytest.param(check_body().replace(ZHANG_PHONE.encode(), b"13800138000"), id="phone"),
        pytest.param(check_body().replace(b'"check_id":"', b'"check_id":"x'), id="check-id"),
    ],
)
async def test_malformed_bodies_are_400(registry: Registry, body: bytes) -> None:
    refused(await registry.check(body), 400, "malformed")
    assert await logged_checks(registry.store) == []


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (wire.DATE_HEADER, "yesterday"),
        (wire.DATE_HEADER, b"\xb2"),  # "²": a digit to str.isdigit(), not to int()
        (wire.NONCE_HEADER, "short"),
        (wire.NONCE_HEADER, "has spaces in it, sixteen+"),
    ],
)
async def test_malformed_headers_are_400(
    registry: Registry, header: str, value: str | bytes
) -> None:
    body = check_body()
    headers: dict[str, Any] = signed_headers(body, now=registry.now())
    headers[header] = value
    refused(await registry.post(body, headers), 400, "malformed")


async def test_oversized_bodies_are_413(registry: Registry) -> None:
    body = check_body()
    padded = body[:-1] + b',"pad":"' + b"x" * wire.MAX_BODY_BYTES + b'"}'
    refused(await registry.check(padded), 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b" " * (wire.MAX_BODY_BYTES // 2)

    headers = signed_headers(b"", now=registry.now())
    streamed = await registry.client.post(wire.PATH, content=chunks(), headers=headers)
    refused(streamed, 413, "payload_too_large")


async def test_past_the_rate_limit_429_with_retry_after(tmp_path: Path, clock: ManualClock) -> None:
    app = create_app(registry_settings(tmp_path / "r", rate_limit_per_second=5), clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client,
    ):
        registry = Registry(app, client, app.state.store, clock)
        for _ in range(5):
            assert (await registry.check(check_body())).status_code == 200
        limited = await registry.check(check_body())
        refused(limited, 429, "rate_limited")
        assert limited.headers["retry-after"] == "1"
        clock.advance(1)
        # Requests that do not prove the client's identity do not spend its allowance.
        for _ in range(20):
            refused(await registry.check(check_body(), secret="x" * 32), 401, "bad_signature")
        assert (await registry.check(check_body())).status_code == 200


async def test_unknown_routes_and_methods_answer_json(registry: Registry) -> None:
    refused(await registry.client.get(f"/v1/people/{ZHANG.doc_number}"), 404, "not_found")
    refused(await registry.client.get(wire.PATH), 405, "method_not_allowed")
    assert (await registry.client.get("/healthz")).json() == {"status": "ok"}


async def test_admin_load_needs_the_token(registry: Registry) -> None:
    records = "\n".join([person_line(WANG), "{oops", subscription_line(WANG_PHONE, WANG)]).encode()
    for token in (None, f"{ADMIN}x", "x" * len(ADMIN)):
        refused(await registry.admin(records, token), 401, "unauthorized")
    without_bearer = await registry.client.post(
        "/v1/admin/records", content=records, headers={"Authorization": ADMIN}
    )
    refused(without_bearer, 401, "unauthorized")
    assert await registry.store.person("prc_id", UNKNOWN_NUMBER) is None

    response = await registry.admin(records)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "people": 1,
        "subscriptions": 1,
        "errors": [{"line": 2, "message": "the line is not JSON"}],
    }
    answer = (await registry.check(check_body(WANG, WANG_PHONE))).json()
    assert (answer["identity"], answer["phone"]) == ("match", "match")


async def test_admin_load_takes_more_than_a_check(registry: Registry) -> None:
    count = wire.MAX_BODY_BYTES // 100
    many = "\n".join(subscription_line(f"+86139{n:08d}") for n in range(count)).encode()
    assert len(many) > wire.MAX_BODY_BYTES
    response = await registry.admin(many)
    assert response.status_code == 200, response.text
    assert response.json() == {"people": 0, "subscriptions": count, "errors": []}


async def test_no_answer_is_ever_the_record(registry: Registry) -> None:
    for person in (ZHANG, OTHER_NAME, OTHER_BIRTH, UNKNOWN):
        await registry.check(check_body(person, ZHANG_PHONE))
        await registry.check(check_body(person, None))
    body = check_body()
    await registry.check(body, secret="y" * 32)
    await registry.check(body.replace(b'"bind"', b'"x"'))
    headers = signed_headers(body, now=registry.now())
    await registry.post(body, headers)
    await registry.post(body, headers)
    await registry.admin(person_line(ZHANG, birth_date="1949-12-30").encode())
    await registry.admin(person_line(ZHANG).encode(), token="wrong-token-0123456789")
    for path in (f"/v1/people/{ZHANG.doc_number}", "/healthz", "/openapi.json"):
        registry.responses.append(await registry.client.get(path))
    assert len(registry.responses) == 17
    statuses = {r.status_code for r in registry.responses}
    assert statuses == {200, 400, 401, 404}
    zhang = [
        ZHANG.name.encode(),
        json.dumps(ZHANG.name).strip('"').encode(),  # as JSON's \\uXXXX escapes
        ZHANG.birth_date.isoformat().encode(),
        ZHANG.doc_number.encode(),
        ZHANG_PHONE.encode(),
    ]
    for response in registry.responses:
        for value in zhang:
            assert value not in response.content, (response.request.url, response.content)


# --- in-process -------------------------------------------------------------------------------


async def test_builtin_answers_like_the_server(tmp_path: Path, clock: ManualClock) -> None:
    proofing = BuiltinProofing(open_store(tmp_path / "builtin", clock=clock), clock=clock)
    try:
        await proofing.start()
        await proofing.start()
        assert await proofing.store.person(ZHANG.doc_type, ZHANG.doc_number) == ZHANG
        result = await proofing.check(person=ZHANG, phone=ZHANG_PHONE, purpose="bind")
        assert (result.identity_matches, result.phone) == (True, "match")
        result = await proofing.check(person=OTHER_BIRTH, phone=LI_PHONE, purpose="recheck")
        assert (result.identity_matches, result.phone) == (False, "no_match")
        result = await proofing.check(person=CHAN, phone="+85366123456", purpose="dependant")
        assert (result.identity_matches, result.phone) == (True, "unsupported")
        # What the served registry would refuse as malformed is no answer either.
        lowercase = Person(ZHANG.name, ZHANG.doc_type, "11010519491231002x", ZHANG.birth_date)
        with pytest.raises(ProofingUnavailable):
            await proofing.check(person=lowercase, phone=None, purpose="bind")
        logged = await logged_checks(proofing.store)
        assert [(r["client"], r["purpose"], r["phone"]) for r in logged] == [
            ("builtin", "bind", "match"),
            ("builtin", "recheck", "no_match"),
            ("builtin", "dependant", "unsupported"),
        ]
        assert logged[-1]["check_id"] == result.reference
        assert logged[-1]["at"] == epoch(clock.now())
    finally:
        await proofing.close()


async def test_builtin_registry_without_a_database_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "registry.db").mkdir()  # a directory where the database file should be
    proofing = BuiltinProofing(open_store(tmp_path))
    try:
        with pytest.raises(ProofingUnavailable):
            await proofing.check(person=ZHANG, phone=None, purpose="bind")
    finally:
        await proofing.close()


# --- settings and the command line ------------------------------------------------------------


def test_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    settings = RegistrySettings(data_dir=tmp_path / "dev")
    first = client_secret(settings)
    assert len(first) >= 32
    assert client_secret(settings) == first
    assert (tmp_path / "dev" / "secrets.json").stat().st_mode & 0o077 == 0
    assert (tmp_path / "dev").stat().st_mode & 0o077 == 0
    assert client_secret(registry_settings(tmp_path / "dev")) == SECRET


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REGISTRY_PORT", "8299")
    monkeypatch.setenv("REGISTRY_CLIENT_ID", "yk-test")
    settings = RegistrySettings()
    assert (settings.data_dir, settings.port, settings.client_id) == (tmp_path, 8299, "yk-test")
    with pytest.raises(ValueError, match="client_secret"):
        RegistrySettings(client_secret="too short")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(partner_app, ["registry", *args])
    return result.exit_code, result.stdout, result.stderr


def add_wang(data_dir: Path, number: str) -> tuple[int, str, str]:
    return run(
        "add", "--name", "王五", "--doc-type", "prc_id", "--doc-number", number,
        "--birth-date", "1990-01-01", "--phone", WANG_PHONE, "--data-dir", str(data_dir),
    )  # fmt: skip


def test_add_refuses_a_bad_check_digit(tmp_path: Path) -> None:
    bad = UNKNOWN_NUMBER[:-1] + ("0" if UNKNOWN_NUMBER[-1] != "0" else "1")
    code, _, err = add_wang(tmp_path / "cli", bad)
    assert code == 2
    assert err.startswith("error: doc_number: ") and "check digit" in err
    assert len(err.strip().splitlines()) == 1


def test_added_people_are_checked(tmp_path: Path) -> None:
    code, out, err = add_wang(tmp_path / "cli", UNKNOWN_NUMBER)
    assert code == 0, err
    assert out.startswith("added 1 person and 1 subscription")

    async def check() -> ProofingResult:
        proofing = BuiltinProofing(open_store(tmp_path / "cli"))
        try:
            return await proofing.check(person=WANG, phone=WANG_PHONE, purpose="bind")
        finally:
            await proofing.close()

    # The command runs an event loop of its own, so this test is synchronous.
    result = asyncio.run(check())
    assert (result.identity_matches, result.phone) == (True, "match")


def test_load_reports_bad_lines(tmp_path: Path) -> None:
    records = tmp_path / "records.ndjson"
    records.write_text(
        "\n".join([person_line(CHAN), person_line(CHAN, doc_number="A1234564"), "{}"]) + "\n"
    )
    data_dir = str(tmp_path / "cli")
    code, out, err = run("load", str(records), "--data-dir", data_dir)
    assert code == 1
    assert out.strip() == "people=1 subscriptions=0 errors=2"
    assert err.splitlines()[0].startswith("line 2: doc_number")
    assert err.splitlines()[1].startswith("line 3: kind")
    records.write_text(person_line(CHAN) + "\n")
    code, out, _ = run("load", str(records), "--data-dir", data_dir)
    assert (code, out.strip()) == (0, "people=1 subscriptions=0 errors=0")
    code, _, err = run("load", str(tmp_path / "missing.ndjson"), "--data-dir", data_dir)
    assert code == 2
    assert err.startswith("error: cannot read")


def test_credentials_print_what_the_service_needs(tmp_path: Path) -> None:
    data_dir = tmp_path / "cli"
    code, out, _ = run("credentials", "--data-dir", str(data_dir))
    assert code == 0
    values = dict(line.split("=", 1) for line in out.splitlines())
    assert values == {
        "client_id": "yk-gd",
        "client_secret": client_secret(RegistrySettings(data_dir=data_dir)),
    }


def test_every_registry_command_has_help() -> None:
    for command in ("serve", "load", "add", "credentials"):
        code, out, _ = run(command, "--help")
        assert code == 0
        assert "--data-dir" in out


def test_add_takes_a_number_as_people_type_it(tmp_path: Path) -> None:
    # 139 1111 2222 as printed on a contract: registered as the service will ask for it.
    code, _, err = run(
        "add", "--name", "王五", "--doc-type", "prc_id", "--doc-number", UNKNOWN_NUMBER,
        "--birth-date", "1990-01-01", "--phone", "139 1111-2222", "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err

    async def check() -> ProofingResult:
        proofing = BuiltinProofing(open_store(tmp_path))
        try:
            return await proofing.check(person=WANG, phone=WANG_PHONE, purpose="bind")
        finally:
            await proofing.close()

    assert asyncio.run(check()).phone == "match"
    # An 8-digit number is Macao's or Hong Kong's: it needs its region, said in one line.
    code, _, err = run(
        "add", "--name", "王五", "--doc-type", "prc_id", "--doc-number", UNKNOWN_NUMBER,
        "--birth-date", "1990-01-01", "--phone", "6612 3456", "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 2 and err.startswith("error: --phone: ") and len(err.splitlines()) == 1
