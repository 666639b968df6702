"""Feed batches change what residents see: statuses, codes, verification -- once, and only once."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from conftest import RunningApp
from feeds.feedkit import case as case_row
from feeds.feedkit import (
    days_ago,
    doc,
    error_code,
    local_time,
    my_status,
    nat,
    ndjson,
    post,
    push,
    risk_area,
    today,
    travel,
    verify,
)
from support.api import Api, Resident, random_prc_id


async def _history(running: RunningApp, resident: Resident) -> list[dict[str, Any]]:
    """The resident's status changes, as staff read them (newest first)."""
    me = await running.client.get("/v1/me", headers=resident.auth)
    assert me.status_code == 200, me.text
    staff = {"Authorization": f"Bearer {await running.operator_token()}"}
    response = await running.client.get(
        f"/v1/admin/residents/{me.json()['resident_id']}/status-history",
        params={"reason": "feed test"},
        headers=staff,
    )
    assert response.status_code == 200, response.text
    changes: list[dict[str, Any]] = response.json()
    return changes


async def test_a_close_contact_revokes_the_live_code_and_the_next_one_is_red(
    running: RunningApp, api: Api
):
    resident = await api.registered()
    green = await api.code(resident)
    assert green["status"] == "green"
    key = await running.feed_key("cases")

    batch = await push(
        running, key, "cases", ndjson(case_row(resident, today(running).isoformat()))
    )

    assert batch["kind"] == "cases"
    assert (batch["rows_total"], batch["rows_accepted"], batch["rows_rejected"]) == (1, 1, 0)
    assert batch["errors"] == []
    assert batch["persons_recomputed"] == 1
    assert batch["statuses_changed"] == 1
    assert batch["codes_revoked"] == 1
    verdict = await verify(running, green["qr_text"])
    assert verdict["verdict"] == "invalid"
    assert [r["code"] for r in verdict["reasons"]] == ["revoked"]
    assert (await api.code(resident))["status"] == "red"
    status = await my_status(running, resident)
    assert status["status"] == "red"
    assert status["reason_codes"] == ["close_contact"]
    assert status["can_appeal"] is True


async def test_facts_about_someone_not_registered_yet_wait_for_their_binding(
    running: RunningApp, api: Api
):
    doc_number, birth_date = random_prc_id()
    key = await running.feed_key("cases")

    batch = await push(running, key, "cases", ndjson(case_row(doc_number, days_ago(running, 1))))

    assert batch["rows_accepted"] == 1
    assert batch["persons_recomputed"] == 0
    assert batch["statuses_changed"] == 0
    resident = await api.sign_in()
    bound = await api.bind(resident, doc_number=doc_number, birth_date=birth_date)
    assert bound.status_code == 201, bound.text
    assert (await api.code(resident))["status"] == "red"
    assert (await my_status(running, resident))["reason_codes"] == ["close_contact"]
    # Someone else registered at the same time is not affected.
    other = await api.registered()
    assert (await api.code(other))["status"] == "green"


async def test_a_sent_batch_sent_again_answers_the_first_result_and_applies_nothing(
    running: RunningApp, api: Api, clock
):
    resident = await api.registered()
    key = await running.feed_key()
    body = ndjson(case_row(resident, today(running).isoformat()))
    first = await post(running, key, "cases", body, idempotency_key="cases-2024-001")
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    decided = await my_status(running, resident)
    history = await _history(running, resident)
    assert [c["new_status"] for c in history] == ["red", "green"]  # newest first

    clock.advance(120)
    again = await post(running, key, "cases", body, idempotency_key="cases-2024-001")

    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again.json()["statuses_changed"] == 1
    assert (await my_status(running, resident))["decided_at"] == decided["decided_at"]
    assert await _history(running, resident) == history
    stored = await running.client.get(
        f"/v1/feeds/batches/{first.json()['batch_id']}", headers={"Authorization": f"Bearer {key}"}
    )
    assert stored.status_code == 200
    assert stored.json() == first.json()


async def test_a_key_sent_again_with_another_body_applies_nothing_of_it(
    running: RunningApp, api: Api
):
    first_person = await api.registered()
    second_person = await api.registered()
    key = await running.feed_key("cases")
    first = await push(
        running,
        key,
        "cases",
        ndjson(case_row(first_person, today(running).isoformat())),
        idempotency_key="k",
    )

    again = await post(
        running,
        key,
        "cases",
        ndjson(case_row(second_person, today(running).isoformat())),
        idempotency_key="k",
    )

    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["batch_id"] == first["batch_id"]
    assert (await my_status(running, first_person))["status"] == "red"
    assert (await my_status(running, second_person))["status"] == "green"


