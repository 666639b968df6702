"""The fast lane (yuekang.fastlane) answers the ordinary success of online verification and of a
cached image itself, and hands everything else to the routes with the request intact."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import httpx

from conftest import RunningApp
from yuekang.fastlane import FastLane
from yuekang.health_codes.endpoints import BATCH_DECLINED


class Route:
    """Stands in for FastAPI behind the lane: records what reached it, answers 599."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self.marked: list[bool] = []
        """Whether the lane told the route what the database already said."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append((scope["path"], body))
        self.marked.append(bool(scope.get(BATCH_DECLINED)))
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def lane_client(running: RunningApp, route: Route) -> httpx.AsyncClient:
    lane = FastLane(route)
    app = SimpleNamespace(state=SimpleNamespace(context=running.context))

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        await lane({**scope, "app": app}, receive, send)

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://testserver")


async def test_a_good_scan_is_answered_by_the_lane_as_the_route_answers_it(running: RunningApp):
    gate = {"Authorization": f"Bearer {await running.checkpoint_key()}"}
    code = await running.api.code(await running.api.registered(name="王五"))
    route = Route()
    async with lane_client(running, route) as lane:
        fast = await lane.post("/v1/verify", json={"qr_text": code["qr_text"]}, headers=gate)
        with_charset = await lane.post(
            "/v1/verify",
            content=json.dumps({"qr_text": code["qr_text"]}),
            headers={**gate, "Content-Type": "application/json; charset=utf-8"},
        )
    assert with_charset.status_code == 200
    slow = await running.client.post("/v1/verify", json={"qr_text": code["qr_text"]}, headers=gate)
    assert route.seen == []
    assert fast.status_code == slow.status_code == 200
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert fast.json() == slow.json()
    assert fast.json()["masked_name"] == "*五"


async def test_anything_else_reaches_the_route_with_its_body_intact(running: RunningApp):
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
    async with lane_client(running, route) as lane:
        for headers, body in cases:
            response = await lane.post(
                "/v1/verify", content=body, headers={**headers, "Content-Type": "application/json"}
            )
            answers.append(response)
    # The key the database refused is answered by the lane, as the route answers it; the rest
    # reach the route.
    refused = answers[0]
    by_route = await running.client.post(
        "/v1/verify", content=good_body, headers={**cases[0][0], "Content-Type": "application/json"}
    )
    assert refused.status_code == by_route.status_code == 401
    assert refused.json() == by_route.json()
    assert refused.headers["www-authenticate"] == by_route.headers["www-authenticate"]
    assert [r.status_code for r in answers[1:]] == [599] * 4
    assert route.seen == [("/v1/verify", body) for _, body in cases[1:]]


async def test_only_a_cached_image_asked_for_by_its_owner_is_answered_by_the_lane(
    running: RunningApp,
):
    owner, stranger = await running.api.registered(), await running.api.registered()
    code = await running.api.code(owner)
    path = f"/v1/codes/{code['code_id']}.png"
    route = Route()
    async with lane_client(running, route) as lane:
        assert (await lane.get(path, headers=owner.auth)).status_code == 599  # not cached yet
        rendered = await running.client.get(path, headers=owner.auth)
        fast = await lane.get(path, headers=owner.auth)
        assert (fast.status_code, fast.content) == (200, rendered.content)
        assert {k: fast.headers[k] for k in ("content-type", "etag")} == {
            k: rendered.headers[k] for k in ("content-type", "etag")
        }
        again = await lane.get(path, headers={**owner.auth, "If-None-Match": fast.headers["etag"]})
        assert again.status_code == 304
        for headers in (stranger.auth, {}, {"Authorization": "Bearer forged"}):
            assert (await lane.get(path, headers=headers)).status_code == 599
    assert [seen for seen, _ in route.seen] == [path] * 4


async def test_an_ordinary_issuance_is_answered_by_the_lane_and_a_keyed_one_by_the_route(
    running: RunningApp,
):
    resident = await running.api.registered(name="赵六")
    route = Route()
    async with lane_client(running, route) as lane:
        fast = await lane.post("/v1/codes", headers=resident.auth)
        keyed = await lane.post("/v1/codes", headers={**resident.auth, "Idempotency-Key": "k-1"})
        unsigned = await lane.post("/v1/codes")
        unbound = await lane.post("/v1/codes", headers=(await running.api.sign_in()).auth)
    slow = await running.client.post("/v1/codes", headers=resident.auth)
    assert (fast.status_code, keyed.status_code, unsigned.status_code) == (201, 599, 599)
    assert unbound.status_code == 599
    assert [path for path, _ in route.seen] == ["/v1/codes"] * 3
    # The batch declined the person with no identity: the route goes straight to the single path.
    assert route.marked == [False, False, True]
    assert fast.headers["cache-control"] == slow.headers["cache-control"] == "no-store"
    assert set(fast.json()) == set(slow.json())
    assert fast.json()["status"] == slow.json()["status"] == "green"
    assert fast.json()["png_url"] == f"http://testserver/v1/codes/{fast.json()['code_id']}.png"
    verdict = await running.client.post(
        "/v1/verify",
        json={"qr_text": fast.json()["qr_text"]},
        headers={"Authorization": f"Bearer {await running.checkpoint_key()}"},
    )
    assert verdict.json()["masked_name"] == "*六"
