"""Family members (亲友代办): a proofed adult holds codes for a child or an elderly relative."""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import re
from typing import Any

from conftest import RunningApp, make_settings, start_app
from support.api import Resident, random_phone, random_prc_id, registry_person
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.codec.proofing import Person
from yuekang.config import DependantSettings, Settings
from yuekang.principals import Role

TODAY = dt.datetime.now(dt.UTC).date()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def someone(name: str, born: dt.date) -> Person:
    number, birth = random_prc_id(born)
    found = registry_person(name, "prc_id", number, birth)
    assert found is not None
    return found


def child(name: str = "张小明") -> Person:
    # Born on one of some 3,000 days: tests share a database, and a document is held once.
    return someone(name, TODAY - dt.timedelta(days=random.randrange(365 * 2, 365 * 10)))


def elder(name: str = "李秀英") -> Person:
    return someone(name, dt.date(1935, 1, 1) + dt.timedelta(days=random.randrange(0, 5000)))


async def add(
    running: RunningApp,
    guardian: Resident,
    who: Person,
    relationship: str = "child",
    *,
    phone: str | None = None,
    enrol: bool = True,
) -> Any:
    if enrol:
        running.registry.add(who, phone=phone)
    body: dict[str, Any] = {
        "name": who.name,
        "doc_type": who.doc_type,
        "doc_number": who.doc_number,
        "birth_date": who.birth_date.isoformat(),
        "relationship": relationship,
    }
    if phone is not None:
        body["phone"] = phone
    return await running.client.post("/v1/me/dependants", headers=guardian.auth, json=body)


def claims(qr_text: str) -> dict[str, Any]:
    payload = qr_text.removeprefix("YK1:").split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def sent_code(running: RunningApp, phone: str) -> str:
    [text] = [t for p, t in running.sms.sent if p == phone and "代办" in t]
    found = re.search(r"验证码 (\d{6})", text)
    assert found is not None
    return found.group(1)


async def test_a_childs_code_names_the_child_and_says_it_is_a_family_members(running: RunningApp):
    parent = await running.api.registered(name="张小三")
    kid = child("张小明")

    added = await add(running, parent, kid)

    assert added.status_code == 201, added.text
    body = added.json()
    assert (body["state"], body["consent"], body["masked_name"]) == ("active", "minor", "张*明")
    assert (body["status"], body["assurance"]) == ("green", "dependant")
    listed = (await running.client.get("/v1/me/dependants", headers=parent.auth)).json()
    assert [d["id"] for d in listed] == [body["id"]]

    issued = await running.client.post(f"/v1/me/dependants/{body['id']}/codes", headers=parent.auth)
    assert issued.status_code == 201, issued.text
    code = issued.json()
    assert (claims(code["qr_text"])["nm"], claims(code["qr_text"])["ia"]) == ("张*明", 3)
    assert kid.doc_number not in code["qr_text"]
    image = await running.client.get(code["png_url"], headers=parent.auth)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    status = await running.client.get(f"/v1/me/dependants/{body['id']}/status", headers=parent.auth)
    assert status.json()["status"] == "green"
    # The parent's own code still names the parent.
    assert claims((await running.api.code(parent))["qr_text"])["nm"] == "张*三"


async def test_nobody_else_sees_a_family_members_codes(running: RunningApp):
    parent = await running.api.registered()
    added = (await add(running, parent, child())).json()
    code = (
        await running.client.post(f"/v1/me/dependants/{added['id']}/codes", headers=parent.auth)
    ).json()
    stranger = await running.api.registered()

    for method, path in (
        ("GET", f"/v1/me/dependants/{added['id']}"),
        ("POST", f"/v1/me/dependants/{added['id']}/codes"),
        ("GET", f"/v1/me/dependants/{added['id']}/status"),
        ("GET", f"/v1/me/dependants/{added['id']}/codes/{code['code_id']}.png"),
        ("DELETE", f"/v1/me/dependants/{added['id']}"),
    ):
        answer = await running.client.request(method, path, headers=stranger.auth)
        assert answer.status_code == 404, (method, path)
    # Nor through the ordinary image path: the code is the child's, not the parent's own.
    ordinary = code["png_url"].replace(f"me/dependants/{added['id']}/codes", "codes")
    assert (await running.client.get(ordinary, headers=parent.auth)).status_code == 404


async def test_a_family_member_is_proved_against_the_register(running: RunningApp):
    parent = await running.api.registered()
    made_up = await add(running, parent, child(), enrol=False)
    assert made_up.status_code == 422
    assert made_up.json()["error"]["code"] == "identity_mismatch"
    assert (await running.client.get("/v1/me/dependants", headers=parent.auth)).json() == []


