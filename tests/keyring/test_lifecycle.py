"""Signing-key lifecycle as checkpoints see it through the JWKS, on a database of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import RunningApp, make_settings, start_app
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.config import KeySettings
from yuekang.principals import Role
from yuekang.verifier import Verifier


@pytest.fixture
async def keyed(
    fresh_database_url: str, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[RunningApp]:
    settings = make_settings(
        fresh_database_url,
        tmp_path,
        keys=KeySettings(ring_refresh_seconds=0, publish_lead_seconds=3600, validity_days=30),
    )
    async for app in start_app(settings, clock, MemorySmsSender()):
        yield app


async def _admin(app: RunningApp) -> dict[str, str]:
    return {"Authorization": f"Bearer {await app.operator_token(Role.ADMIN)}"}


async def _jwks_kids(app: RunningApp) -> list[str]:
    response = await app.client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return [k["kid"] for k in response.json()["keys"]]


async def test_jwks_is_cacheable_and_revalidates(keyed: RunningApp):
    first = await keyed.client.get("/.well-known/jwks.json")
    assert first.headers["content-type"] == "application/jwk-set+json"
    assert first.headers["cache-control"] == "public, max-age=300"
    body = first.json()
    assert body["issuer"] == "yk:gd"
    [key] = body["keys"]
    assert set(key) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert len(key["kid"]) == 22
    same = await keyed.client.get(
        "/.well-known/jwks.json", headers={"If-None-Match": first.headers["etag"]}
    )
    assert same.status_code == 304
    await keyed.client.post("/v1/admin/keys", json={}, headers=await _admin(keyed))
    changed = await keyed.client.get(
        "/.well-known/jwks.json", headers={"If-None-Match": first.headers["etag"]}
    )
    assert changed.status_code == 200
    assert changed.headers["etag"] != first.headers["etag"]


async def test_a_new_key_is_published_a_sync_interval_before_it_signs(
    keyed: RunningApp, clock: ManualClock
):
    admin = await _admin(keyed)
    resident = await keyed.api.registered()
    old_kid = (await _jwks_kids(keyed))[0]
    created = await keyed.client.post("/v1/admin/keys", json={"alg": "EdDSA"}, headers=admin)
    assert created.status_code == 201
    new = created.json()
    assert new["state"] == "pending"
    assert new["alg"] == "EdDSA"
    assert set(await _jwks_kids(keyed)) == {old_kid, new["kid"]}

    # A checkpoint syncs now, before the new key signs anything.
    synced = Verifier.from_jwks((await keyed.client.get("/.well-known/jwks.json")).json())

    code = await keyed.api.code(resident)
    assert code["qr_text"]  # still signed by the old key
    early = await keyed.client.post(f"/v1/admin/keys/{new['kid']}/activate", headers=admin)
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "key_not_ready"

    clock.advance(3600)
    activated = await keyed.client.post(f"/v1/admin/keys/{new['kid']}/activate", headers=admin)
    assert activated.status_code == 200
    assert activated.json()["state"] == "active"
    await keyed.api.renew(resident)
    after = await keyed.api.code(resident)
    verdict = synced.verify(after["qr_text"], now=int(clock.now().timestamp()))
    assert verdict.valid
    assert verdict.kid == new["kid"]
    # The old code still verifies: its retired key stays published.
    assert old_kid in await _jwks_kids(keyed)
    assert synced.verify(code["qr_text"], now=int(clock.now().timestamp())).valid


async def test_a_retired_key_stays_published_until_its_codes_expired(
    keyed: RunningApp, clock: ManualClock
):
    admin = await _admin(keyed)
    [old_kid] = await _jwks_kids(keyed)
    new = (await keyed.client.post("/v1/admin/keys", json={}, headers=admin)).json()
    clock.advance(3600)
    await keyed.client.post(f"/v1/admin/keys/{new['kid']}/activate", headers=admin)
    listed = (await keyed.client.get("/v1/admin/keys", headers=admin)).json()
    assert {k["kid"]: k["state"] for k in listed} == {old_kid: "retired", new["kid"]: "active"}
    clock.advance(86400 - 1)
    assert old_kid in await _jwks_kids(keyed)
    clock.advance(1)
    assert await _jwks_kids(keyed) == [new["kid"]]


async def test_a_compromised_key_is_withdrawn_at_once(keyed: RunningApp):
    admin = await _admin(keyed)
    resident = await keyed.api.registered()
    code = await keyed.api.code(resident)
    [kid] = await _jwks_kids(keyed)
    gate = {"Authorization": f"Bearer {await keyed.checkpoint_key()}"}
    retired = await keyed.client.post(
        f"/v1/admin/keys/{kid}/retire", json={"compromised": True}, headers=admin
    )
    assert retired.json()["state"] == "compromised"
    assert await _jwks_kids(keyed) == []
    verdict = await keyed.client.post("/v1/verify", json={"qr_text": code["qr_text"]}, headers=gate)
    assert verdict.json()["reasons"][0]["code"] == "key_not_valid"
    refused = await keyed.api.issue(resident)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "no_signing_key"


async def test_a_key_never_signs_a_code_that_would_outlive_it(
    keyed: RunningApp, clock: ManualClock
):
    resident = await keyed.api.registered()
    # The dev key is valid 30 days; 30 minutes before its end, a 1-hour code would outlive it.
    clock.advance(30 * 86400 - 1800)
    resident = await keyed.api.sign_in(resident.phone)
    refused = await keyed.api.issue(resident)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "no_signing_key"


async def test_only_admins_manage_keys(keyed: RunningApp):
    for role in (Role.OPERATOR, Role.EPIDEMIOLOGIST):
        headers = {"Authorization": f"Bearer {await keyed.operator_token(role)}"}
        response = await keyed.client.post("/v1/admin/keys", json={}, headers=headers)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "role_required"
    assert (await keyed.client.get("/v1/admin/keys")).status_code == 401


async def test_another_process_sees_a_rotation_within_the_refresh_interval(
    fresh_database_url: str, tmp_path: Path, clock: ManualClock
):
    settings = make_settings(
        fresh_database_url,
        tmp_path,
        keys=KeySettings(ring_refresh_seconds=0, publish_lead_seconds=0),
    )
    async for first in start_app(settings, clock, MemorySmsSender()):
        async for second in start_app(settings, clock, MemorySmsSender(), bootstrap=False):
            admin = await _admin(first)
            new = (await first.client.post("/v1/admin/keys", json={}, headers=admin)).json()
            await first.client.post(f"/v1/admin/keys/{new['kid']}/activate", headers=admin)
            resident = await second.api.registered()
            code = await second.api.code(resident)
            gate = {"Authorization": f"Bearer {await second.checkpoint_key()}"}
            verdict = (
                await first.client.post(
                    "/v1/verify", json={"qr_text": code["qr_text"]}, headers=gate
                )
            ).json()
            assert verdict["kid"] == new["kid"]
