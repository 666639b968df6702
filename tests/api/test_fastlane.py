"""The route table (yuekang.fastlane): built from the routes marked direct, it answers them before
FastAPI's router, reads a request as the routes read it, answers errors with the application's
handlers, and hands what a direct handler does not own to the route with the request intact."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import PlainTextResponse, Response

from conftest import RunningApp, start_app
from support.api import random_prc_id, registry_person
from yuekang.app import create_app, install_error_handlers
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.config import Settings
from yuekang.errortexts import localizing
from yuekang.exceptions import Unauthorized
from yuekang.fastlane import Direct, DirectTable, direct, entries
from yuekang.replicas import NeedsPrimary


class Route:
    """Stands in for FastAPI behind the table: records what reached it, answers 599."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append((scope["path"], body))
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def table_client(running: RunningApp, settings: Settings, route: Route) -> httpx.AsyncClient:
    """The application's table in front of ``route``, answering with ``running``'s context."""
    table = DirectTable(route, application=create_app(settings))
    app = SimpleNamespace(state=SimpleNamespace(context=running.context))

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        # As the application sends what the table answers: errors in the reader's language.
        await table({**scope, "app": app}, receive, localizing(scope, send))

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://testserver")


@pytest.fixture
async def routes_only(
    settings: Settings, clock: ManualClock, sms: MemorySmsSender
) -> AsyncIterator[RunningApp]:
    """A second application on the same database, without the table: the routes' answers."""
    async for running_app in start_app(
        settings.model_copy(update={"fast_lane": False}), clock, sms
    ):
        yield running_app


# The table, on an application of its own.


def small_app(marked_path: str) -> tuple[FastAPI, list[str]]:
    """An application with one route marked direct at ``marked_path`` and one not marked."""
    answered: list[str] = []

    async def directly(request: Direct) -> Response | None:
        if request.header(b"x-decline") is not None:
            return None
        if request.header(b"x-raise") is not None:
            raise Unauthorized("no", code="missing_token")
        answered.append(json.dumps(request.path_params))
        return PlainTextResponse("direct")

    router = APIRouter(prefix="/p")

    @router.api_route(marked_path, methods=["GET", "POST"])
    @direct(directly)
    async def marked(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"route {(await request.body()).decode()}")

    @router.get("/plain")
    async def plain() -> PlainTextResponse:
        return PlainTextResponse("route")

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(DirectTable, application=app)
    return app, answered


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_a_route_marked_direct_is_answered_by_its_handler_and_an_unmarked_one_is_not():
    app, answered = small_app("/marked/{name}")
    async with client(app) as http:
        assert (await http.get("/p/marked/x")).text == "direct"
        assert (await http.post("/p/marked/y")).text == "direct"
        assert (await http.get("/p/plain")).text == "route"
        assert (await http.put("/p/marked/x")).status_code == 405  # the router's answer
    assert answered == ['{"name": "x"}', '{"name": "y"}']


async def test_the_table_is_built_from_the_routes_so_a_renamed_path_takes_its_dispatch_along():
    app, answered = small_app("/renamed/{name}")
    async with client(app) as http:
        assert (await http.get("/p/renamed/z")).text == "direct"
        assert (await http.get("/p/marked/z")).status_code == 404
    assert answered == ['{"name": "z"}']


def test_a_route_declared_ahead_that_would_take_a_direct_routes_requests_is_refused():
    async def directly(request: Direct) -> Response | None:
        return PlainTextResponse("direct")

    def app_with(first: str, methods: list[str]) -> FastAPI:
        app = FastAPI()

        @app.api_route(first, methods=methods)
        async def ahead() -> PlainTextResponse:
            return PlainTextResponse("ahead")

        @app.get("/p/plain/{code_id}.png")
        @direct(directly)
        async def marked(code_id: str) -> PlainTextResponse:
            return PlainTextResponse("route")

        return app

    # The router would give GET /p/plain/x.png to the route ahead: the table must not take it.
    with pytest.raises(RuntimeError, match=r"/p/plain/\{name\} \(GET\) is declared before"):
        entries(app_with("/p/plain/{name}", ["GET"]).routes)
    # Another method, or a path that cannot be the direct route's, leaves it alone.
    assert [e.path for e in entries(app_with("/p/plain/{name}", ["POST"]).routes)] == [
        "/p/plain/{code_id}.png"
    ]
    assert len(entries(app_with("/p/{name}", ["GET"]).routes)) == 1