async def test_a_key_used_for_one_kind_is_refused_for_another(running: RunningApp, api: Api):
    resident = await api.registered()
    key = await running.feed_key()
    await push(running, key, "cases", ndjson(case_row(resident, today(running).isoformat())))

    other_kind = await post(
        running,
        key,
        "nat-results",
        ndjson(nat(resident, running.context.clock.now() - dt.timedelta(hours=1))),
    )

    assert error_code(other_kind) == (409, "idempotency_key_reused")
    assert (await my_status(running, resident))["nat"] is None


async def test_two_clients_may_use_the_same_key_and_read_only_their_own_batches(
    running: RunningApp, api: Api
):
    first_person = await api.registered()
    second_person = await api.registered()
    hospital = await running.feed_key("cases")
    cdc = await running.feed_key("cases")
    start = today(running).isoformat()

    first = await push(
        running, hospital, "cases", ndjson(case_row(first_person, start)), idempotency_key="2024-1"
    )
    second = await push(
        running, cdc, "cases", ndjson(case_row(second_person, start)), idempotency_key="2024-1"
    )

    assert first["batch_id"] != second["batch_id"]
    assert (await my_status(running, first_person))["status"] == "red"
    assert (await my_status(running, second_person))["status"] == "red"
    as_hospital = {"Authorization": f"Bearer {hospital}"}
    own = await running.client.get(f"/v1/feeds/batches/{first['batch_id']}", headers=as_hospital)
    assert own.status_code == 200
    assert own.json()["batch_id"] == first["batch_id"]
    theirs = await running.client.get(
        f"/v1/feeds/batches/{second['batch_id']}", headers=as_hospital
    )
    assert error_code(theirs) == (404, "batch_not_found")


async def test_the_same_fact_again_changes_nothing_and_an_end_date_turns_green(
    running: RunningApp, api: Api
):
    resident = await api.registered()
    key = await running.feed_key("cases")
    start = days_ago(running, 5)
    first = await push(
        running, key, "cases", ndjson(case_row(resident, start)), idempotency_key="a"
    )
    assert first["statuses_changed"] == 1
    red = await api.code(resident)
    assert red["status"] == "red"
    history = await _history(running, resident)

    resent = await push(
        running, key, "cases", ndjson(case_row(resident, start)), idempotency_key="b"
    )

    assert resent["rows_accepted"] == 1
    assert resent["statuses_changed"] == 0
    assert resent["codes_revoked"] == 0
    assert await _history(running, resident) == history
    assert (await verify(running, red["qr_text"]))["verdict"] == "valid"

    ended = await push(
        running,
        key,
        "cases",
        ndjson(case_row(resident, start, end=days_ago(running, 1))),
        idempotency_key="c",
    )

    assert ended["statuses_changed"] == 1
    assert ended["codes_revoked"] == 0  # a better status leaves the red code to expire
    status = await my_status(running, resident)
    assert status["status"] == "green"
    assert status["reason_codes"] == []
    assert (await api.code(resident))["status"] == "green"


async def test_the_same_test_result_with_another_utc_offset_is_the_same_fact(
    running: RunningApp, api: Api
):
    resident = await api.registered()
    key = await running.feed_key("nat-results")
    sampled = running.context.clock.now().replace(microsecond=0) - dt.timedelta(hours=3)
    first = await push(
        running, key, "nat-results", ndjson(nat(resident, sampled)), idempotency_key="a"
    )
    assert first["persons_recomputed"] == 1

    utc = sampled.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    resent = await push(
        running, key, "nat-results", ndjson(nat(resident, utc)), idempotency_key="b"
    )

    assert resent["rows_accepted"] == 1
    assert resent["persons_recomputed"] == 0
    assert resent["statuses_changed"] == 0
    status = await my_status(running, resident)
    assert status["nat"]["latest_result"] == "negative"
    assert dt.datetime.fromisoformat(status["nat"]["latest_sampled_at"]) == sampled


async def test_the_last_of_repeated_rows_in_one_batch_wins(running: RunningApp, api: Api):
    resident = await api.registered()
    key = await running.feed_key("nat-results")
    sampled = running.context.clock.now() - dt.timedelta(hours=5)

    batch = await push(
        running,
        key,
        "nat-results",
        ndjson(nat(resident, sampled, "negative"), nat(resident, sampled, "positive")),
    )

    assert batch["rows_accepted"] == 2
    status = await my_status(running, resident)
    assert status["status"] == "red"
    assert status["reason_codes"] == ["positive_nat"]
    assert status["nat"]["latest_result"] == "positive"


