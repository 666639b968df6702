"""A resident reading their own status: colour, reasons in their language, when it lapses, the
latest test and vaccinations -- as decided from what the authorities' feeds sent."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conftest import RunningApp, make_settings, start_app
from support.api import Api, Resident
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.codec.keys import b64url_decode
from yuekang.config import Settings
from yuekang.health_status.models import StatusChange


@pytest.fixture(params=[True, False], ids=["fast-lane", "routes-only"])
def settings(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Settings:
    """Every test here runs with the fast lane (yuekang.fastlane) and without it: both must
    answer alike."""
    return make_settings(database_url, tmp_path / "keys", fast_lane=request.param)


LOCAL = dt.timezone(dt.timedelta(hours=8))
GREEN = {
    "zh-Hans": "未发现风险，绿码。",
    "zh-Hant": "未發現風險，綠碼。",
    "en": "No risk found: green.",
    "pt": "Nenhum risco encontrado: verde.",
}


def local_today(clock: ManualClock) -> dt.date:
    return clock.now().astimezone(LOCAL).date()


def local_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), LOCAL)


def person(resident: Resident) -> dict[str, Any]:
    assert resident.doc_number is not None
    return {"doc_type": "prc_id", "doc_number": resident.doc_number}


async def push(app: RunningApp, kind: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Send one NDJSON batch as an authority would; every row must be accepted."""
    key = await app.feed_key(kind)
    body = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    response = await app.client.post(
        f"/v1/feeds/{kind}",
        content=body.encode(),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/x-ndjson",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    assert response.status_code == 201, response.text
    batch: dict[str, Any] = response.json()
    assert batch["rows_rejected"] == 0, batch["errors"]
    return batch


async def my_status(api: Api, resident: Resident, **kwargs: Any) -> dict[str, Any]:
    response = await api.client.get("/v1/me/status", headers=resident.auth, **kwargs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def claims(qr_text: str) -> dict[str, Any]:
    payload = qr_text.removeprefix("YK1:").split(".")[1]
    decoded: dict[str, Any] = json.loads(b64url_decode(payload))
    return decoded


async def test_a_new_resident_is_green_explained_in_simplified_chinese(api: Api):
    resident = await api.registered()
    status = await my_status(api, resident)
    assert status["status"] == "green"
    assert status["reason_codes"] == []
    assert status["reasons"] == []
    assert status["explanation"] == [GREEN["zh-Hans"]]
    assert status["language"] == "zh-Hans"
    assert status["valid_until"] is None
    assert status["can_appeal"] is False
    assert status["nat"] is None
    assert status["vaccination"] == {"doses": 0, "last_dose_on": None}
    assert status["rule_set_version"] == "gd-2021.3"
    assert status["hotline"] is None  # none set


async def test_the_helpline_set_for_the_deployment_comes_with_the_status(
    database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    settings = make_settings(database_url, tmp_path / "keys", hotline="12345")
    async for running in start_app(settings, clock, sms):
        resident = await running.api.registered()
        assert (await my_status(running.api, resident))["hotline"] == "12345"


async def test_the_explanation_follows_lang_then_accept_language(api: Api):
    resident = await api.registered()
    for kwargs, language in (
        ({"params": {"lang": "en"}}, "en"),
        ({"headers": {"Accept-Language": "pt-PT"}}, "pt"),
        ({"headers": {"Accept-Language": "zh-HK"}}, "zh-Hant"),
        ({"headers": {"Accept-Language": "fr-FR, en;q=0.5"}}, "en"),
        ({"params": {"lang": "pt"}, "headers": {"Accept-Language": "en"}}, "pt"),
    ):
        headers = {**resident.auth, **kwargs.get("headers", {})}
        response = await api.client.get(
            "/v1/me/status", headers=headers, params=kwargs.get("params")
        )
        assert response.status_code == 200, response.text
        assert response.json()["language"] == language, kwargs
        assert response.json()["explanation"] == [GREEN[language]], kwargs
    unknown = await api.client.get(
        "/v1/me/status", headers=resident.auth, params={"lang": "klingon"}
    )
    assert unknown.status_code == 422


async def test_a_secondary_contact_is_yellow_until_local_midnight_fourteen_days_on(
    running: RunningApp, api: Api, clock: ManualClock
):
    resident = await api.registered()
    start = local_today(clock) - dt.timedelta(days=1)
    batch = await push(
        running,
        "cases",
        [{**person(resident), "category": "secondary_contact", "start_date": start.isoformat()}],
    )
    assert batch["statuses_changed"] == 1
    status = await my_status(api, resident)
    assert status["status"] == "yellow"
    assert status["reason_codes"] == ["secondary_contact"]
    assert status["can_appeal"] is True
    lapse = local_midnight(start + dt.timedelta(days=14))
    assert dt.datetime.fromisoformat(status["valid_until"]) == lapse
    [reason] = status["reasons"]
    assert reason["reason"] == "secondary_contact"
    assert reason["status"] == "yellow"
    assert dt.datetime.fromisoformat(reason["since"]) == local_midnight(start)
    assert dt.datetime.fromisoformat(reason["until"]) == lapse
    [sentence] = status["explanation"]
    assert start.isoformat() in sentence
    assert "0/2" in sentence
    # The last day it holds, in the resident's words.
    assert (start + dt.timedelta(days=13)).isoformat() in sentence
    [english] = (await my_status(api, resident, params={"lang": "en"}))["explanation"]
    assert f"on {start.isoformat()}" in english
    assert "(0/2 done)" in english
    assert f"until {(start + dt.timedelta(days=13)).isoformat()}" in english


async def test_the_latest_nat_result_is_shown_with_its_display_bucket(
    running: RunningApp, api: Api, clock: ManualClock
):
    resident = await api.registered()
    now = clock.now()
    older = now - dt.timedelta(hours=30)
    latest = now - dt.timedelta(hours=2)
    await push(
        running,
        "nat-results",
        [
            {**person(resident), "sampled_at": t.isoformat(), "result": "negative", "lab": lab}
            for t, lab in ((latest, "Guangzhou KingMed"), (older, "Shenzhen BGI"))
        ],
    )
    status = await my_status(api, resident)
    assert status["status"] == "green"
    assert status["nat"]["latest_result"] == "negative"
    assert dt.datetime.fromisoformat(status["nat"]["latest_sampled_at"]) == latest
    assert status["nat"]["negative_within_hours"] == 24
    # The bucket is worked out at reading time: a day later the same test is "within 48 hours".
    clock.advance(23 * 3600)
    resident.token = (await api.sign_in(resident.phone)).token
    assert (await my_status(api, resident))["nat"]["negative_within_hours"] == 48


async def test_vaccinations_are_counted_with_the_last_dose_date(
    running: RunningApp, api: Api, clock: ManualClock
):
    resident = await api.registered()
    today = local_today(clock)
    days = [today - dt.timedelta(days=d) for d in (300, 270, 60)]
    await push(
        running,
        "vaccinations",
        [
            {**person(resident), "dose": dose, "date": day.isoformat(), "product": "CoronaVac"}
            for dose, day in enumerate(days, start=1)
        ],
    )
    status = await my_status(api, resident)
    assert status["status"] == "green"
    assert status["vaccination"] == {"doses": 3, "last_dose_on": days[-1].isoformat()}


async def test_a_new_code_carries_the_nat_bucket_and_the_dose_count(
    running: RunningApp, api: Api, clock: ManualClock
):
    resident = await api.registered()
    before = claims((await api.code(resident))["qr_text"])
    assert "nt" not in before
    assert "vx" not in before
    today = local_today(clock)
    sampled = clock.now() - dt.timedelta(hours=2)
    await push(
        running,
        "nat-results",
        [{**person(resident), "sampled_at": sampled.isoformat(), "result": "negative", "lab": "L"}],
    )
    await push(
        running,
        "vaccinations",
        [
            {
                **person(resident),
                "dose": dose,
                "date": (today - dt.timedelta(days=100 - dose * 30)).isoformat(),
                "product": "BBIBP-CorV",
            }
            for dose in (1, 2, 3)
        ],
    )
    code = await api.code(resident)
    assert code["status"] == "green"
    after = claims(code["qr_text"])
    assert after["st"] == "green"
    assert after["nt"] == 24
    assert after["vx"] == 3


async def test_no_status_before_binding_and_none_without_a_token(api: Api):
    resident = await api.sign_in()
    unbound = await api.client.get("/v1/me/status", headers=resident.auth)
    assert unbound.status_code == 404
    assert unbound.json()["error"]["code"] == "identity_not_bound"
    anonymous = await api.client.get("/v1/me/status")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    forged = await api.client.get(
        "/v1/me/status", headers={"Authorization": "Bearer not-a-session-token"}
    )
    assert forged.status_code == 401


async def test_a_yellow_status_lapses_to_green_with_no_new_fact_and_history_is_kept(
    running: RunningApp, api: Api, clock: ManualClock
):
    resident = await api.registered()
    start = local_today(clock)
    await push(
        running,
        "cases",
        [{**person(resident), "category": "secondary_contact", "start_date": start.isoformat()}],
    )
    yellow = await my_status(api, resident)
    assert yellow["status"] == "yellow"
    lapse = dt.datetime.fromisoformat(yellow["valid_until"])
    assert lapse == local_midnight(start + dt.timedelta(days=14))

    # A session lasts hours, not weeks: sign in again after each jump of the clock.
    clock.set(lapse - dt.timedelta(seconds=1))
    resident.token = (await api.sign_in(resident.phone)).token
    assert (await my_status(api, resident))["status"] == "yellow"

    clock.set(lapse)
    resident.token = (await api.sign_in(resident.phone)).token
    green = await my_status(api, resident)
    assert green["status"] == "green"
    assert green["reason_codes"] == []
    assert green["explanation"] == [GREEN["zh-Hans"]]
    assert green["valid_until"] is None
    assert green["can_appeal"] is False
    assert dt.datetime.fromisoformat(green["decided_at"]) == lapse
    assert (await api.code(resident))["status"] == "green"

    resident_id = uuid.UUID(
        (await api.client.get("/v1/me", headers=resident.auth)).json()["resident_id"]
    )
    async with running.context.sessionmaker() as session:
        changes = (
            (
                await session.execute(
                    select(StatusChange)
                    .where(StatusChange.resident_id == resident_id)
                    .order_by(StatusChange.id)
                )
            )
            .scalars()
            .all()
        )
    assert [(c.old_status, c.new_status) for c in changes] == [
        (None, "green"),
        ("green", "yellow"),
        ("yellow", "green"),
    ]
    assert changes[1].detail["reason_codes"] == ["secondary_contact"]
    assert changes[1].actor.startswith("feed:")
    assert changes[2].detail["reason_codes"] == []
    assert changes[2].actor == "system:rules"
    assert changes[2].at == lapse


async def test_the_status_answers_304_until_something_in_it_changes(
    running: RunningApp, api: Api, clock: ManualClock
):
    # A page polls its status; a browser revalidates with If-None-Match by itself.
    resident = await api.registered()
    first = await api.client.get("/v1/me/status", headers=resident.auth)
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, no-cache"
    assert first.headers["Vary"] == "Accept-Language"

    async def again(**headers: str) -> Any:
        return await api.client.get(
            "/v1/me/status", headers={**resident.auth, "If-None-Match": etag, **headers}
        )

    unchanged = await again()
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    assert unchanged.headers["ETag"] == etag
    assert (await again(**{"If-None-Match": f'"other", {etag}'})).status_code == 304
    # Another language is another answer.
    english = await again(**{"Accept-Language": "en"})
    assert english.status_code == 200
    assert english.json()["explanation"] == [GREEN["en"]]
    assert english.headers["ETag"] != etag

    clock.advance(60)
    await running.set_red(resident)
    red = await again()
    assert red.status_code == 200
    assert red.json()["status"] == "red"
    assert red.headers["ETag"] != etag


async def test_the_status_etag_moves_with_the_test_result_display_bucket(
    running: RunningApp, api: Api, clock: ManualClock
):
    # Nothing stored changes, but "negative within 24 hours" becomes "within 48 hours".
    resident = await api.registered()
    sampled = clock.now() - dt.timedelta(hours=2)
    await push(
        running,
        "nat-results",
        [{**person(resident), "sampled_at": sampled.isoformat(), "result": "negative", "lab": "L"}],
    )
    first = await api.client.get("/v1/me/status", headers=resident.auth)
    assert first.json()["nat"]["negative_within_hours"] == 24
    revalidate = {"If-None-Match": first.headers["ETag"]}
    same = await api.client.get("/v1/me/status", headers={**resident.auth, **revalidate})
    assert same.status_code == 304
    clock.advance(23 * 3600)
    resident.token = (await api.sign_in(resident.phone)).token
    later = await api.client.get("/v1/me/status", headers={**resident.auth, **revalidate})
    assert later.status_code == 200
    assert later.json()["nat"]["negative_within_hours"] == 48
