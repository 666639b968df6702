"""The console's read endpoints: the dashboard overview counts what happened and names nobody; the
audit log pages newest first for admins only; the checkpoint list; who a token belongs to.

Each test gets a database of its own: the figures are counts over everything stored."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import RunningApp, make_settings
from feeds.feedkit import case, ndjson, push
from support.api import Resident, random_prc_id
from yuekang.clock import ManualClock
from yuekang.config import Settings
from yuekang.exchange.models import Conversion, OutboxMessage, Partner
from yuekang.principals import Role

LOCAL = dt.timezone(dt.timedelta(hours=8))
OVERVIEW = "/v1/admin/stats/overview"
AUDIT = "/v1/admin/audit"


@pytest.fixture
def settings(fresh_database_url: str, tmp_path: Path) -> Settings:
    return make_settings(fresh_database_url, tmp_path / "keys")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def staff(running: RunningApp, role: Role) -> dict[str, str]:
    return bearer(await running.operator_token(role))


async def coloured(running: RunningApp, admin: dict[str, str], status: str) -> tuple[Resident, str]:
    """A registered resident an admin has set to ``status``, and their id."""
    resident = await running.api.registered()
    found = await running.client.post(
        "/v1/admin/residents/lookup",
        headers=admin,
        json={"doc_type": "prc_id", "doc_number": resident.doc_number, "reason": "stats test"},
    )
    assert found.status_code == 200, found.text
    if status != "green":
        changed = await running.client.put(
            f"/v1/admin/residents/{found.json()['resident_id']}/status",
            headers=admin,
            json={"status": status, "reason": "stats test"},
        )
        assert changed.status_code == 200, changed.text
    return resident, found.json()["resident_id"]


async def verify(running: RunningApp, gate: str, qr_text: str) -> dict[str, Any]:
    response = await running.client.post(
        "/v1/verify", json={"qr_text": qr_text}, headers=bearer(gate)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def outbox_rows(running: RunningApp, *states: str, circuit_open: bool) -> None:
    """A partner and one outbox message per state, written directly: delivering for real needs
    a partner system, and the outbox worker leaves messages that are not pending alone."""
    now = running.context.clock.now()
    async with running.context.sessionmaker() as session, session.begin():
        session.add(
            Partner(
                id="macao",
                issuer="MO",
                code_format="MO1",
                base_url="http://macao.invalid",
                circuit_failures=5 if circuit_open else 0,
                circuit_open_until=now + dt.timedelta(minutes=5) if circuit_open else None,
                created_at=now,
                synced_at=now,
            )
        )
        await session.flush()
        for state in states:
            conversion = Conversion(
                direction="outbound",
                partner_id="macao",
                state={"delivered": "delivered"}.get(state, "failed"),
                created_at=now,
            )
            session.add(conversion)
            await session.flush()
            session.add(
                OutboxMessage(
                    partner_id="macao",
                    conversion_id=conversion.id,
                    kind="conversion",
                    payload_ct=b"-",
                    key_id="t1",
                    state=state,
                    attempts=1,
                    next_attempt_at=now,
                    created_at=now,
                )
            )


async def overview(running: RunningApp, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await running.client.get(OVERVIEW, headers=headers, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_overview_counts_what_happened_and_names_nobody(
    running: RunningApp, clock: ManualClock
):
    admin = await staff(running, Role.ADMIN)
    yesterday = clock.now().astimezone(LOCAL).date()
    early, early_id = await coloured(running, admin, "green")
    await running.api.code(early)

    clock.advance(86_400)
    today = clock.now().astimezone(LOCAL).date()
    (green, green_id), (yellow, yellow_id), (red, red_id) = [
        await coloured(running, admin, s) for s in ("green", "yellow", "red")
    ]
    green_code = await running.api.code(green)
    await running.api.code(green)
    await running.api.code(yellow)
    red_code = await running.api.code(red)

    gate = await running.checkpoint_key("Gongbei Port gate 3")
    station = await running.client.post(
        "/v1/admin/checkpoints",
        headers=admin,
        json={"name": "Guangzhou South Station", "kind": "transport", "region_code": "440104"},
    )
    assert station.status_code == 201, station.text
    await running.checkpoint_key("A gate nobody scans at")
    for qr_text in (green_code["qr_text"], green_code["qr_text"], "not a health code"):
        await verify(running, gate, qr_text)
    assert (await verify(running, station.json()["api_key"], red_code["qr_text"]))[
        "status"
    ] == "red"

    bad_number = random_prc_id()[0][:-1] + "Z"
    batch = await push(
        running,
        await running.feed_key("cases", name="Guangdong Health Commission"),
        "cases",
        ndjson(
            case(random_prc_id()[0], today.isoformat()),
            case(bad_number, today.isoformat()),
        ),
    )
    assert (batch["rows_accepted"], batch["rows_rejected"]) == (1, 1)
    bundle = await running.client.get("/v1/trust-bundle", headers=bearer(gate))
    assert bundle.status_code == 200, bundle.text
    await outbox_rows(running, "delivered", "delivered", "failed", circuit_open=True)
    clock.advance(90)

    response = await running.client.get(OVERVIEW, headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()

    assert (body["days"], body["utc_offset"]) == (14, "+08:00")
    assert (body["first_day"], body["last_day"]) == (
        (today - dt.timedelta(days=13)).isoformat(),
        today.isoformat(),
    )
    codes = {row["day"]: (row["green"], row["yellow"], row["red"]) for row in body["codes"]}
    assert len(codes) == 14
    assert codes[today.isoformat()] == (2, 1, 1)
    assert codes[yesterday.isoformat()] == (1, 0, 0)
    assert sum(sum(c) for c in codes.values()) == 5

    scans = [(s["name"], s["kind"], s["valid"], s["invalid"]) for s in body["scans"]]
    assert scans == [
        ("Gongbei Port gate 3", "venue", 2, 1),
        ("Guangzhou South Station", "transport", 1, 0),
    ]
    assert body["scans_truncated"] is False
    assert body["scans"][1]["checkpoint_id"] == station.json()["id"]

    feeds = {row["day"]: row for row in body["feeds"]["days"]}
    assert len(feeds) == 14
    assert feeds[today.isoformat()] == {
        "day": today.isoformat(),
        "batches": 1,
        "rows_accepted": 1,
        "rows_rejected": 1,
    }
    [latest] = body["feeds"]["latest"]
    assert latest["id"] == batch["batch_id"]
    assert (latest["kind"], latest["client"]) == ("cases", "Guangdong Health Commission")
    assert (latest["rows_total"], latest["rows_accepted"], latest["rows_rejected"]) == (2, 1, 1)

    trust = body["trust_bundle"]
    assert trust["version"] == 1
    assert trust["age_seconds"] == 90
    assert trust["freshness"] == "fresh"

    assert body["outbox"]["states"] == {"pending": 0, "delivered": 2, "refused": 0, "failed": 1}
    assert body["outbox"]["circuits_open"] == 1
    assert body["outbox"]["partners"][0]["partner"] == "macao"
    assert body["outbox"]["partners"][0]["circuit"] == "open"

    # Nothing that names or identifies a resident, not even a code id.
    text = response.text
    for resident in (early, green, yellow, red):
        assert resident.doc_number is not None
        for personal in (resident.doc_number, resident.phone, resident.phone[3:]):
            assert personal not in text
    assert bad_number not in text
    for forbidden in (early_id, green_id, yellow_id, red_id, green_code["code_id"], "张", "*"):
        assert forbidden not in text


async def test_an_empty_service_has_zeros_and_no_bundle(running: RunningApp):
    body = await overview(running, await staff(running, Role.EPIDEMIOLOGIST), days=1)

    assert len(body["codes"]) == 1
    assert body["codes"][0] | {"day": None} == {"day": None, "green": 0, "yellow": 0, "red": 0}
    assert body["scans"] == []
    assert body["feeds"]["latest"] == []
    assert body["trust_bundle"] is None
    assert body["outbox"] == {
        "states": {"pending": 0, "delivered": 0, "refused": 0, "failed": 0},
        "partners": [],
        "circuits_open": 0,
    }


async def test_the_bundle_ages_and_then_expires(running: RunningApp, clock: ManualClock):
    await running.client.get("/v1/trust-bundle", headers=bearer(await running.checkpoint_key()))
    operator = await staff(running, Role.OPERATOR)
    lifetime = running.context.settings.trust.bundle_lifetime_seconds

    clock.advance(lifetime // 2 + 1)
    aging = (await overview(running, operator))["trust_bundle"]
    clock.advance(lifetime)
    expired = (await overview(running, operator))["trust_bundle"]

    assert (aging["freshness"], aging["age_seconds"]) == ("aging", lifetime // 2 + 1)
    assert expired["freshness"] == "expired"


@pytest.mark.parametrize(
    "days", ["0", "91", "-1", "abc", "1.5", "", "99999999999999999999999", "14\x00"]
)
async def test_days_out_of_bounds_is_a_validation_error(running: RunningApp, days: str):
    response = await running.client.get(
        OVERVIEW, headers=await staff(running, Role.ADMIN), params={"days": days}
    )

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["fields"][0]["field"] == "days"


@pytest.mark.parametrize("days", [1, 90])
async def test_days_at_the_bounds_lists_every_day(running: RunningApp, days: int):
    body = await overview(running, await staff(running, Role.ADMIN), days=days)

    listed = [dt.date.fromisoformat(row["day"]) for row in body["codes"]]
    assert len(listed) == len(body["feeds"]["days"]) == days
    assert listed == sorted(listed)
    assert (listed[-1] - listed[0]).days == days - 1


@pytest.mark.parametrize("role", list(Role))
async def test_every_staff_role_reads_the_figures_and_who_it_is(running: RunningApp, role: Role):
    headers = await staff(running, role)

    assert (await running.client.get(OVERVIEW, headers=headers)).status_code == 200
    me = await running.client.get("/v1/admin/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["role"] == role.value
    assert me.json()["name"] == f"test {role.value}"
    assert set(me.json()) == {"id", "name", "role"}


async def test_other_credentials_are_refused(running: RunningApp):
    resident = await running.api.registered()
    others = {
        "feed": (bearer(await running.feed_key("cases")), "invalid_operator_token"),
        "checkpoint": (bearer(await running.checkpoint_key()), "invalid_operator_token"),
        "resident": (resident.auth, "invalid_operator_token"),
        "forged": (bearer("yko_" + uuid.uuid4().hex), "invalid_operator_token"),
        "nobody": ({}, "missing_token"),
    }
    for name, (headers, code) in others.items():
        for path in (OVERVIEW, "/v1/admin/me", AUDIT, "/v1/admin/checkpoints"):
            response = await running.client.get(path, headers=headers)
            assert response.status_code == 401, (name, path, response.text)
            assert response.json()["error"]["code"] == code, (name, path)


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.EPIDEMIOLOGIST])
async def test_only_admins_read_the_audit_log(running: RunningApp, role: Role):
    response = await running.client.get(AUDIT, headers=await staff(running, role))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "role_required"


async def _pages(
    running: RunningApp, headers: dict[str, str], **params: Any
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    before: int | None = None
    while True:
        query = {**params, **({} if before is None else {"before_id": before})}
        response = await running.client.get(AUDIT, headers=headers, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page["events"])
        before = page["next_before_id"]
        if before is None:
            return pages
        assert before == page["events"][-1]["id"]


async def test_the_audit_log_pages_newest_first_and_filters_by_action(running: RunningApp):
    admin = await staff(running, Role.ADMIN)
    created = []
    for n in range(5):
        response = await running.client.post(
            "/v1/admin/checkpoints", headers=admin, json={"name": f"gate {n}"}
        )
        created.append(response.json()["id"])
    rotated = await running.client.post(
        f"/v1/admin/checkpoints/{created[0]}/rotate-key", headers=admin
    )
    assert rotated.status_code == 200

    pages = await _pages(running, admin, action="checkpoint.create", limit=2)
    events = [e for page in pages for e in page]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [e["subject_id"] for e in events] == created[::-1]
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)
    first = events[-1]
    assert first["action"] == "checkpoint.create"
    assert (first["actor_type"], first["subject_type"]) == ("operator", "checkpoint")
    assert first["detail"] == {"name": "gate 0", "kind": "venue", "region_code": None}
    assert dt.datetime.fromisoformat(first["at"]).tzinfo is not None

    prefixed = [
        e["action"] for page in await _pages(running, admin, action="checkpoint.") for e in page
    ]
    assert prefixed == ["checkpoint.rotate_key"] + ["checkpoint.create"] * 5
    everything = [e for page in await _pages(running, admin, limit=500) for e in page]
    assert {"operator.create", "checkpoint.create"} <= {e["action"] for e in everything}
    nothing = await running.client.get(AUDIT, headers=admin, params={"action": "no.such"})
    assert nothing.json() == {"events": [], "next_before_id": None}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "x"},
        {"before_id": "0"},
        {"before_id": ""},
        {"before_id": "abc"},
        {"before_id": str(2**63)},
        {"action": ""},
        {"action": "Appeal.Read"},
        {"action": "appeal%"},
        {"action": "appeal.read\x00"},
        {"action": "a" * 65},
    ],
)
async def test_bad_audit_parameters_are_validation_errors(
    running: RunningApp, params: dict[str, str]
):
    response = await running.client.get(
        AUDIT, headers=await staff(running, Role.ADMIN), params=params
    )

    assert response.status_code == 422, response.text
    assert response.json()["error"]["fields"][0]["field"] == next(iter(params))


async def test_the_checkpoint_list_shows_state_and_last_use(running: RunningApp):
    admin = await staff(running, Role.ADMIN)
    made = []
    for body in (
        {"name": "Gongbei Port gate 3", "kind": "border", "region_code": "440402"},
        {"name": "Tianhe bus depot", "kind": "transport"},
    ):
        response = await running.client.post("/v1/admin/checkpoints", headers=admin, json=body)
        assert response.status_code == 201, response.text
        made.append(response.json())
    await verify(running, made[0]["api_key"], "not a health code")
    disabled = await running.client.post(
        f"/v1/admin/checkpoints/{made[1]['id']}/disable", headers=admin
    )
    assert disabled.status_code == 204

    response = await running.client.get(
        "/v1/admin/checkpoints", headers=await staff(running, Role.OPERATOR)
    )

    assert response.status_code == 200, response.text
    listed = {c["id"]: c for c in response.json()}
    gate, depot = listed[made[0]["id"]], listed[made[1]["id"]]
    assert (gate["name"], gate["kind"], gate["region_code"]) == (
        "Gongbei Port gate 3",
        "border",
        "440402",
    )
    assert gate["region_name"] and gate["region_name"].startswith("广东省珠海市")
    assert gate["enabled"] is True and gate["disabled_at"] is None
    assert dt.datetime.fromisoformat(gate["last_scan_at"]) == running.context.clock.now()
    assert depot["enabled"] is False and depot["disabled_at"] is not None
    assert depot["last_scan_at"] is None
    assert "api_key" not in json.dumps(response.json())
    refused = await running.client.get(
        "/v1/admin/checkpoints", headers=await staff(running, Role.EPIDEMIOLOGIST)
    )
    assert refused.status_code == 403


async def test_responses_never_leak_an_error_page(running: RunningApp):
    """Strange query strings end as 200 or 422 with the error body, never a 500."""
    admin = await staff(running, Role.ADMIN)
    for path in (
        f"{OVERVIEW}?days=14&days=15",
        f"{OVERVIEW}?days=%F0%9F%98%80",
        f"{OVERVIEW}?unknown=1",
        f"{AUDIT}?before_id=1e3",
        f"{AUDIT}?action=%ED%A0%80",
        f"{AUDIT}?action=checkpoint.create&action=x",
    ):
        response = await running.client.get(path, headers=admin)
        assert response.status_code in (200, 422), (path, response.text)
        assert isinstance(response.json(), dict)


async def test_people_are_counted_once_by_their_current_status_and_codes_apart(
    running: RunningApp, clock: ManualClock
):
    admin = await staff(running, Role.ADMIN)
    (often, _), (later_red, later_red_id) = [
        await coloured(running, admin, "green") for _ in range(2)
    ]
    for _ in range(3):  # one person opening their code page again and again
        await running.api.code(often)
    yesterday = clock.now().astimezone(LOCAL).date()

    clock.advance(86_400)
    changed = await running.client.put(
        f"/v1/admin/residents/{later_red_id}/status",
        headers=admin,
        json={"status": "red", "reason": "close contact, case 7"},
    )
    assert changed.status_code == 200, changed.text
    await running.api.renew(later_red)  # a day on, the access token has run out
    await running.api.code(later_red)
    today = clock.now().astimezone(LOCAL).date()

    body = await overview(running, admin, days=3)

    assert body["people"]["current"] == {"green": 1, "yellow": 0, "red": 1}
    people = {
        row["day"]: (row["green"], row["yellow"], row["red"]) for row in body["people"]["days"]
    }
    assert people == {
        (today - dt.timedelta(days=2)).isoformat(): (0, 0, 0),
        yesterday.isoformat(): (2, 0, 0),
        today.isoformat(): (1, 0, 1),
    }
    codes = {row["day"]: (row["green"], row["yellow"], row["red"]) for row in body["codes"]}
    assert codes[yesterday.isoformat()] == (3, 0, 0)
    assert codes[today.isoformat()] == (0, 0, 1)


async def test_scans_count_the_places_decisions_apart_from_the_verdicts(running: RunningApp):
    admin = await staff(running, Role.ADMIN)
    (green, _), (yellow, _), (red, _) = [
        await coloured(running, admin, s) for s in ("green", "yellow", "red")
    ]
    green_code, yellow_code, red_code = [
        (await running.api.code(person))["qr_text"] for person in (green, yellow, red)
    ]
    venue = await running.checkpoint_key("Tianhe market", "venue")
    station = await running.checkpoint_key("Guangzhou South Station", "transport")
    border = await running.checkpoint_key("Gongbei Port gate 3", "border")
    answers = []
    for gate, qr_text in [
        (venue, green_code),
        (venue, red_code),
        (venue, "not a health code"),
        (station, yellow_code),
        (station, green_code),
        (border, red_code),
        (border, red_code),
        (border, green_code),
    ]:
        answers.append(await verify(running, gate, qr_text))
    # The green code with no recent test at the border: valid, and turned away.
    assert (answers[-1]["verdict"], answers[-1]["decision"]) == ("valid", "deny")

    # Offline scans uploaded later: one device says what it decided, an older one does not.
    green_id = (await running.api.code(green))["code_id"]
    uploads = [
        {"scan_id": "a", "code_id": green_id, "verdict": "valid", "decision": "allow"},
        {"scan_id": "b", "code_id": green_id, "verdict": "valid"},
    ]
    now = running.context.clock.now().isoformat()
    stored = await running.client.post(
        "/v1/scans",
        json={"scans": [{**u, "scanned_at": now} for u in uploads]},
        headers=bearer(border),
    )
    assert stored.status_code == 200, stored.text
    lying = await running.client.post(
        "/v1/scans",
        json={
            "scans": [
                {"scan_id": "c", "verdict": "invalid", "decision": "allow", "scanned_at": now}
            ]
        },
        headers={**bearer(border), "Accept-Language": "en"},
    )
    assert lying.status_code == 422
    [field] = lying.json()["error"]["fields"]
    assert (field["field"], field["reason"]) == ("scans.0", "decision_not_deny")

    body = await overview(running, admin)

    counted = {
        s["name"]: (
            (s["valid"], s["invalid"], s["cannot_verify"]),
            (s["allow"], s["deny"], s["manual_check"], s["decision_unknown"]),
        )
        for s in body["scans"]
    }
    assert counted == {
        # A red code is a valid verdict, and denied at a venue.
        "Tianhe market": ((2, 1, 0), (1, 2, 0, 0)),
        "Guangzhou South Station": ((2, 0, 0), (1, 0, 1, 0)),
        # At the border: two red codes and the untested green one denied, as decided at the
        # gate; an upload that says it let a green code through; one from a device that keeps
        # no decision, and a border's green depends on the test, which no record keeps.
        "Gongbei Port gate 3": ((5, 0, 0), (1, 3, 0, 1)),
    }


async def test_the_audit_log_filters_by_kind_of_actor(running: RunningApp):
    admin = await staff(running, Role.ADMIN)
    resident, _ = await coloured(running, admin, "red")
    filed = await running.client.post(
        "/v1/me/appeals", headers=resident.auth, json={"text": "I was at home all day."}
    )
    assert filed.status_code == 201, filed.text
    made = await running.client.post(
        "/v1/admin/checkpoints", headers=admin, json={"name": "gate by an operator"}
    )
    assert made.status_code == 201, made.text

    def actors(pages: list[list[dict[str, Any]]]) -> set[str]:
        return {e["actor_type"] for page in pages for e in page}

    everything = actors(await _pages(running, admin))
    staff_only = await _pages(running, admin, actor_type=["operator", "cli", "partner"])
    residents = await _pages(running, admin, actor_type="resident")

    assert {"resident", "operator", "cli"} <= everything
    assert actors(staff_only) == {"operator", "cli"}
    assert "checkpoint.create" in {e["action"] for page in staff_only for e in page}
    assert actors(residents) == {"resident"}
    assert "appeal.file" in {e["action"] for page in residents for e in page}
    refused = await running.client.get(AUDIT, headers=admin, params={"actor_type": "robot"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["fields"][0]["field"].startswith("actor_type")


async def test_the_totals_count_every_place_however_many_are_listed(running: RunningApp):
    admin = await staff(running, Role.ADMIN)
    now = running.context.clock.now().isoformat()
    places = 53  # the overview lists the 50 busiest
    for n in range(places):
        gate = await running.checkpoint_key(f"gate {n:02d}", "venue")
        scans = [
            {"scan_id": f"s{i}", "code_id": uuid.uuid4().hex[:22], "scanned_at": now,
             "verdict": "valid", "decision": "allow"}
            for i in range(2 if n == 0 else 1)
        ]  # fmt: skip
        scans.append(
            {"scan_id": "bad", "code_id": None, "scanned_at": now, "verdict": "invalid",
             "reason": "malformed", "decision": "deny"}
        )  # fmt: skip
        stored = await running.client.post("/v1/scans", json={"scans": scans}, headers=bearer(gate))
        assert stored.status_code == 200, stored.text

    body = await overview(running, admin)

    assert len(body["scans"]) == 50 and body["scans_truncated"] is True
    assert body["scans"][0]["name"] == "gate 00"
    assert body["scan_totals"] == {
        "places": places,
        "valid": places + 1, "invalid": places, "cannot_verify": 0,
        "allow": places + 1, "deny": places, "manual_check": 0, "decision_unknown": 0,
        "allowed_revoked": 0,
    }  # fmt: skip
    # What a client adding up the list would have had: short by the three places left out.
    assert sum(p["valid"] for p in body["scans"]) == places + 1 - 3