async def test_risk_areas_turn_travellers_red_or_yellow_and_two_negative_days_clear_yellow(
    running: RunningApp, api: Api
):
    # Guangzhou (4401xx) is this test's city: no other feed test puts anyone there.
    in_baiyun = await api.registered()  # travelled in 440111, 白云区
    in_tianhe = await api.registered()  # travelled in 440106, 天河区
    key = await running.feed_key()
    trip = today(running) - dt.timedelta(days=2)
    trips = await push(
        running,
        key,
        "travel",
        ndjson(
            travel(in_baiyun, "440111", trip.isoformat()),
            travel(in_tianhe, "440106", trip.isoformat()),
        ),
        idempotency_key="trips",
    )
    assert trips["persons_recomputed"] == 2
    assert trips["statuses_changed"] == 0
    baiyun_code = await api.code(in_baiyun)
    tianhe_code = await api.code(in_tianhe)
    assert baiyun_code["status"] == tianhe_code["status"] == "green"

    medium = await push(
        running,
        key,
        "risk-areas",
        ndjson(risk_area("440106", "medium", days_ago(running, 5))),
        idempotency_key="areas-1",
    )

    # A medium-risk area makes everyone who was in that city on or after its start yellow.
    assert (medium["persons_recomputed"], medium["statuses_changed"]) == (2, 2)
    assert medium["codes_revoked"] == 2
    for person, code in ((in_baiyun, baiyun_code), (in_tianhe, tianhe_code)):
        status = await my_status(running, person)
        assert status["status"] == "yellow"
        assert status["reason_codes"] == ["risk_city_arrival"]
        assert (await verify(running, code["qr_text"]))["verdict"] == "invalid"
    yellow_code = await api.code(in_baiyun)
    assert yellow_code["status"] == "yellow"

    high = await push(
        running,
        key,
        "risk-areas",
        ndjson(risk_area("440111", "high", (trip - dt.timedelta(days=1)).isoformat())),
        idempotency_key="areas-2",
    )

    assert high["statuses_changed"] == 1
    assert high["codes_revoked"] == 1
    status = await my_status(running, in_baiyun)
    assert status["status"] == "red"
    assert status["reason_codes"] == ["high_risk_area_arrival", "risk_city_arrival"]
    verdict = await verify(running, yellow_code["qr_text"])
    assert [r["code"] for r in verdict["reasons"]] == ["revoked"]
    assert (await api.code(in_baiyun))["status"] == "red"
    assert (await my_status(running, in_tianhe))["status"] == "yellow"

    # Two negative tests count only on two different local (UTC+8) days: 01:00 and 20:00 on the
    # travel day are two UTC days but one local day.
    travellers = (in_baiyun, in_tianhe)
    same_day = await push(
        running,
        key,
        "nat-results",
        ndjson(
            *(nat(p, local_time(trip, 1)) for p in travellers),
            *(nat(p, local_time(trip, 20)) for p in travellers),
        ),
        idempotency_key="nat-1",
    )
    assert same_day["statuses_changed"] == 0
    assert (await my_status(running, in_tianhe))["status"] == "yellow"

    next_day = await push(
        running,
        key,
        "nat-results",
        ndjson(
            *(nat(p, local_time(trip + dt.timedelta(days=1), 9)) for p in (in_baiyun, in_tianhe))
        ),
        idempotency_key="nat-2",
    )

    assert next_day["statuses_changed"] == 2
    cleared = await my_status(running, in_tianhe)
    assert cleared["status"] == "green"
    assert cleared["reason_codes"] == []
    assert (await api.code(in_tianhe))["status"] == "green"
    # Negative tests do not clear a high-risk-area arrival.
    still = await my_status(running, in_baiyun)
    assert still["status"] == "red"
    assert still["reason_codes"] == ["high_risk_area_arrival"]


async def test_a_risk_area_only_counts_for_travel_on_or_after_its_start(
    running: RunningApp, api: Api
):
    # Chongqing's own districts (500101 万州区) are this test's place.
    before = await api.registered()
    key = await running.feed_key()
    await push(
        running,
        key,
        "travel",
        ndjson(travel(before, "500101", days_ago(running, 4))),
        idempotency_key="trip",
    )

    areas = await push(
        running,
        key,
        "risk-areas",
        ndjson(risk_area("500101", "high", days_ago(running, 3))),
        idempotency_key="areas",
    )

    assert areas["statuses_changed"] == 0
    assert (await my_status(running, before))["status"] == "green"


async def test_a_risk_area_in_a_municipality_reaches_travellers_anywhere_in_it(
    running: RunningApp, api: Api
):
    # Shanghai is this test's city: the whole municipality is one "city" for the yellow rule.
    chongming = await api.registered()
    key = await running.feed_key()
    await push(
        running,
        key,
        "travel",
        ndjson(travel(chongming, "310230", days_ago(running, 1))),
        idempotency_key="trip",
    )

    areas = await push(
        running,
        key,
        "risk-areas",
        ndjson(risk_area("310101", "medium", days_ago(running, 3))),
        idempotency_key="areas",
    )

    status = await my_status(running, chongming)
    assert status["status"] == "yellow"
    assert status["reason_codes"] == ["risk_city_arrival"]
    assert areas["statuses_changed"] == 1