async def test_only_a_proved_adult_adds_family_members(running: RunningApp):
    unproved = await running.api.registered()
    await running.unverify(unproved)
    refused = await add(running, unproved, child())
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "guardian_unverified")

    teen = await running.api.sign_in()
    young = someone("少年", TODAY - dt.timedelta(days=365 * 15))
    running.registry.add(young, phone=teen.phone)
    bound = await running.client.put(
        "/v1/me/identity",
        headers=teen.auth,
        json={"name": young.name, "doc_type": "prc_id", "doc_number": young.doc_number,
              "birth_date": young.birth_date.isoformat()},
    )  # fmt: skip
    assert bound.status_code == 201
    too_young = await add(running, teen, child())
    assert (too_young.status_code, too_young.json()["error"]["code"]) == (
        403,
        "guardian_not_adult",
    )
    no_identity = await running.api.sign_in()
    assert (await add(running, no_identity, child())).status_code == 403


async def test_an_adult_consents_by_the_code_sent_to_their_own_phone(running: RunningApp):
    son = await running.api.registered(name="黄志强")
    mother, mothers_phone = elder("李秀英"), random_phone()

    added = await add(running, son, mother, "parent", phone=mothers_phone)

    assert added.status_code == 201, added.text
    body = added.json()
    assert (body["state"], body["status"]) == ("pending_consent", None)
    waiting = await running.client.post(f"/v1/me/dependants/{body['id']}/codes", headers=son.auth)
    assert (waiting.status_code, waiting.json()["error"]["code"]) == (409, "consent_pending")
    code = sent_code(running, mothers_phone)
    wrong = "000000" if code != "000000" else "111111"
    refused = await running.client.post(
        f"/v1/me/dependants/{body['id']}/consent", headers=son.auth, json={"code": wrong}
    )
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "consent_code_wrong")

    agreed = await running.client.post(
        f"/v1/me/dependants/{body['id']}/consent", headers=son.auth, json={"code": code}
    )

    assert agreed.status_code == 200, agreed.text
    assert (agreed.json()["state"], agreed.json()["consent"]) == ("active", "sms")
    issued = await running.client.post(f"/v1/me/dependants/{body['id']}/codes", headers=son.auth)
    assert claims(issued.json()["qr_text"])["nm"] == "李*英"


async def test_an_adults_consent_phone_must_be_theirs(running: RunningApp):
    son = await running.api.registered()
    mother = elder()
    running.registry.add(mother)
    sons_other_phone = random_phone()
    running.registry.add(someone("黄志强", dt.date(1978, 6, 15)), phone=sons_other_phone)

    refused = await add(running, son, mother, "parent", phone=sons_other_phone, enrol=False)

    assert (refused.status_code, refused.json()["error"]["code"]) == (
        422,
        "phone_not_registered_to_holder",
    )


async def test_without_a_phone_an_adult_consents_at_a_counter(running: RunningApp):
    son = await running.api.registered()
    added = (await add(running, son, elder(), "parent")).json()
    assert added["state"] == "pending_consent"
    operator = bearer(await running.operator_token(Role.OPERATOR))

    consented = await running.client.post(
        f"/v1/admin/dependants/{added['id']}/consent",
        headers=operator,
        json={"reason": "老人持身份证到窗口，本人同意由儿子代办"},
    )

    assert consented.status_code == 200, consented.text
    assert (consented.json()["state"], consented.json()["consent"]) == ("active", "counter")
    assert (
        await running.client.post(f"/v1/me/dependants/{added['id']}/codes", headers=son.auth)
    ).status_code == 201


async def test_the_adult_family_member_ends_it_from_their_own_account(running: RunningApp):
    gate = await running.checkpoint_key()
    son = await running.api.registered()
    mother, mothers_phone = elder(), random_phone()
    added = (await add(running, son, mother, "parent", phone=mothers_phone)).json()
    await running.client.post(
        f"/v1/me/dependants/{added['id']}/consent",
        headers=son.auth,
        json={"code": sent_code(running, mothers_phone)},
    )
    code = (
        await running.client.post(f"/v1/me/dependants/{added['id']}/codes", headers=son.auth)
    ).json()
    her_account = await running.api.sign_in(mothers_phone)

    arrangements = (await running.client.get("/v1/me/guardians", headers=her_account.auth)).json()
    assert [(a["id"], a["relationship"]) for a in arrangements] == [(added["id"], "parent")]
    ended = await running.client.delete(f"/v1/me/guardians/{added['id']}", headers=her_account.auth)

    assert ended.status_code == 204
    assert (await running.client.get("/v1/me/dependants", headers=son.auth)).json() == []
    judged = await running.client.post(
        "/v1/verify", headers=bearer(gate), json={"qr_text": code["qr_text"]}
    )
    assert [r["code"] for r in judged.json()["reasons"]] == ["revoked"]
    assert son.phone in {phone for phone, _ in running.sms.sent}
    # Her document is free: she can prove it on her own phone.
    running.registry.add(mother, phone=mothers_phone)
    own = await running.client.put(
        "/v1/me/identity",
        headers=her_account.auth,
        json={"name": mother.name, "doc_type": "prc_id", "doc_number": mother.doc_number,
              "birth_date": mother.birth_date.isoformat()},
    )  # fmt: skip
    assert own.status_code == 201, own.text
    assert own.json()["reclaimed"] is False


