"""The whole flow against a real ``yuekang serve`` process over HTTP, as a phone and a gate would
do it: OTP, identity, code, PNG, QR decoding, offline verification, online verification."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import zxingcpp
from PIL import Image

from support.api import answer
from support.servers import YUEKANG, serve, server_env

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(fresh_database_url: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    env = server_env(fresh_database_url, tmp_path / "keys")
    with serve(env, tmp_path) as running:
        yield running.base, env


def test_resident_to_checkpoint_over_real_http(server, tmp_path: Path):
    base, env = server
    assert not (tmp_path / "keys" / "dev-secrets.json").stat().st_mode & 0o077
    with httpx.Client(base_url=base, timeout=10) as client:
        sent = client.post("/v1/auth/otp", json={"phone": "+8613800138000"})
        assert sent.status_code == 200
        token = client.post(
            "/v1/auth/token", json={"phone": "+8613800138000", **answer(sent.json())}
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        bound = client.put(
            "/v1/me/identity",
            headers=auth,
            json={
                "name": "张小三",
                "doc_type": "prc_id",
                "doc_number": "11010519491231002X",
                "birth_date": "1949-12-31",
            },
        )
        assert bound.status_code == 201, bound.text
        code = client.post("/v1/codes", headers=auth)
        assert code.status_code == 201
        qr_text = code.json()["qr_text"]
        png = client.get(code.json()["png_url"], headers=auth)
        assert png.status_code == 200
        decoded = zxingcpp.read_barcodes(
            Image.open(io.BytesIO(png.content)), formats=zxingcpp.BarcodeFormat.QRCode
        )
        assert [r.text for r in decoded] == [qr_text]
        (tmp_path / "code.png").write_bytes(png.content)
        (tmp_path / "jwks.json").write_text(client.get("/.well-known/jwks.json").text)

    offline = subprocess.run(
        [
            YUEKANG,
            "verify",
            "--jwks",
            str(tmp_path / "jwks.json"),
            "--image",
            str(tmp_path / "code.png"),
            "--json",
            "--language",
            "en",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert offline.returncode == 0, offline.stderr
    verdict = json.loads(offline.stdout)
    assert verdict["verdict"] == "valid"
    assert verdict["status"] == "green"
    assert verdict["masked_name"] == "张*三"

    forged = qr_text[:-6] + ("AAAAAA" if not qr_text.endswith("AAAAAA") else "BBBBBB")
    refused = subprocess.run(
        [YUEKANG, "verify", "--jwks", f"{base}/.well-known/jwks.json", forged],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "bad_signature" in refused.stdout

    created = subprocess.run(
        [YUEKANG, "checkpoints", "create", "Gongbei port"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=True,
    )
    gate = {"Authorization": f"Bearer {created.stdout.strip()}"}
    online = httpx.post(f"{base}/v1/verify", json={"qr_text": qr_text}, headers=gate)
    assert online.status_code == 200
    assert online.json()["verdict"] == "valid"
    assert online.json()["code_id"] == verdict["code_id"]

    subprocess.run(
        [
            YUEKANG,
            "status",
            "set",
            "--doc-type",
            "prc_id",
            "--doc-number",
            "11010519491231002X",
            "--status",
            "red",
            "--reason",
            "confirmed case",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=True,
    )
    revoked = httpx.post(f"{base}/v1/verify", json={"qr_text": qr_text}, headers=gate).json()
    assert revoked["verdict"] == "invalid"
    assert [r["code"] for r in revoked["reasons"]] == ["revoked"]