async def test_the_same_batch_sent_twice_at_once_is_applied_once(running: RunningApp, api: Api):
    resident = await api.registered()
    key = await running.feed_key("cases")
    body = ndjson(case_row(resident, today(running).isoformat()))

    answers = await asyncio.gather(
        *(post(running, key, "cases", body, idempotency_key="retry") for _ in range(2))
    )

    assert sorted(a.status_code for a in answers) == [200, 201]
    replayed = next(a for a in answers if a.status_code == 200)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert len({a.json()["batch_id"] for a in answers}) == 1
    history = await _history(running, resident)
    assert [c["new_status"] for c in history] == ["red", "green"]  # bound, then red -- once


async def test_a_document_number_is_matched_however_it_is_typed(running: RunningApp, api: Api):
    spaced = await api.registered()
    full_width = await api.registered()
    key = await running.feed_key("cases")
    number = doc(spaced)
    typed = number[:6] + " " + number[6:14] + " " + number[14:].lower()
    wide = doc(full_width).translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789X"})

    batch = await push(
        running,
        key,
        "cases",
        ndjson(case_row(typed, today(running).isoformat()), case_row(wide, days_ago(running, 1))),
    )

    assert batch["errors"] == []
    assert batch["persons_recomputed"] == 2
    assert (await my_status(running, spaced))["status"] == "red"
    assert (await my_status(running, full_width))["status"] == "red"


async def test_a_close_contact_lasts_fourteen_local_days(running: RunningApp, api: Api, clock):
    resident = await api.registered()
    key = await running.feed_key("cases")
    start = today(running)
    await push(running, key, "cases", ndjson(case_row(resident, start.isoformat())))
    lapse = local_time(start + dt.timedelta(days=14), 0)
    status = await my_status(running, resident)
    assert dt.datetime.fromisoformat(status["valid_until"]) == lapse

    clock.set(lapse - dt.timedelta(seconds=1))
    resident = await api.sign_in(resident.phone)  # the first session has expired by now
    assert (await my_status(running, resident))["status"] == "red"
    clock.set(lapse)
    status = await my_status(running, resident)
    assert status["status"] == "green"
    assert status["reason_codes"] == []
    assert (await api.code(resident))["status"] == "green"


async def test_a_risk_area_lifted_early_turns_its_travellers_green(running: RunningApp, api: Api):
    # Wuhan (4201xx) is this test's city.
    resident = await api.registered()
    key = await running.feed_key()
    await push(
        running,
        key,
        "travel",
        ndjson(travel(resident, "420106", days_ago(running, 2))),
        idempotency_key="trip",
    )
    start = days_ago(running, 6)
    declared = await push(
        running,
        key,
        "risk-areas",
        ndjson(risk_area("420106", "high", start)),
        idempotency_key="declared",
    )
    assert declared["statuses_changed"] == 1
    assert (await my_status(running, resident))["status"] == "red"

    lifted = await push(
        running,
        key,
        "risk-areas",
        ndjson(risk_area("420106", "high", start, valid_to=days_ago(running, 3))),
        idempotency_key="lifted",
    )

    assert lifted["statuses_changed"] == 1
    status = await my_status(running, resident)
    assert status["status"] == "green"
    assert status["reason_codes"] == []


async def test_negative_tests_after_three_days_do_not_clear_a_risk_city_arrival(
    running: RunningApp, api: Api
):
    # Xi'an (6101xx) is this test's city.
    resident = await api.registered()
    key = await running.feed_key()
    trip = today(running) - dt.timedelta(days=5)
    await push(
        running,
        key,
        "travel",
        ndjson(travel(resident, "610102", trip.isoformat())),
        idempotency_key="trip",
    )
    await push(
        running,
        key,
        "risk-areas",
        ndjson(risk_area("610103", "medium", days_ago(running, 10))),
        idempotency_key="areas",
    )
    assert (await my_status(running, resident))["status"] == "yellow"

    late = await push(
        running,
        key,
        "nat-results",
        ndjson(
            nat(resident, local_time(trip, 10)),
            nat(resident, local_time(trip + dt.timedelta(days=3), 10)),
            nat(resident, local_time(trip + dt.timedelta(days=4), 10)),
        ),
        idempotency_key="tests",
    )

    # One test within the three days is not enough, and later ones do not count.
    assert late["statuses_changed"] == 0
    status = await my_status(running, resident)
    assert status["status"] == "yellow"
    assert status["reason_codes"] == ["risk_city_arrival"]
