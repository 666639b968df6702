"""Proofing before any code: the attacks that got a usable code before, the documented outcomes,
rate limits and alerts, and reclaiming a document someone else bound."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from conftest import RunningApp, make_settings, start_app
from support.api import Resident, random_phone, random_prc_id, registry_person
from yuekang.audit.models import AuditEvent
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.codec.proofing import Person
from yuekang.config import ProofingSettings, Settings
from yuekang.principals import Actor, Role
from yuekang.residents import service as residents
from yuekang.residents.models import ProofingAttempt


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def person(name: str = "王小明", birth: dt.date | None = None) -> Person:
    number, birth = random_prc_id(birth)
    found = registry_person(name, "prc_id", number, birth)
    assert found is not None
    return found


async def bind(running: RunningApp, resident: Resident, who: Person, **changes: Any) -> Any:
    body = {
        "name": who.name,
        "doc_type": who.doc_type,
        "doc_number": who.doc_number,
        "birth_date": who.birth_date.isoformat(),
        **changes,
    }
    return await running.client.put("/v1/me/identity", headers=resident.auth, json=body)


async def usable_code(running: RunningApp, resident: Resident, gate: str) -> bool:
    """Whether the resident can get a code that a venue lets in."""
    issued = await running.api.issue(resident)
    if issued.status_code != 201:
        return False
    verdict = await running.client.post(
        "/v1/verify", headers=bearer(gate), json={"qr_text": issued.json()["qr_text"]}
    )
    return bool(verdict.json()["decision"] == "allow")


async def assert_nothing_bound(running: RunningApp, resident: Resident) -> None:
    assert (await running.client.get("/v1/me/identity", headers=resident.auth)).status_code == 404
    refused = await running.api.issue(resident)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "identity_required"


# --- the attacks of the issue, each now without a usable code ----------------------------------


async def test_a_fabricated_document_gets_no_code(running: RunningApp):
    attacker = await running.api.sign_in()
    number, birth = random_prc_id()  # a correct check digit, and nobody's

    answer = await running.api.bind(
        attacker, name="张三", doc_number=number, birth_date=birth, enrol=False
    )

    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "identity_mismatch"
    await assert_nothing_bound(running, attacker)


async def test_a_real_persons_document_from_a_phone_not_theirs_gets_no_code(running: RunningApp):
    victim = person("李四")
    running.registry.add(victim, phone=random_phone())
    attacker = await running.api.sign_in()

    answer = await bind(running, attacker, victim)

    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "phone_not_registered_to_holder"
    await assert_nothing_bound(running, attacker)


async def test_a_red_residents_second_account_gets_no_usable_code(running: RunningApp):
    gate = await running.checkpoint_key()
    red = await running.api.registered(name="陈红")
    await running.set_red(red)
    assert not await usable_code(running, red, gate)
    second = await running.api.sign_in()

    made_up = await running.api.bind(second, name="陈红", enrol=False)
    someone = person("周五")
    running.registry.add(someone, phone=random_phone())
    borrowed = await bind(running, second, someone)
    # Their own document, from a second phone that is theirs too: the first account proved it
    # and its phone is still theirs, so the document stays there (and stays red).
    assert red.doc_number is not None and red.birth_date is not None
    own = registry_person("陈红", "prc_id", red.doc_number, red.birth_date)
    assert own is not None
    running.registry.add(own, phone=second.phone)
    running.registry.add(own, phone=red.phone)
    again = await bind(running, second, own)

    assert [made_up.status_code, borrowed.status_code, again.status_code] == [422, 422, 409]
    assert again.json()["error"]["code"] == "document_already_bound"
    await assert_nothing_bound(running, second)
    assert not await usable_code(running, second, gate)


async def test_a_mismatch_does_not_say_which_detail_was_wrong(running: RunningApp):
    real = person("赵六")
    running.registry.add(real, phone=random_phone())
    answers = []
    for changes in (
        {"name": "赵七"},
        {"birth_date": (real.birth_date + dt.timedelta(days=1)).isoformat()},
        {"doc_number": random_prc_id(real.birth_date)[0]},
    ):
        if "birth_date" in changes:
            # The birth date is inside a PRC number: another birth date needs another number.
            changes["doc_number"] = random_prc_id(real.birth_date + dt.timedelta(days=1))[0]
        resident = await running.api.sign_in()
        answers.append(await bind(running, resident, real, **changes))
    assert {a.status_code for a in answers} == {422}
    assert len({a.text for a in answers}) == 1
    assert "fields" not in answers[0].json()["error"]


async def test_a_proofed_code_says_so_and_passes_the_border(running: RunningApp):
    resident = await running.api.registered()
    me = (await running.client.get("/v1/me/identity", headers=resident.auth)).json()
    assert me["assurance"] == "proofed" and me["proofed_at"] is not None
    code = await running.api.code(resident)
    gate = await running.checkpoint_key(kind="venue")
    verdict = await running.client.post(
        "/v1/verify", headers=bearer(gate), json={"qr_text": code["qr_text"]}
    )
    assert verdict.json()["assurance"] == "proofed"


# --- the registry unavailable -----------------------------------------------------------------


async def test_a_registry_that_is_down_binds_nothing_and_says_when_to_retry(running: RunningApp):
    resident = await running.api.sign_in()
    someone = person()
    running.registry.add(someone, phone=resident.phone)
    running.registry.available = False

    down = await bind(running, resident, someone)

    assert down.status_code == 503
    assert down.json()["error"]["code"] == "proofing_unavailable"
    assert int(down.headers["retry-after"]) > 0
    await assert_nothing_bound(running, resident)
    running.registry.available = True
    assert (await bind(running, resident, someone)).status_code == 201
    async with running.context.sessionmaker() as session:
        outcomes = (
            (
                await session.execute(
                    select(ProofingAttempt.outcome)
                    .where(ProofingAttempt.resident_id == await running.resident_id(resident))
                    .order_by(ProofingAttempt.id)
                )
            )
            .scalars()
            .all()
        )
    assert outcomes == ["proofing_unavailable", "verified"]


# --- rate limits and alerts -------------------------------------------------------------------


@pytest.fixture
async def strict(database_url: str, tmp_path, clock: ManualClock):
    settings: Settings = make_settings(
        database_url,
        tmp_path / "keys",
        proofing=ProofingSettings(
            per_account_limit=3, per_document_limit=4, per_client_limit=100_000, alert_failures=3
        ),
    )
    async for running in start_app(settings, clock, MemorySmsSender()):
        yield running


async def test_attempts_on_one_document_are_limited_and_alert_operators(strict: RunningApp):
    victim = person("孙八")
    strict.registry.add(victim, phone=random_phone())
    answers = []
    for _ in range(5):
        prober = await strict.api.sign_in()
        answers.append(await bind(strict, prober, victim))
    assert [a.status_code for a in answers] == [422, 422, 422, 422, 429]
    assert answers[-1].headers["retry-after"]

    operator = bearer(await strict.operator_token(Role.OPERATOR))
    alerts = await strict.client.get("/v1/admin/identity/alerts", headers=operator)
    assert alerts.status_code == 200
    [alert] = [a for a in alerts.json() if a["masked_doc_number"].endswith(victim.doc_number[-2:])]
    assert (alert["failures"], alert["accounts"]) == (5, 5)
    assert victim.doc_number not in alerts.text
    resident = await strict.api.registered()
    assert (
        await strict.client.get("/v1/admin/identity/alerts", headers=resident.auth)
    ).status_code == 401
    async with strict.context.sessionmaker() as session:
        reads = (
            await session.execute(
                select(AuditEvent.id).where(AuditEvent.action == "identity.alerts.read")
            )
        ).all()
    assert reads


async def test_attempts_from_one_account_are_limited(strict: RunningApp):
    resident = await strict.api.sign_in()
    codes = [(await strict.api.bind(resident, enrol=False)).status_code for _ in range(4)]
    assert codes == [422, 422, 422, 429]


# --- bindings made before proofing ------------------------------------------------------------


async def test_an_unverified_binding_gets_no_code_until_proved(running: RunningApp):
    resident = await running.api.registered()
    await running.unverify(resident)

    refused = await running.api.issue(resident)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "identity_unverified"
    assert (await running.client.get("/v1/me/identity", headers=resident.auth)).json()[
        "assurance"
    ] == "unverified"

    proved = await running.api.bind(
        resident, doc_number=resident.doc_number, birth_date=resident.birth_date
    )
    assert proved.status_code == 201
    assert proved.json()["assurance"] == "proofed"
    assert (await running.api.issue(resident)).status_code == 201


async def test_an_unverified_binding_may_be_replaced_by_a_proved_one(running: RunningApp):
    resident = await running.api.registered(name="错名字")
    await running.unverify(resident)
    mine = person("钱小九")
    running.registry.add(mine, phone=resident.phone)

    replaced = await bind(running, resident, mine)

    assert replaced.status_code == 201, replaced.text
    assert replaced.json()["masked_name"] == "钱*九"


# --- reclaiming -------------------------------------------------------------------------------


async def test_the_holder_reclaims_a_document_bound_before_proofing(running: RunningApp):
    gate = await running.checkpoint_key()
    squatter = await running.api.registered(name="吴十")
    squatters_code = await running.api.code(squatter)
    await running.unverify(squatter)
    assert squatter.doc_number is not None and squatter.birth_date is not None
    holder = await running.api.sign_in()
    real = registry_person("吴十", "prc_id", squatter.doc_number, squatter.birth_date)
    assert real is not None
    running.registry.add(real, phone=holder.phone)
    running.sms.sent.clear()

    taken = await bind(running, holder, real)

    assert taken.status_code == 201, taken.text
    assert taken.json()["reclaimed"] is True
    assert (await running.client.get("/v1/me/identity", headers=squatter.auth)).status_code == 404
    judged = await running.client.post(
        "/v1/verify", headers=bearer(gate), json={"qr_text": squatters_code["qr_text"]}
    )
    assert [r["code"] for r in judged.json()["reasons"]] == ["revoked"]
    told = {phone for phone, _ in running.sms.sent}
    assert {squatter.phone, holder.phone} <= told
    assert await usable_code(running, holder, gate)
    async with running.context.sessionmaker() as session:
        released = (
            await session.execute(
                select(AuditEvent.detail).where(
                    AuditEvent.action == "identity.released",
                    AuditEvent.subject_id == str(await running.resident_id(squatter)),
                )
            )
        ).scalar_one()
    assert released["reason"] == "reclaimed_by_holder"


async def test_a_red_decision_about_the_document_follows_it_to_the_holder(running: RunningApp):
    squatter = await running.api.registered(name="郑一")
    await running.set_red(squatter, reason="close contact")
    await running.unverify(squatter)
    assert squatter.doc_number is not None and squatter.birth_date is not None
    holder = await running.api.sign_in()
    real = registry_person("郑一", "prc_id", squatter.doc_number, squatter.birth_date)
    assert real is not None
    running.registry.add(real, phone=holder.phone)

    assert (await bind(running, holder, real)).status_code == 201

    status = (await running.client.get("/v1/me/status", headers=holder.auth)).json()
    assert status["status"] == "red"


async def test_a_number_the_holder_no_longer_has_loses_the_document(running: RunningApp):
    first = await running.api.registered(name="冯二")
    assert first.doc_number is not None and first.birth_date is not None
    real = registry_person("冯二", "prc_id", first.doc_number, first.birth_date)
    assert real is not None
    # The holder changed numbers: the old one went back to the carrier and to someone else.
    running.registry.add(person("路人"), phone=first.phone)
    new_phone = await running.api.sign_in()
    running.registry.add(real, phone=new_phone.phone)

    moved = await bind(running, new_phone, real)

    assert moved.status_code == 201, moved.text
    assert moved.json()["reclaimed"] is True
    assert (await running.client.get("/v1/me/identity", headers=first.auth)).status_code == 404


# --- the counter ------------------------------------------------------------------------------


async def test_a_counter_verifies_someone_the_carrier_cannot(running: RunningApp):
    macao_phone = "+85366" + random_phone()[-6:]
    visitor = person("陳大文")
    running.registry.add(visitor)  # in the register, but no mainland carrier knows the phone
    resident = await running.api.sign_in(macao_phone)
    refused = await bind(running, resident, visitor)
    assert refused.json()["error"]["code"] == "phone_not_registered_to_holder"

    operator = bearer(await running.operator_token(Role.OPERATOR))
    body = {
        "name": visitor.name,
        "doc_type": "prc_id",
        "doc_number": visitor.doc_number,
        "birth_date": visitor.birth_date.isoformat(),
        "phone": macao_phone,
        "reason": "回乡证与身份证原件核对一致",
        "document_seen": True,
    }
    counted = await running.client.post("/v1/admin/identity/counter", headers=operator, json=body)

    assert counted.status_code == 201, counted.text
    assert counted.json()["identity"]["assurance"] == "counter"
    assert counted.json()["new_account"] is False
    code = await running.api.code(resident)
    gate = await running.checkpoint_key(kind="venue")
    verdict = await running.client.post(
        "/v1/verify", headers=bearer(gate), json={"qr_text": code["qr_text"]}
    )
    assert verdict.json()["assurance"] == "counter"
    not_seen = await running.client.post(
        "/v1/admin/identity/counter", headers=operator, json={**body, "document_seen": False}
    )
    assert not_seen.status_code == 422
    as_resident = await running.client.post(
        "/v1/admin/identity/counter", headers=resident.auth, json=body
    )
    assert as_resident.status_code == 401


async def test_a_person_without_a_phone_verified_at_a_counter_passes_a_document_check(
    running: RunningApp,
):
    elder = person("李秀英", dt.date(1940, 3, 8))
    operator = bearer(await running.operator_token(Role.OPERATOR))
    counted = await running.client.post(
        "/v1/admin/identity/counter",
        headers=operator,
        json={
            "name": elder.name,
            "doc_type": "prc_id",
            "doc_number": elder.doc_number,
            "birth_date": elder.birth_date.isoformat(),
            "reason": "本人持身份证到窗口办理，无智能手机",
            "document_seen": True,
        },
    )
    assert counted.status_code == 201, counted.text
    assert counted.json()["new_account"] is True
    gate = await running.checkpoint_key("Dongshan market")
    checked = await running.client.post(
        "/v1/verify/document",
        headers=bearer(gate),
        json={"doc_type": "prc_id", "doc_number": elder.doc_number},
    )
    body = checked.json()
    assert (body["verdict"], body["status"], body["masked_name"]) == ("valid", "green", "李*英")
    assert body["assurance"] == "counter"


async def test_an_operator_may_revoke_every_unproved_binding_s_codes_at_once(running: RunningApp):
    gate = await running.checkpoint_key()
    legacy = await running.api.registered()
    code = await running.api.code(legacy)
    await running.unverify(legacy)
    proved = await running.api.registered()
    proved_code = await running.api.code(proved)

    async with running.context.sessionmaker() as session, session.begin():
        bindings, codes = await residents.revoke_unverified_codes(
            session, actor=Actor.cli(), now=running.context.clock.now()
        )

    assert bindings >= 1 and codes >= 1
    judged = await running.client.post(
        "/v1/verify", headers=bearer(gate), json={"qr_text": code["qr_text"]}
    )
    assert [r["code"] for r in judged.json()["reasons"]] == ["revoked"]
    still = await running.client.post(
        "/v1/verify", headers=bearer(gate), json={"qr_text": proved_code["qr_text"]}
    )
    assert still.json()["verdict"] == "valid"


async def test_an_unproved_account_reads_no_health_data(running: RunningApp):
    squatter = await running.api.registered()
    await running.unverify(squatter)

    status = await running.client.get("/v1/me/status", headers=squatter.auth)
    me = (await running.client.get("/v1/me", headers=squatter.auth)).json()

    assert (status.status_code, status.json()["error"]["code"]) == (409, "identity_unverified")
    assert me["status"] is None
    assert me["identity"]["assurance"] == "unverified"


async def test_failures_from_other_accounts_do_not_lock_the_holder_out(strict: RunningApp):
    victim = person("何仙姑")
    victims_phone = random_phone()
    strict.registry.add(victim, phone=victims_phone)
    for _ in range(5):
        prober = await strict.api.sign_in()
        await bind(strict, prober, victim)
    # Past the document's limit, a guess is a 429 whatever it was: right or wrong name.
    late = await strict.api.sign_in()
    wrong = await bind(strict, late, victim, name="何仙翁")
    right_name = await bind(strict, late, victim)
    assert [wrong.status_code, right_name.status_code] == [429, 429]
    assert wrong.json() == right_name.json()

    holder = await strict.api.sign_in(victims_phone)
    proved = await bind(strict, holder, victim)

    assert proved.status_code == 201, proved.text


async def test_a_registry_outage_does_not_use_up_attempts(strict: RunningApp):
    resident = await strict.api.sign_in()
    mine = person("韩湘子")
    strict.registry.add(mine, phone=resident.phone)
    strict.registry.available = False
    for _ in range(4):
        assert (await bind(strict, resident, mine)).status_code == 503
    strict.registry.available = True

    assert (await bind(strict, resident, mine)).status_code == 201


async def test_an_unproved_account_cannot_appeal(running: RunningApp):
    squatter = await running.api.registered()
    await running.set_red(squatter)
    await running.unverify(squatter)

    appeal = await running.client.post(
        "/v1/me/appeals", headers=squatter.auth, json={"text": "我不是密接"}
    )

    assert (appeal.status_code, appeal.json()["error"]["code"]) == (409, "identity_unverified")