async def test_a_request_the_handler_declines_reaches_the_route_with_its_body():
    app, answered = small_app("/marked/{name}")
    async with client(app) as http:
        declined = await http.post("/p/marked/x", content=b"the body", headers={"X-Decline": "1"})
    assert declined.text == "route the body"
    assert answered == []


async def test_what_a_direct_handler_raises_is_answered_by_the_applications_handlers():
    app, _ = small_app("/marked/{name}")
    async with client(app) as http:
        raised = await http.get("/p/marked/x", headers={"X-Raise": "1"})
    expected = Unauthorized("no", code="missing_token").response()
    assert raised.status_code == expected.status_code == 401
    assert raised.json() == json.loads(expected.body)
    assert raised.headers["www-authenticate"] == "Bearer"


def test_the_applications_table_holds_the_routes_marked_direct(settings: Settings):
    table = DirectTable(Route(), application=create_app(settings))
    assert [(entry.path, sorted(entry.methods)) for entry in table.entries] == [
        ("/v1/codes", ["POST"]),
        ("/v1/codes/{code_id}.png", ["GET"]),
        ("/v1/codes/{code_id}.svg", ["GET"]),
        ("/v1/verify", ["POST"]),
        ("/v1/me/status", ["GET"]),
        ("/v1/me/appeals", ["GET"]),
        ("/v1/trust-bundle", ["GET"]),
        ("/v1/me/dependants", ["GET"]),
    ]


def test_without_the_fast_lane_there_is_no_table(settings: Settings):
    app = create_app(settings.model_copy(update={"fast_lane": False}))
    assert not [m for m in app.user_middleware if m.cls is DirectTable]
    assert [m for m in create_app(settings).user_middleware if m.cls is DirectTable]


# The application's direct handlers.


async def test_a_good_scan_is_answered_directly_as_the_route_answers_it(
    running: RunningApp, routes_only: RunningApp, settings: Settings
):
    gate = {"Authorization": f"Bearer {await running.checkpoint_key()}"}
    code = await running.api.code(await running.api.registered(name="王五"))
    route = Route()
    async with table_client(running, settings, route) as fast:
        answered = await fast.post("/v1/verify", json={"qr_text": code["qr_text"]}, headers=gate)
        with_charset = await fast.post(
            "/v1/verify",
            content=json.dumps({"qr_text": code["qr_text"]}),
            headers={**gate, "Content-Type": "application/json; charset=utf-8"},
        )
    assert with_charset.status_code == 200
    slow = await routes_only.client.post(
        "/v1/verify", json={"qr_text": code["qr_text"]}, headers=gate
    )
    assert route.seen == []
    assert answered.status_code == slow.status_code == 200
    assert answered.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert answered.json() == slow.json()
    assert answered.json()["masked_name"] == "*五"


