"""Checkpoints recognise Macao: once the partner is registered, the trust bundle lists Macao as an
issuer and `POST /v1/verify` judges `MO1:` codes in the same verdict model; a partner key retired
here refuses its codes on both paths. Each test has a database of its own (one bundle each)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
from pathlib import Path

import pytest

from api.test_trust_bundle import fetch, pinned_anchor
from conftest import RunningApp, make_settings
from yuekang.checkpoints import service as checkpoints
from yuekang.clock import ManualClock, epoch
from yuekang.codec.exchange import EncryptionKey
from yuekang.codec.keys import SigningKey
from yuekang.codec.macao import MacaoCodeClaims, sign_macao_code
from yuekang.config import Settings
from yuekang.exchange import partners
from yuekang.principals import Actor, Role
from yuekang.verifier import TrustStore

MACAO_TIME = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture
def settings(fresh_database_url: str, tmp_path: Path) -> Settings:
    return make_settings(fresh_database_url, tmp_path / "keys")


@dataclasses.dataclass
class Macao:
    code_key: SigningKey
    sig_key: SigningKey
    enc_key: EncryptionKey

    def document(self) -> dict[str, object]:
        return {
            "issuer": "MO",
            "format": "MO1",
            "keys": [
                {**self.code_key.public().to_jwk(), "purpose": "code", "state": "active"},
                {**self.sig_key.public().to_jwk(), "purpose": "exchange", "state": "active"},
                {**self.enc_key.public().to_jwk(), "purpose": "exchange", "state": "active"},
            ],
        }

    def code(self, now: dt.datetime, colour: str = "verde") -> str:
        claims = MacaoCodeClaims(
            iss="MO",
            cti=secrets.token_urlsafe(16),
            iat=epoch(now) - 60,
            exp=epoch(now) + 6 * 3600,
            cor=colour,  # type: ignore[arg-type]
            nome="陳*文",
            tdoc="BIR",
            tan=now.astimezone(MACAO_TIME).date().isoformat(),
        )
        return sign_macao_code(claims, self.code_key)


async def register(running: RunningApp) -> Macao:
    macao = Macao(
        SigningKey.generate("ES256"), SigningKey.generate("ES256"), EncryptionKey.generate()
    )
    async with running.context.sessionmaker() as session, session.begin():
        await partners.save(
            session,
            partner_id="macao",
            base_url="http://127.0.0.1:9",
            document=partners.parse_key_document(json.loads(json.dumps(macao.document()))),
            actor=Actor.cli(),
            now=running.context.clock.now(),
        )
    return macao


async def verify(running: RunningApp, gate: str, qr_text: str) -> dict[str, object]:
    response = await running.client.post(
        "/v1/verify",
        headers={"Authorization": f"Bearer {gate}", "Accept-Language": "en"},
        json={"qr_text": qr_text},
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_a_macao_code_is_verified_online_once_macao_is_registered(
    running: RunningApp, clock: ManualClock
) -> None:
    gate = await running.checkpoint_key()
    before = await register_later(running)
    code = before.code(clock.now())
    refused = await verify(running, gate, code)
    assert refused["verdict"] == "invalid"
    assert refused["reasons"][0]["code"] == "untrusted_issuer"  # type: ignore[index]

    async with running.context.sessionmaker() as session, session.begin():
        await partners.save(
            session,
            partner_id="macao",
            base_url="http://127.0.0.1:9",
            document=partners.parse_key_document(before.document()),
            actor=Actor.cli(),
            now=clock.now(),
        )
    running.context.keyring.invalidate()
    judged = await verify(running, gate, code)

    assert judged["verdict"] == "valid" and judged["status"] == "green"
    assert judged["origin"] == "issued_by_macao" and judged["issuer"] == "MO"
    assert judged["masked_name"] == "陳*文"
    assert judged["decision"] == "allow"
    yellow = await verify(running, gate, before.code(clock.now(), "amarelo"))
    assert (yellow["status"], yellow["decision"]) == ("yellow", "deny")


async def register_later(running: RunningApp) -> Macao:
    """A Macao whose keys are not registered yet."""
    return Macao(
        SigningKey.generate("ES256"), SigningKey.generate("ES256"), EncryptionKey.generate()
    )


async def test_the_bundle_lists_macao_and_a_checkpoint_judges_its_codes_offline(
    running: RunningApp, clock: ManualClock
) -> None:
    gate = await running.checkpoint_key()
    _, _, first = await fetch(running, gate)
    macao = await register(running)

    status, etag, text = await fetch(running, gate, etag='"v1"')

    # registering a partner changed the bundle: a new version, not a 304
    assert (status, etag) == (200, '"v2"')
    now = epoch(clock.now())
    store = TrustStore(await pinned_anchor(running)).load(first, now=now).load(text, now=now)
    assert [p.issuer for p in store.bundle.issuers] == ["MO"]  # type: ignore[union-attr]
    verdict = store.verify(macao.code(clock.now()), now=now)
    assert verdict.valid and verdict.origin == "issued_by_macao"


async def test_a_partner_key_retired_here_refuses_its_codes_online_and_offline(
    running: RunningApp, clock: ManualClock
) -> None:
    gate = await running.checkpoint_key()
    macao = await register(running)
    code = macao.code(clock.now())
    assert (await verify(running, gate, code))["verdict"] == "valid"

    async with running.context.sessionmaker() as session, session.begin():
        await partners.retire_key(
            session,
            partner_id="macao",
            kid=macao.code_key.kid,
            actor=Actor.cli(),
            now=clock.now(),
        )
    running.context.keyring.invalidate()

    online = await verify(running, gate, code)
    assert online["verdict"] == "invalid"
    assert online["reasons"][0]["code"] == "key_not_valid"  # type: ignore[index]
    _, _, text = await fetch(running, gate)
    store = TrustStore(await pinned_anchor(running)).load(text, now=epoch(clock.now()))
    offline = store.verify(code, now=epoch(clock.now()))
    assert [r.value for r in offline.reasons] == ["key_not_valid"]


async def test_a_macao_scan_is_recorded_at_the_checkpoint_with_nothing_personal(
    running: RunningApp, clock: ManualClock
) -> None:
    async with running.context.sessionmaker() as session, session.begin():
        checkpoint, gate = await checkpoints.create_checkpoint(
            session, name="Gongbei port", actor=Actor.cli(), now=clock.now()
        )
    macao = await register(running)
    running.context.keyring.invalidate()

    judged = await verify(running, gate, macao.code(clock.now()))

    epidemiologist = await running.operator_token(Role.EPIDEMIOLOGIST)
    scans = await running.client.get(
        f"/v1/admin/checkpoints/{checkpoint.id}/scans",
        headers={"Authorization": f"Bearer {epidemiologist}"},
        params={
            "from": (clock.now() - dt.timedelta(minutes=5)).isoformat(),
            "to": (clock.now() + dt.timedelta(minutes=5)).isoformat(),
            "case_reference": "case 2026-1126",
        },
    )
    assert scans.status_code == 200, scans.text
    [record] = scans.json()
    assert record["code_id"] == judged["code_id"] and record["verdict"] == "valid"
    assert "陳" not in scans.text