async def test_a_family_member_who_proves_themselves_takes_their_document_back(
    running: RunningApp,
):
    guardian = await running.api.registered()
    adult = someone("周大海", dt.date(1985, 1, 1))
    added = (await add(running, guardian, adult, "other")).json()  # waits for consent
    assert added["state"] == "pending_consent"
    themselves = await running.api.sign_in()
    running.registry.add(adult, phone=themselves.phone)
    running.sms.sent.clear()

    own = await running.client.put(
        "/v1/me/identity",
        headers=themselves.auth,
        json={"name": adult.name, "doc_type": "prc_id", "doc_number": adult.doc_number,
              "birth_date": adult.birth_date.isoformat()},
    )  # fmt: skip

    assert own.status_code == 201, own.text
    assert own.json()["reclaimed"] is True
    assert (await running.client.get("/v1/me/dependants", headers=guardian.auth)).json() == []
    assert guardian.phone in {phone for phone, _ in running.sms.sent}


async def test_a_document_proved_by_its_holder_is_not_taken_by_a_guardian(running: RunningApp):
    holder = await running.api.registered(name="郭靖")
    assert holder.doc_number is not None and holder.birth_date is not None
    them = registry_person("郭靖", "prc_id", holder.doc_number, holder.birth_date)
    assert them is not None
    stranger = await running.api.registered()

    taken = await add(running, stranger, them, "other", enrol=False)

    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "document_already_bound")
    assert (await running.client.get("/v1/me/identity", headers=holder.auth)).status_code == 200


async def test_the_guardian_removes_a_family_member(running: RunningApp):
    parent = await running.api.registered()
    kid = child()
    added = (await add(running, parent, kid)).json()
    removed = await running.client.delete(f"/v1/me/dependants/{added['id']}", headers=parent.auth)
    assert removed.status_code == 204
    assert (await running.client.get("/v1/me/dependants", headers=parent.auth)).json() == []
    # The child's document is free again, for the other parent for example.
    other_parent = await running.api.registered()
    assert (await add(running, other_parent, kid)).status_code == 201


async def test_an_account_holds_a_limited_number_of_family_members(
    database_url: str, tmp_path, clock: ManualClock
):
    settings: Settings = make_settings(
        database_url, tmp_path / "keys", dependants=DependantSettings(max_per_guardian=2)
    )
    async for running in start_app(settings, clock, MemorySmsSender()):
        parent = await running.api.registered()
        answers = [await add(running, parent, child()) for _ in range(3)]
        assert [a.status_code for a in answers] == [201, 201, 409]
        assert answers[-1].json()["error"]["code"] == "dependant_limit"
        assert answers[-1].json()["error"]["fields"][0]["limit"] == 2
        first = answers[0].json()["id"]
        await running.client.delete(f"/v1/me/dependants/{first}", headers=parent.auth)
        assert (await add(running, parent, child())).status_code == 201


async def test_a_family_members_document_check_and_border_decision(running: RunningApp):
    parent = await running.api.registered()
    kid = child()
    await add(running, parent, kid)
    border = await running.checkpoint_key("Gongbei", kind="border")
    checked = await running.client.post(
        "/v1/verify/document",
        headers=bearer(border),
        json={"doc_type": "prc_id", "doc_number": kid.doc_number},
    )
    body = checked.json()
    assert (body["verdict"], body["assurance"]) == ("valid", "dependant")
    # No recent test: denied at the border whoever it is.
    assert body["decision"] == "deny"