async def test_a_scan_the_handler_does_not_own_reaches_the_route_with_its_body_intact(
    running: RunningApp, routes_only: RunningApp, settings: Settings
):
    key = await running.checkpoint_key()
    code = await running.api.code(await running.api.registered())
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    good_body = json.dumps({"qr_text": code["qr_text"]}).encode()
    cases = [
        ({"Authorization": f"Bearer {wrong}"}, good_body),  # a key that is not good
        ({"Authorization": "Bearer not-a-key"}, good_body),
        ({}, good_body),
        ({"Authorization": f"Bearer {key}"}, b'{"qr_text": '),  # broken JSON
        ({"Authorization": f"Bearer {key}"}, b'{"qr_text": "x", "extra": 1}'),
    ]
    route = Route()
    answers = []
    async with table_client(running, settings, route) as fast:
        for headers, body in cases:
            response = await fast.post(
                "/v1/verify", content=body, headers={**headers, "Content-Type": "application/json"}
            )
            answers.append(response)
    # The key the database refused is answered directly, as the route answers it; the rest
    # reach the route.
    refused = answers[0]
    by_route = await routes_only.client.post(
        "/v1/verify", content=good_body, headers={**cases[0][0], "Content-Type": "application/json"}
    )
    assert refused.status_code == by_route.status_code == 401
    assert refused.json() == by_route.json()
    assert refused.headers["www-authenticate"] == by_route.headers["www-authenticate"]
    assert [r.status_code for r in answers[1:]] == [599] * 4
    assert route.seen == [("/v1/verify", body) for _, body in cases[1:]]


async def test_issuance_and_images_are_answered_directly_as_the_routes_answer_them(
    running: RunningApp, routes_only: RunningApp, settings: Settings
):
    owner, stranger = await running.api.registered(name="赵六"), await running.api.registered()
    unbound = await running.api.sign_in()
    route = Route()
    async with table_client(running, settings, route) as fast:
        for http in (fast, routes_only.client):
            issued = await http.post("/v1/codes", headers=owner.auth)
            assert issued.status_code in (200, 201)  # the second: the live code again
            assert issued.headers["cache-control"] == "no-store"
            assert issued.json()["png_url"].startswith("http://testserver/v1/codes/")
        code_id = issued.json()["code_id"]
        path = f"/v1/codes/{code_id}.png"
        cases: list[tuple[str, str, dict[str, str]]] = [
            ("POST", "/v1/codes", {**owner.auth, "Idempotency-Key": "k-1"}),
            ("POST", "/v1/codes", {**owner.auth, "Idempotency-Key": "k" * 200}),
            ("POST", "/v1/codes", {}),
            ("POST", "/v1/codes", {"Authorization": "Bearer forged"}),
            ("POST", "/v1/codes", unbound.auth),
            ("GET", path, owner.auth),  # the first time: not cached yet
            ("GET", path, owner.auth),
            ("GET", f"/v1/codes/{code_id}.svg", owner.auth),
            ("GET", path, stranger.auth),
            ("GET", path, {}),
            ("GET", "/v1/codes/no-such-code.png", owner.auth),
        ]
        for method, target, headers in cases:
            answer = await fast.request(method, target, headers=headers)
            expected = await routes_only.client.request(method, target, headers=headers)
            assert answer.status_code == expected.status_code, (target, headers, answer.text)
            if answer.status_code >= 400:
                assert answer.json() == expected.json()
                assert answer.headers.get("www-authenticate") == expected.headers.get(
                    "www-authenticate"
                )
            else:
                assert answer.headers["content-type"] == expected.headers["content-type"]
                assert answer.headers.get("etag") == expected.headers.get("etag")
    assert route.seen == []


