"""Checkpoints have a kind, and their policy turns a verdict into allow, deny or manual check;
their keys can be rotated and disabled; a device learns its kind from its signed registration."""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import RunningApp
from yuekang.checkpoints import registration
from yuekang.codec.keys import VerificationKey, b64url_decode, b64url_encode
from yuekang.principals import Role


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def new_checkpoint(running: RunningApp, kind: str) -> dict[str, str]:
    admin = bearer(await running.operator_token(Role.ADMIN))
    created = await running.client.post(
        "/v1/admin/checkpoints",
        headers=admin,
        json={"name": f"{kind} {uuid.uuid4().hex[:6]}", "kind": kind, "region_code": "440402"},
    )
    assert created.status_code == 201, created.text
    body: dict[str, str] = created.json()
    return body


async def decision(running: RunningApp, key: str, qr_text: str) -> tuple[str, str, str]:
    answer = (
        await running.client.post("/v1/verify", headers=bearer(key), json={"qr_text": qr_text})
    ).json()
    return answer["verdict"], answer["decision"], answer["decision_reason"]


async def test_each_kind_of_place_applies_its_policy(running: RunningApp):
    venue = await new_checkpoint(running, "venue")
    border = await new_checkpoint(running, "border")
    resident = await running.api.registered()
    untested = await running.api.code(resident)

    assert await decision(running, venue["api_key"], untested["qr_text"]) == (
        "valid", "allow", "green",
    )  # fmt: skip
    assert await decision(running, border["api_key"], untested["qr_text"]) == (
        "valid", "deny", "no_recent_test",
    )  # fmt: skip

    lab = await running.feed_key("nat-results")
    row = {
        "doc_type": "prc_id",
        "doc_number": resident.doc_number,
        "result": "negative",
        "sampled_at": running.context.clock.now().isoformat(),
        "lab": "Zhuhai CDC",
    }
    pushed = await running.client.post(
        "/v1/feeds/nat-results",
        content=json.dumps(row) + "\n",
        headers={**bearer(lab), "Content-Type": "application/x-ndjson", "Idempotency-Key": "n1"},
    )
    assert pushed.status_code == 201, pushed.text
    tested = await running.api.code(resident)
    assert await decision(running, border["api_key"], tested["qr_text"]) == (
        "valid", "allow", "green_with_recent_test",
    )  # fmt: skip
    forged = tested["qr_text"][:-4] + ("AAAA" if not tested["qr_text"].endswith("AAAA") else "BBBB")
    assert await decision(running, border["api_key"], forged) == (
        "invalid", "deny", "bad_signature",
    )  # fmt: skip


async def test_a_rotated_key_replaces_the_old_and_a_disabled_checkpoint_is_shut_out(
    running: RunningApp,
):
    admin = bearer(await running.operator_token(Role.ADMIN))
    gate = await new_checkpoint(running, "transport")
    code = await running.api.code(await running.api.registered())

    rotated = await running.client.post(
        f"/v1/admin/checkpoints/{gate['id']}/rotate-key", headers=admin
    )
    assert rotated.status_code == 200, rotated.text
    new_key = rotated.json()["api_key"]
    old = await running.client.post(
        "/v1/verify", headers=bearer(gate["api_key"]), json={"qr_text": code["qr_text"]}
    )
    assert old.status_code == 401
    assert (await decision(running, new_key, code["qr_text"]))[1] == "allow"

    disabled = await running.client.post(
        f"/v1/admin/checkpoints/{gate['id']}/disable", headers=admin
    )
    assert disabled.status_code == 204
    shut = await running.client.post(
        "/v1/verify", headers=bearer(new_key), json={"qr_text": code["qr_text"]}
    )
    assert shut.status_code == 401
    missing = await running.client.post(
        f"/v1/admin/checkpoints/{uuid.uuid4()}/disable", headers=admin
    )
    assert missing.status_code == 404


async def test_a_checkpoint_needs_a_known_kind_and_region(running: RunningApp):
    admin = bearer(await running.operator_token(Role.ADMIN))
    for body in (
        {"name": "x", "kind": "casino"},
        {"name": "x", "kind": "venue", "region_code": "990000"},
        {"name": "x", "kind": "venue", "region_code": "44"},
    ):
        refused = await running.client.post("/v1/admin/checkpoints", headers=admin, json=body)
        assert refused.status_code == 422, body


async def test_a_device_receives_the_kind_it_was_registered_with_signed_by_the_anchor(
    running: RunningApp,
):
    """The scanner applies the kind it fetched (GET /v1/checkpoint), not one chosen on the
    device: what the operator registered is what each checkpoint's key receives, under the
    anchor the device pinned (the one GET /v1/trust-anchor publishes)."""
    anchor = VerificationKey.from_jwk((await running.client.get("/v1/trust-anchor")).json())
    received = {}
    for kind in ("border", "venue", "transport"):
        created = await new_checkpoint(running, kind)
        answer = await running.client.get("/v1/checkpoint", headers=bearer(created["api_key"]))
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/jose"
        signed = registration.read(answer.text, anchor)
        assert (str(signed.checkpoint), signed.name) == (created["id"], created["name"])
        received[kind] = signed.kind
    assert received == {"border": "border", "venue": "venue", "transport": "transport"}

    # Changed on the way (a venue's statement claiming border): the device refuses it.
    head, payload, signature = answer.text.split(".")
    claims = json.loads(b64url_decode(payload))
    altered = b64url_encode(json.dumps({**claims, "kind": "venue"}).encode())
    with pytest.raises(registration.RegistrationError):
        registration.read(f"{head}.{altered}.{signature}", anchor)

    assert (await running.client.get("/v1/checkpoint")).status_code == 401
    wrong = await running.client.get("/v1/checkpoint", headers=bearer("ykc_0_nothing"))
    assert wrong.status_code == 401