async def test_the_page_learns_the_rules_and_how_an_adult_consents(running: RunningApp):
    son = await running.api.registered()
    rules = (await running.client.get("/v1/me/dependants/rules", headers=son.auth)).json()
    assert rules == {"max_per_guardian": 5, "adult_age": 18, "consent_ttl_seconds": 600}
    by_sms = (await add(running, son, elder("李秀英"), "parent", phone=random_phone())).json()
    at_counter = (await add(running, son, elder("王阿婆"), "grandparent")).json()
    assert (by_sms["consent_by_sms"], by_sms["consent_expires_at"] is not None) == (True, True)
    assert (at_counter["consent_by_sms"], at_counter["consent_expires_at"]) == (False, None)
    resend = await running.client.post(
        f"/v1/me/dependants/{at_counter['id']}/consent/resend", headers=son.auth
    )
    assert (resend.status_code, resend.json()["error"]["code"]) == (409, "consent_phone_missing")


async def test_a_guardian_proving_again_on_a_new_number_keeps_their_family(running: RunningApp):
    parent = await running.api.registered(name="王一")
    added = (await add(running, parent, child())).json()
    assert parent.doc_number is not None and parent.birth_date is not None
    them = registry_person("王一", "prc_id", parent.doc_number, parent.birth_date)
    assert them is not None
    # The old number went back to the carrier and to someone else; the parent has a new one.
    running.registry.add(someone("路人", dt.date(1990, 1, 1)), phone=parent.phone)
    new_number = await running.api.sign_in()
    running.registry.add(them, phone=new_number.phone)

    moved = await running.client.put(
        "/v1/me/identity",
        headers=new_number.auth,
        json={"name": "王一", "doc_type": "prc_id", "doc_number": them.doc_number,
              "birth_date": them.birth_date.isoformat()},
    )  # fmt: skip

    assert moved.status_code == 201, moved.text
    mine = (await running.client.get("/v1/me/dependants", headers=new_number.auth)).json()
    assert [d["id"] for d in mine] == [added["id"]]
    # Whoever has the old number now holds nobody's codes.
    assert (await running.client.get("/v1/me/dependants", headers=parent.auth)).json() == []
    for method, path in (
        ("POST", f"/v1/me/dependants/{added['id']}/codes"),
        ("GET", f"/v1/me/dependants/{added['id']}/status"),
    ):
        assert (await running.client.request(method, path, headers=parent.auth)).status_code == 404
    assert (
        await running.client.post(f"/v1/me/dependants/{added['id']}/codes", headers=new_number.auth)
    ).status_code == 201


async def test_a_red_decision_stays_with_a_child_removed_and_added_again(running: RunningApp):
    parent = await running.api.registered()
    kid = child()
    added = (await add(running, parent, kid)).json()
    operator = bearer(await running.operator_token(Role.OPERATOR))
    found = await running.client.post(
        "/v1/admin/residents/lookup",
        headers=operator,
        json={"doc_type": "prc_id", "doc_number": kid.doc_number, "reason": "close contact"},
    )
    red = await running.client.put(
        f"/v1/admin/residents/{found.json()['resident_id']}/status",
        headers=operator,
        json={"status": "red", "reason": "close contact"},
    )
    assert red.status_code == 200, red.text

    await running.client.delete(f"/v1/me/dependants/{added['id']}", headers=parent.auth)
    again = await add(running, parent, kid)

    assert again.status_code == 201, again.text
    assert again.json()["status"] == "red"


async def test_an_adult_who_never_consents_holds_their_document_only_for_a_while(
    running: RunningApp, clock: ManualClock
):
    first = await running.api.registered()
    grandmother = elder("王婆")
    await add(running, first, grandmother, "grandparent")  # no phone, no consent
    other = await running.api.registered()

    refused = await add(running, other, grandmother, "grandparent")
    assert (refused.status_code, refused.json()["error"]["code"]) == (
        409,
        "dependant_of_another_account",
    )
    clock.advance(dt.timedelta(hours=24, minutes=1).total_seconds())
    other = await running.api.sign_in(other.phone)  # a day later: a new session
    taken = await add(running, other, grandmother, "grandparent")

    assert taken.status_code == 201, taken.text
    first = await running.api.sign_in(first.phone)
    assert (await running.client.get("/v1/me/dependants", headers=first.auth)).json() == []


async def test_consent_codes_are_resent_a_few_times_a_day_at_most(
    running: RunningApp, clock: ManualClock
):
    son = await running.api.registered()
    added = (await add(running, son, elder(), "parent", phone=random_phone())).json()
    answers = []
    for _ in range(6):
        clock.advance(61)
        answers.append(
            (
                await running.client.post(
                    f"/v1/me/dependants/{added['id']}/consent/resend", headers=son.auth
                )
            ).status_code
        )
    assert answers == [204, 204, 204, 204, 204, 429]
