"""The whole flow against a real ``yuekang serve`` process over HTTP, as a phone and a gate would
do it: OTP, identity, code, PNG, QR decoding, offline verification, online verification."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import zxingcpp
from PIL import Image

pytestmark = pytest.mark.e2e

YUEKANG = shutil.which("yuekang", path=str(Path(sys.executable).parent)) or "yuekang"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(fresh_database_url: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    env = {
        **os.environ,
        "YUEKANG_ENV": "dev",
        "YUEKANG_DATABASE_URL": fresh_database_url,
        "YUEKANG_KEYS_DIR": str(tmp_path / "keys"),
    }
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [YUEKANG, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "serve.log").read_text())
            time.sleep(0.2)
        yield base, env
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_resident_to_checkpoint_over_real_http(server, tmp_path: Path):
    base, env = server
    assert not (tmp_path / "keys" / "dev-secrets.json").stat().st_mode & 0o077
    with httpx.Client(base_url=base, timeout=10) as client:
        sent = client.post("/v1/auth/otp", json={"phone": "+8613800138000"})
        assert sent.status_code == 200
        token = client.post(
            "/v1/auth/token", json={"phone": "+8613800138000", "code": sent.json()["dev_code"]}
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
        decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
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
