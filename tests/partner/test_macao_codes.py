"""The reference Macao system on its own: key document, declarations, codes, keys at rest."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from partner.conftest import (
    BIR,
    FakeGuangdong,
    Macao,
    declaration,
    macao_code_keys,
    macao_settings,
)
from yuekang.clock import ManualClock
from yuekang.codec.errors import KeyNotValid
from yuekang.codec.exchange import EncryptionPublicKey
from yuekang.codec.keys import VerificationKey
from yuekang.codec.macao import read_macao_code
from yuekang_reference.macao import MacaoSettings, create_app


async def test_healthz(macao: Macao) -> None:
    response = await macao.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_key_document(macao: Macao) -> None:
    response = await macao.client.get("/v1/exchange/keys")
    assert response.status_code == 200
    assert "max-age" in response.headers["cache-control"]
    document = response.json()
    assert document["issuer"] == "MO"
    assert document["format"] == "MO1"
    kinds = [(k["purpose"], k["use"], k["alg"], k["state"]) for k in document["keys"]]
    assert kinds == [
        ("code", "sig", "ES256", "active"),
        ("exchange", "sig", "ES256", "active"),
        ("exchange", "enc", "ECDH-ES", "active"),
    ]
    code, sig, enc = document["keys"]
    now = macao.now()
    assert code["nbf"] <= now < now + macao.settings.code_lifetime_seconds <= code["exp"]
    assert "nbf" not in sig and "exp" not in enc
    for jwk in document["keys"]:
        assert "d" not in jwk
        assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
        assert len(jwk["kid"]) == 22
    # Each kid is its key's thumbprint: the loaders refuse anything else.
    assert VerificationKey.from_jwk(code).kid == code["kid"]
    assert VerificationKey.from_jwk(sig).kid == sig["kid"]
    assert EncryptionPublicKey.from_jwk(enc).kid == enc["kid"]
    assert len({code["kid"], sig["kid"], enc["kid"]}) == 3


async def test_keys_survive_a_restart(tmp_path: Path, macao: Macao) -> None:
    before = await macao.keys()
    again = create_app(macao.settings)
    async with (
        again.router.lifespan_context(again),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=again), base_url="http://m") as c,
    ):
        after = (await c.get("/v1/exchange/keys")).json()
    assert after == before


async def test_dev_secrets_are_generated_once(tmp_path: Path) -> None:
    settings = MacaoSettings(data_dir=tmp_path / "dev")
    documents = []
    for _ in range(2):
        app = create_app(settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as c,
        ):
            documents.append((await c.get("/v1/exchange/keys")).json())
    assert documents[0] == documents[1]
    secrets = tmp_path / "dev" / "secrets.json"
    assert secrets.stat().st_mode & 0o077 == 0


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MACAO_CODE_LIFETIME_SECONDS", "3600")
    monkeypatch.setenv("MACAO_NAT_WINDOW_HOURS", "48")
    monkeypatch.setenv("MACAO_GUANGDONG_URL", "http://gd.example:8000/")
    monkeypatch.setenv("MACAO_DATA_DIR", str(tmp_path))
    settings = MacaoSettings()
    assert settings.code_lifetime_seconds == 3600
    assert settings.nat_window_hours == 48
    assert settings.guangdong_url == "http://gd.example:8000"
    assert settings.data_dir == tmp_path
    assert MacaoSettings(code_lifetime_seconds=60).code_lifetime_seconds == 60


@pytest.mark.parametrize(
    ("answers", "colour"),
    [
        ({}, "verde"),
        ({"fever": True}, "amarelo"),
        ({"travel_14d": True}, "amarelo"),
        ({"contact_14d": True}, "vermelho"),
        ({"contact_14d": True, "fever": True, "travel_14d": True}, "vermelho"),
    ],
)
async def test_declaration_colours(macao: Macao, answers: dict[str, bool], colour: str) -> None:
    answer = await macao.declare(**answers, nat_negative_on="2020-05-01")
    assert answer["colour"] == colour
    keys = macao_code_keys(await macao.keys())
    verified = read_macao_code(answer["code"], keys, now=macao.now())
    claims = verified.claims
    assert (claims.iss, claims.cor, claims.nome, claims.tdoc) == ("MO", colour, "陳*文", "BIR")
    assert claims.tan == "2020-05-01"
    assert claims.exp - claims.iat == 21600
    assert answer["expires_at"] == claims.exp

    latest = await macao.client.get(f"/v1/persons/{answer['person_id']}/code")
    assert latest.status_code == 200
    assert latest.json() == answer


async def test_declaring_again_updates_the_same_person(macao: Macao) -> None:
    first = await macao.declare(fever=True)
    second = await macao.declare(doc_number="1234567(8)", name="陳 大文")
    assert second["person_id"] == first["person_id"]
    assert second["colour"] == "verde"
    latest = await macao.client.get(f"/v1/persons/{first['person_id']}/code")
    assert latest.json()["code"] == second["code"]


async def test_another_birth_date_for_a_known_document_is_refused(macao: Macao) -> None:
    await macao.declare()
    response = await macao.client.post(
        "/v1/declarations", json=declaration(birth_date="1991-01-02")
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "identity_mismatch"


async def test_other_documents_are_accepted(macao: Macao) -> None:
    answer = await macao.declare(doc_type="OUTRO", doc_number="X-99 12")
    claims = read_macao_code(answer["code"], macao_code_keys(await macao.keys()), now=macao.now())
    assert claims.claims.tdoc == "OUTRO"


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"doc_number": "22345678"}, "doc_number", "invalid_document"),  # BIR starts 1, 5 or 7
        ({"doc_number": "1234567"}, "doc_number", "invalid_document"),
        ({"doc_type": "PTM", "doc_number": "X12345678"}, "doc_number", "invalid_document"),
        ({"doc_type": "PASS", "doc_number": "E1234567<9"}, "doc_number", "invalid_document"),
        ({"doc_type": "OUTRO", "doc_number": "<script>"}, "doc_number", "invalid_document"),
        ({"doc_type": "HKID"}, "doc_type", "validation_error"),
        ({"fever": "yes"}, "fever", "validation_error"),
        ({"contact_14d": 1}, "contact_14d", "validation_error"),
        ({"birth_date": "02/01/1990"}, "birth_date", "validation_error"),
        ({"birth_date": 631152000}, "birth_date", "validation_error"),
        ({"birth_date": "2999-01-01"}, "birth_date", "validation_error"),
        ({"nat_negative_on": "2999-01-01"}, "nat_negative_on", "validation_error"),
        ({"phone": "66123456"}, "phone", "validation_error"),
        ({"name": ""}, "name", "validation_error"),
        ({"name": "x" * 101}, "name", "validation_error"),
        ({"extra": 1}, "extra", "validation_error"),
    ],
)
async def test_declaration_validation(
    macao: Macao, changes: dict[str, object], field: str, code: str
) -> None:
    response = await macao.client.post("/v1/declarations", json=declaration(**changes))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert field in [f["field"] for f in error["fields"]]


async def test_declaration_missing_fields(macao: Macao) -> None:
    response = await macao.client.post("/v1/declarations", json={"name": "陳大文"})
    assert response.status_code == 422
    fields = {f["field"] for f in response.json()["error"]["fields"]}
    assert {"doc_type", "doc_number", "birth_date", "phone", "fever"} <= fields


@pytest.mark.parametrize(
    "body", [b"{", b"[]", b'"text"', b"null", b"\xff\xfe", b'{"name": "a"' + b"]" * 10]
)
async def test_bad_bodies_are_4xx(macao: Macao, body: bytes) -> None:
    response = await macao.client.post(
        "/v1/declarations", content=body, headers={"Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"] in ("malformed_json", "validation_error")


async def test_oversized_body(macao: Macao) -> None:
    response = await macao.client.post(
        "/v1/declarations", content=b" " * 200_000, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_unknown_person(macao: Macao) -> None:
    missing = await macao.client.get("/v1/persons/6c2b1f7e-98a6-4a4e-9d43-5c3c1f0f2a11/code")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    junk = await macao.client.get("/v1/persons/..%2F..%2Fetc/code")
    assert junk.status_code in (404, 422)


async def test_personal_data_is_encrypted_at_rest(macao: Macao) -> None:
    await macao.declare(name="Chan Tai Man Unique", phone="+85366987654")
    database = sqlite3.connect(macao.settings.data_dir / "macao.db")
    try:
        dump = "\n".join(database.iterdump())
        pems = [row[0] for row in database.execute("SELECT private_pem FROM keys")]
    finally:
        database.close()
    for secret in ("Chan Tai Man Unique", BIR, "66987654", "1990-01-02"):
        assert secret not in dump
        assert secret.encode().hex().upper() not in dump  # blobs are dumped in hex
    assert len(pems) == 3
    assert all(pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") for pem in pems)


async def test_rotating_the_code_key(macao: Macao) -> None:
    old = await macao.declare()
    response = await macao.client.post("/v1/admin/keys/rotate", params={"purpose": "code"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    rotated = await macao.rotate("code")
    document = await macao.keys()
    states = {k["kid"]: k["state"] for k in document["keys"] if k["purpose"] == "code"}
    assert states == {rotated["retired"][0]: "retired", rotated["active"][0]: "active"}
    keys = macao_code_keys(document)
    new = await macao.declare()
    assert read_macao_code(new["code"], keys, now=macao.now()).kid == rotated["active"][0]
    # Whoever honours the key document judges the old key's codes key_not_valid.
    retired = rotated["retired"][0]
    keys[retired] = dataclasses.replace(keys[retired], compromised=True)
    with pytest.raises(KeyNotValid):
        read_macao_code(old["code"], keys, now=macao.now())


async def test_a_code_key_never_signs_past_its_end(
    tmp_path: Path, clock: ManualClock, guangdong: FakeGuangdong
) -> None:
    settings = macao_settings(tmp_path / "m", code_key_validity_days=1)
    app = create_app(settings, clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as c,
    ):
        macao = Macao(app, c, settings, clock, guangdong)
        first = await macao.declare()
        clock.advance(20 * 3600)
        second = await macao.declare()
        document = await macao.keys()
    keys = macao_code_keys(document)
    assert [k["state"] for k in document["keys"] if k["purpose"] == "code"] == ["active"] * 2
    now = macao.now()
    old = read_macao_code(first["code"], keys, now=now - 20 * 3600)
    new = read_macao_code(second["code"], keys, now=now)
    assert old.kid != new.kid
    (jwk,) = [k for k in document["keys"] if k["kid"] == new.kid]
    assert new.claims.exp <= jwk["exp"]


async def test_rotate_refuses_an_unknown_purpose(macao: Macao) -> None:
    token = macao.app.state.service.admin_token
    response = await macao.client.post(
        "/v1/admin/keys/rotate",
        params={"purpose": "everything"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 422


def test_cli_serve_is_defined(tmp_path: Path) -> None:
    from yuekang.cli.partner import partner_app

    result = CliRunner().invoke(partner_app, ["macao", "serve", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--port", "--host", "--data-dir", "--guangdong-url", "--issuer"):
        assert option in result.output


def test_settings_refuse_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="guangdong_url"):
        macao_settings(tmp_path, guangdong_url="ftp://gd")
    with pytest.raises(ValueError, match="pii_key"):
        macao_settings(tmp_path, pii_key="c2hvcnQ=")
    with pytest.raises(ValueError, match="two code lifetimes"):
        macao_settings(tmp_path, code_key_validity_days=1, code_lifetime_seconds=86400)