async def test_the_status_page_is_answered_directly_as_the_route_answers_it(
    running: RunningApp, routes_only: RunningApp, settings: Settings
):
    resident, unbound = await running.api.registered(name="孙七"), await running.api.sign_in()
    first = await routes_only.client.get("/v1/me/status", headers=resident.auth)
    etag = first.headers["etag"]
    owned: list[tuple[str, dict[str, str]]] = [
        ("/v1/me/status", resident.auth),
        ("/v1/me/status?lang=pt", resident.auth),
        ("/v1/me/status", {**resident.auth, "Accept-Language": "zh-HK, en;q=0.5"}),
        ("/v1/me/status", {**resident.auth, "If-None-Match": etag}),
        ("/v1/me/status", {**resident.auth, "If-None-Match": '"other"'}),
        ("/v1/me/status", {**resident.auth, "Cookie": "yk_seen=12; other=1"}),
        ("/v1/me/status", unbound.auth),
        ("/v1/me/status", {}),
        ("/v1/me/status", {"Authorization": "Bearer forged"}),
    ]
    # A query the handler does not own goes to the route: its 422, or FastAPI's reading of a
    # repeated parameter.
    handed: list[tuple[str, dict[str, str]]] = [
        ("/v1/me/status?lang=xx", resident.auth),
        ("/v1/me/status?lang=en&lang=pt", resident.auth),
        ("/v1/me/status?other=1", resident.auth),
    ]
    route = Route()
    async with table_client(running, settings, route) as fast:
        for target, headers in owned:
            answer = await fast.get(target, headers=headers)
            expected = await routes_only.client.get(target, headers=headers)
            assert answer.status_code == expected.status_code, (target, headers, answer.text)
            assert answer.content == expected.content
            for name in ("content-type", "etag", "cache-control", "vary", "www-authenticate"):
                assert answer.headers.get(name) == expected.headers.get(name), (target, name)
        assert route.seen == []
        for target, headers in handed:
            assert (await fast.get(target, headers=headers)).status_code == 599
    assert [path for path, _ in route.seen] == ["/v1/me/status"] * len(handed)
    statuses = [(await running.client.get(t, headers=h)).status_code for t, h in owned]
    assert statuses == [200, 200, 200, 304, 200, 200, 404, 401, 401]
    assert (await running.client.get(handed[0][0], headers=resident.auth)).status_code == 422
    both = await running.client.get(handed[1][0], headers=resident.auth)
    assert (
        both.json()["language"]
        == (await routes_only.client.get(handed[1][0], headers=resident.auth)).json()["language"]
    )


async def test_a_bundle_sync_is_answered_directly_as_the_route_answers_it(
    running: RunningApp, routes_only: RunningApp, settings: Settings
):
    key = await running.checkpoint_key()
    gate = {"Authorization": f"Bearer {key}"}
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    first = await routes_only.client.get("/v1/trust-bundle", headers=gate)
    assert first.status_code == 200, first.text
    owned: list[tuple[str, dict[str, str]]] = [
        ("/v1/trust-bundle", gate),
        ("/v1/trust-bundle", {**gate, "If-None-Match": first.headers["etag"]}),
        ("/v1/trust-bundle", {**gate, "If-None-Match": '"v0", *'}),
        ("/v1/trust-bundle?since=1", gate),
        ("/v1/trust-bundle?since=2147483647", gate),
        ("/v1/trust-bundle", {"Authorization": f"Bearer {wrong}"}),
    ]
    handed: list[tuple[str, dict[str, str]]] = [
        ("/v1/trust-bundle", {}),
        ("/v1/trust-bundle", {"Authorization": "Bearer not-a-key"}),
        ("/v1/trust-bundle?since=0", gate),
        ("/v1/trust-bundle?since=2147483648", gate),
        ("/v1/trust-bundle?since=01", gate),
        ("/v1/trust-bundle?since=1&since=2", gate),
    ]
    route = Route()
    async with table_client(running, settings, route) as fast:
        for target, headers in owned:
            answer = await fast.get(target, headers=headers)
            expected = await routes_only.client.get(target, headers=headers)
            assert answer.status_code == expected.status_code, (target, headers, answer.text)
            if answer.status_code == 200:
                # ES256 signatures are randomised: a bundle signed anew differs in its bytes.
                assert answer.text.split(".")[:2] == expected.text.split(".")[:2]
            else:
                assert answer.content == expected.content
            for name in ("content-type", "etag", "cache-control", "www-authenticate"):
                assert answer.headers.get(name) == expected.headers.get(name), (target, name)
        assert route.seen == []
        for target, headers in handed:
            assert (await fast.get(target, headers=headers)).status_code == 599
    assert len(route.seen) == len(handed)
    statuses = [(await running.client.get(t, headers=h)).status_code for t, h in handed]
    assert statuses == [401, 401, 422, 422, 200, 200]


