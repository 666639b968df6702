"""Binding a real-name identity: validation, encryption at rest, blind index, audit."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from conftest import TEST_SECRETS, RunningApp
from support.api import random_prc_id
from yuekang.audit.models import AuditEvent, SelfRead
from yuekang.pii import PiiCipher, PiiDecryptionError
from yuekang.residents.models import Identity, Resident


async def test_binding_returns_only_masked_values(running: RunningApp):
    resident = await running.api.sign_in()
    number, birth = random_prc_id()
    response = await running.api.bind(resident, name="张小三", doc_number=number, birth_date=birth)
    assert response.status_code == 201
    body = response.json()
    assert body["masked_name"] == "张*三"
    assert body["masked_doc_number"] == number[:2] + "*" * 14 + number[-2:]
    assert number not in response.text and "张小三" not in response.text
    me = (await running.client.get("/v1/me", headers=resident.auth)).json()
    assert me["identity"]["masked_name"] == "张*三"
    assert me["status"]["status"] == "green"


@pytest.mark.parametrize(
    ("doc_type", "doc_number", "birth_date", "field", "reason"),
    [
        ("prc_id", "110105194912310021", "1949-12-31", "doc_number", "check_digit"),
        ("prc_id", "11010519491231002", "1949-12-31", "doc_number", "format"),
        ("prc_id", "11010519491231002X", "1950-01-01", "birth_date", "birth_date_mismatch"),
        ("prc_id", "810000199001010011", "1990-01-01", "doc_number", "region"),
        ("hkid", "A123456(4)", "1980-01-01", "doc_number", "check_digit"),
        ("passport", "L898902C35", "1980-01-01", "doc_number", "check_digit"),
        ("hk_macao_permit", "X12345678", "1980-01-01", "doc_number", "format"),
        ("macao_id", "2234567(8)", "1980-01-01", "doc_number", "format"),
    ],
)
async def test_bad_documents_are_a_422_naming_field_and_reason(
    running: RunningApp, doc_type, doc_number, birth_date, field, reason
):
    resident = await running.api.sign_in()
    response = await running.api.bind(
        resident,
        name="张三",
        doc_type=doc_type,
        doc_number=doc_number,
        birth_date=dt.date.fromisoformat(birth_date),
        enrol=False,
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_document"
    assert error["fields"][0]["field"] == field
    assert error["fields"][0]["reason"] == reason


@pytest.mark.parametrize(
    ("doc_type", "doc_number"),
    [
        ("hkid", "A123456(3)"),
        ("passport", "L898902C36"),
        ("passport", "E12345678"),
        ("hk_macao_permit", "H12345678"),
        ("macao_id", "1234567(8)"),
    ],
)
async def test_every_document_type_binds(running: RunningApp, doc_type, doc_number):
    resident = await running.api.sign_in()
    response = await running.api.bind(
        resident,
        name="Chan Tai Man",
        doc_type=doc_type,
        doc_number=doc_number,
        birth_date=dt.date(1980, 1, 1),
    )
    assert response.status_code == 201, response.text
    assert response.json()["doc_type"] == doc_type
    assert response.json()["assurance"] == "proofed"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"doc_type": "driving_licence"}, "doc_type"),
        ({"birth_date": "31/12/1949"}, "birth_date"),
        ({"name": ""}, "name"),
        ({"name": "张\x00三"}, "name"),
        ({"nickname": "x"}, "nickname"),
        ({"doc_number": "1" * 40}, "doc_number"),
    ],
)
async def test_malformed_identity_fields_are_named(running: RunningApp, patch, field):
    resident = await running.api.sign_in()
    number, birth = random_prc_id()
    body = {
        "name": "张三",
        "doc_type": "prc_id",
        "doc_number": number,
        "birth_date": birth.isoformat(),
        **patch,
    }
    response = await running.client.put("/v1/me/identity", headers=resident.auth, json=body)
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["error"]["fields"]] == [field]


async def test_binding_is_once_and_a_document_belongs_to_one_account(running: RunningApp):
    first = await running.api.sign_in()
    number, birth = random_prc_id()
    assert (await running.api.bind(first, doc_number=number, birth_date=birth)).status_code == 201
    again = await running.api.bind(first, doc_number=number, birth_date=birth)
    assert again.status_code == 200
    other_number, other_birth = random_prc_id()
    change = await running.api.bind(
        first, doc_number=other_number, birth_date=other_birth, enrol=False
    )
    assert change.status_code == 409
    assert change.json()["error"]["code"] == "identity_already_bound"
    # A second phone registered to the same person: the first account proved the document too
    # and its phone is still the holder's, so the document stays where it is.
    second = await running.api.sign_in()
    taken = await running.api.bind(second, doc_number=number, birth_date=birth)
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "document_already_bound"


async def test_personal_data_is_encrypted_at_rest(running: RunningApp):
    resident = await running.api.sign_in()
    number, birth = random_prc_id()
    assert (
        await running.api.bind(resident, name="欧阳小明", doc_number=number, birth_date=birth)
    ).status_code == 201
    me = (await running.client.get("/v1/me", headers=resident.auth)).json()
    async with running.context.sessionmaker() as session:
        identity = await session.get(Identity, uuid.UUID(me["resident_id"]))
        person = await session.get(Resident, uuid.UUID(me["resident_id"]))
    assert identity is not None and person is not None
    stored = b"".join(
        [
            identity.name_ct,
            identity.doc_number_ct,
            identity.birth_date_ct,
            identity.doc_index,
            person.phone_ct,
            person.phone_index,
        ]
    )
    for secret in ("欧阳小明", number, birth.isoformat(), resident.phone, resident.phone[3:]):
        assert secret.encode() not in stored
    assert identity.key_id == "t1"
    cipher = PiiCipher(TEST_SECRETS.pii_key_bytes(), "t1")
    context = f"identities.doc_number:{identity.resident_id}"
    assert cipher.decrypt(identity.doc_number_ct, key_id="t1", context=context) == number
    # A ciphertext moved to another column or row does not decrypt.
    with pytest.raises(PiiDecryptionError):
        cipher.decrypt(identity.name_ct, key_id="t1", context=context)


async def test_reading_ones_own_identity_is_counted_not_logged(running: RunningApp):
    resident = await running.api.registered()
    response = await running.client.get("/v1/me/identity", headers=resident.auth)
    assert response.status_code == 200
    resident_id = (await running.client.get("/v1/me", headers=resident.auth)).json()["resident_id"]
    async with running.context.sessionmaker() as session:
        actions = (
            (
                await session.execute(
                    select(AuditEvent.action).where(AuditEvent.subject_id == resident_id)
                )
            )
            .scalars()
            .all()
        )
        counted = (
            await session.execute(
                select(SelfRead.action, SelfRead.count).where(SelfRead.resident_id == resident_id)
            )
        ).all()
    assert actions.count("identity.bind") == 1
    # The resident's own reads are counted per day, not logged one row each.
    assert "identity.read" not in actions
    assert dict(counted)["identity.read"] == 2


async def test_page_loads_do_not_grow_the_audit_log(running: RunningApp):
    resident = await running.api.registered()
    resident_id = (await running.client.get("/v1/me", headers=resident.auth)).json()["resident_id"]

    async def logged() -> int:
        async with running.context.sessionmaker() as session:
            rows = await session.execute(
                select(AuditEvent.id).where(AuditEvent.subject_id == resident_id)
            )
            return len(rows.all())

    before = await logged()
    for _ in range(20):
        assert (await running.client.get("/v1/me", headers=resident.auth)).status_code == 200
    assert await logged() == before
    async with running.context.sessionmaker() as session:
        counted = dict(
            (
                await session.execute(
                    select(SelfRead.action, SelfRead.count).where(
                        SelfRead.resident_id == resident_id
                    )
                )
            ).all()
        )
    # Binding read the phone once more (to ask the carrier).
    assert counted == {"identity.read": 21, "phone.read": 22}


async def test_reading_an_unbound_identity_is_404(running: RunningApp):
    resident = await running.api.sign_in()
    response = await running.client.get("/v1/me/identity", headers=resident.auth)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "identity_not_bound"


async def test_pii_key_rotation_keeps_old_rows_readable():
    old = PiiCipher({"k1": b"\x01" * 32}, "k1")
    ciphertext, key_id = old.encrypt("张小三", context="identities.name:x")
    rotated = PiiCipher({"k1": b"\x01" * 32, "k2": b"\x02" * 32}, "k2")
    assert rotated.decrypt(ciphertext, key_id=key_id, context="identities.name:x") == "张小三"
    assert rotated.encrypt("张小三", context="identities.name:x")[1] == "k2"


async def test_a_birth_date_in_the_future_is_refused(running: RunningApp):
    resident = await running.api.sign_in()
    response = await running.api.bind(
        resident,
        name="Chan Tai Man",
        doc_type="passport",
        doc_number="K12345678",
        birth_date=dt.date(2999, 1, 1),
        enrol=False,
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0] == {
        "field": "birth_date",
        "reason": "date",
        "message": "出生日期不能晚于今天",
        "detail": "in the future",
    }