async def test_an_empty_list_of_appeals_or_family_is_answered_directly_and_a_full_one_by_the_route(
    running: RunningApp, routes_only: RunningApp, settings: Settings
):
    empty, full = await running.api.registered(), await running.api.registered(name="周八")
    await running.set_red(full)
    filed = await running.client.post(
        "/v1/me/appeals", headers=full.auth, json={"text": "I was never near that place"}
    )
    assert filed.status_code == 201, filed.text
    number, birth = random_prc_id(dt.datetime.now(dt.UTC).date() - dt.timedelta(days=365 * 5))
    kid = registry_person("周小八", "prc_id", number, birth)
    assert kid is not None
    running.registry.add(kid)
    added = await running.client.post(
        "/v1/me/dependants",
        headers=full.auth,
        json={"name": kid.name, "doc_type": "prc_id", "doc_number": number,
              "birth_date": birth.isoformat(), "relationship": "child"},
    )  # fmt: skip
    assert added.status_code == 201, added.text
    route = Route()
    async with table_client(running, settings, route) as fast:
        for path in ("/v1/me/appeals", "/v1/me/dependants"):
            for headers in (empty.auth, {}, {"Authorization": "Bearer forged"}):
                answer = await fast.get(path, headers=headers)
                expected = await routes_only.client.get(path, headers=headers)
                assert answer.status_code == expected.status_code, (path, answer.text)
                assert answer.content == expected.content
                assert answer.headers["content-type"] == expected.headers["content-type"]
            assert (await fast.get(path, headers=empty.auth)).json() == []
            assert route.seen == []
            assert (await fast.get(path, headers=full.auth)).status_code == 599
            assert (await fast.get(path + "?x=1", headers=empty.auth)).status_code == 599
            route.seen.clear()
    # Through the whole application: the route's answer, with what is in the list.
    appeals = await running.client.get("/v1/me/appeals", headers=full.auth)
    family = await running.client.get("/v1/me/dependants", headers=full.auth)
    assert [a["text"] for a in appeals.json()] == ["I was never near that place"]
    assert len(family.json()) == 1


@pytest.mark.parametrize("first", ["good", "junk"])
async def test_a_repeated_authorization_header_is_read_alike_on_both_paths(
    running: RunningApp, routes_only: RunningApp, first: str
):
    """The first value counts, as Starlette reads it, on the direct path and the ordinary one."""
    resident = await running.api.registered()
    gate = await running.checkpoint_key()
    code = await running.api.code(resident)
    tokens = {"good": (resident.token, gate), "junk": ("junk", "junk")}
    order = [first, "junk" if first == "good" else "good"]

    def auth(which: int) -> list[tuple[str, str]]:
        return [("Authorization", f"Bearer {tokens[name][which]}") for name in order]

    answers = {}
    for label, http in (("direct", running.client), ("routes", routes_only.client)):
        answers[label] = [
            await http.post("/v1/codes", headers=auth(0)),
            await http.get(f"/v1/codes/{code['code_id']}.png", headers=auth(0)),
            await http.post("/v1/verify", json={"qr_text": code["qr_text"]}, headers=auth(1)),
        ]
    statuses = [[r.status_code for r in answers[label]] for label in ("direct", "routes")]
    assert statuses[0] == statuses[1] == ([201, 200, 200] if first == "good" else [401] * 3)
    if first == "junk":
        assert [r.json() for r in answers["direct"]] == [r.json() for r in answers["routes"]]


async def test_a_bearer_token_with_extra_blanks_is_read_alike_on_both_paths(
    running: RunningApp, routes_only: RunningApp
):
    resident = await running.api.registered()
    spaced = {"Authorization": f"bearer   {resident.token}"}
    direct_answer = await running.client.post("/v1/codes", headers=spaced)
    route_answer = await routes_only.client.post("/v1/codes", headers=spaced)
    assert direct_answer.status_code == route_answer.status_code == 201


class Recording:
    """Stands in for the replicas: records the read-your-writes time each read was given, and
    leaves every read to the primary."""

    def __init__(self) -> None:
        self.seen: list[float | None] = []

    async def read_row(
        self, statement: Any, params: Any, *, seen: float | None, absent_is_answer: bool = False
    ) -> Any:
        self.seen.append(seen)
        raise NeedsPrimary("recording")

    async def read(self, work: Any, *, seen: float | None) -> Any:
        self.seen.append(seen)
        raise NeedsPrimary("recording")

    def figures(self) -> tuple[dict[str, float], dict[str, bool]]:
        return {}, {}


class Lagging(Recording):
    """A replica within the bound that holds nothing written after ``fresh_as_of``."""

    def __init__(self, fresh_as_of: float) -> None:
        super().__init__()
        self.fresh_as_of = fresh_as_of

    async def read_row(
        self, statement: Any, params: Any, *, seen: float | None, absent_is_answer: bool = False
    ) -> Any:
        self.seen.append(seen)
        if seen is not None and seen > self.fresh_as_of:
            raise NeedsPrimary("not fresh enough")
        if absent_is_answer:
            return None
        raise NeedsPrimary("not on the replica")


async def test_the_read_your_writes_cookie_is_read_alike_when_cookies_come_in_two_fields(
    running: RunningApp, routes_only: RunningApp
):
    resident = await running.api.registered()
    seen_ms = int(time.time() * 1000)
    split = [
        ("Authorization", f"Bearer {resident.token}"),
        ("Cookie", "theme=dark"),
        ("Cookie", f"yk_seen={seen_ms}"),
    ]
    fast, route = Recording(), Recording()
    running.context.replicas, routes_only.context.replicas = fast, route  # type: ignore[assignment]
    # A status kept in the process is read from no replica: keep nothing, as where there is no
    # notification connection (notices.py).
    for app in (running, routes_only):
        app.context.statuses.listening(False)
    try:
        answered = await running.client.get("/v1/me/status", headers=split)
        expected = await routes_only.client.get("/v1/me/status", headers=split)
    finally:
        running.context.replicas = routes_only.context.replicas = None
    assert answered.status_code == expected.status_code == 200
    assert route.seen[0] == seen_ms / 1000
    assert fast.seen == route.seen


async def test_an_appeal_just_filed_is_listed_though_a_lagging_replica_has_none(
    running: RunningApp,
):
    resident = await running.api.registered(name="吴九")
    await running.set_red(resident)
    filed = await running.client.post(
        "/v1/me/appeals", headers=resident.auth, json={"text": "I was never near that place"}
    )
    assert filed.status_code == 201
    seen_ms = int(time.time() * 1000) + 1
    with_cookie = [
        ("Authorization", f"Bearer {resident.token}"),
        ("Cookie", "theme=dark"),
        ("Cookie", f"yk_seen={seen_ms}"),
    ]
    lagging = Lagging(fresh_as_of=time.time() - 5)
    running.context.replicas = lagging  # type: ignore[assignment]
    try:
        # With the cookie (in a field of its own), and without one: the replica's "none" is
        # not the answer either way.
        listed = [
            await running.client.get("/v1/me/appeals", headers=with_cookie),
            await running.client.get("/v1/me/appeals", headers=resident.auth),
        ]
    finally:
        running.context.replicas = None
    assert [len(answer.json()) for answer in listed] == [1, 1]


async def test_a_bad_checkpoint_key_is_a_401_before_a_bad_since_is_a_422(
    running: RunningApp, routes_only: RunningApp
):
    key = await running.checkpoint_key()
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    for http in (running.client, routes_only.client):
        refused = await http.get(
            "/v1/trust-bundle?since=0", headers={"Authorization": f"Bearer {wrong}"}
        )
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "invalid_checkpoint_key"
        malformed = await http.get(
            "/v1/trust-bundle?since=0", headers={"Authorization": f"Bearer {key}"}
        )
        assert malformed.status_code == 422
