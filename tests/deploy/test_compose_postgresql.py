"""deploy/compose.yaml brought up with podman-compose: the node answers /readyz once its schema was
made by the migrate service, signs a resident in and gives a code, and exchanges with the reference
Macao system -- a Macao resident's green code converted into a 粤康码 that says where it came from.

There is no registry for the postgres:15 image here: ``scripts/container postgres`` builds a
stand-in from Debian's postgresql-15 with the same variables, and ``POSTGRES_IMAGE`` names it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from support.containers import ROOT, SCRIPT, build_image, podman_env, skip_without_podman
from support.servers import free_port

pytestmark = pytest.mark.e2e

COMPOSE = shutil.which("podman-compose", path=str(Path(sys.executable).parent)) or "podman-compose"


def built(*args: str) -> str:
    done = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=1800, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[dict[str, str], str, str]]:
    skip_without_podman()
    image = build_image()
    env = {
        **podman_env(),
        "YUEKANG_IMAGE": image,
        "YUEKANG_REFERENCE_IMAGE": built("reference"),
        "POSTGRES_IMAGE": built("postgres"),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
        "YUEKANG_SECRETS__KEY_PASSPHRASE": secrets.token_urlsafe(24),
        "YUEKANG_SECRETS__SESSION_SECRET": secrets.token_urlsafe(32),
        "YUEKANG_SECRETS__OTP_SECRET": secrets.token_urlsafe(32),
        "YUEKANG_SECRETS__BLIND_INDEX_KEY": secrets.token_urlsafe(32),
        "YUEKANG_SECRETS__PII_KEYS": json.dumps({"k1": base64.b64encode(os.urandom(32)).decode()}),
        "YUEKANG_SECRETS__PII_ACTIVE_KEY_ID": "k1",
        "REGISTRY_CLIENT_SECRET": secrets.token_urlsafe(32),
        "YUEKANG_PORT": str(free_port()),
        "MACAO_PORT": str(free_port()),
    }
    project = ["-p", f"yktest{secrets.token_hex(3)}", "-f", str(ROOT / "deploy/compose.yaml")]

    def compose(*args: str, check: bool = True) -> str:
        done = subprocess.run(
            [COMPOSE, *project, *args], capture_output=True, text=True, env=env, timeout=600
        )
        if check:
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    try:
        compose("up", "-d")
        api = f"http://127.0.0.1:{env['YUEKANG_PORT']}"
        macao = f"http://127.0.0.1:{env['MACAO_PORT']}"
        for url in (f"{api}/readyz", f"{macao}/healthz"):
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    logs = compose("logs", check=False)
                    raise AssertionError(f"{url} did not answer:\n{logs[-4000:]}")
                time.sleep(1)
        # Trust is configured, as the README's tour does: Macao's key ids, given to Guangdong.
        kids = compose(
            "exec", "macao", "/opt/yuekang/bin/yuekang", "partner", "macao", "keys", "--ids",
            "--data-dir", "/data",
        ).split()  # fmt: skip
        assert kids
        compose(
            "exec", "yuekang", "/opt/yuekang/bin/yuekang", "exchange", "partner", "add", "macao",
            "--url", "http://macao:8100", *(f"--expect-kid={kid}" for kid in kids),
        )  # fmt: skip
        yield env, api, macao
    finally:
        compose("down", "--volumes", "--timeout", "5", check=False)


def test_the_node_signs_in_and_issues_codes(stack: tuple[dict[str, str], str, str]) -> None:
    _, api, _ = stack
    with httpx.Client(base_url=api, timeout=30) as client:
        # Migrated by the migrate service, not by the node: its start would have failed without.
        assert client.get("/readyz").status_code == 200
        phone = "+8613800138000"  # 张小三's, in the reference registry's sample people
        sent = client.post("/v1/auth/otp", json={"phone": phone}).json()
        token = client.post(
            "/v1/auth/token",
            json={"phone": phone, "challenge_id": sent["challenge_id"], "code": sent["dev_code"]},
        ).json()["access_token"]
        auth = {"authorization": f"Bearer {token}"}
        bound = client.put(
            "/v1/me/identity",
            headers=auth,
            json={"name": "张小三", "doc_type": "prc_id", "doc_number": "11010519491231002X",
                  "birth_date": "1949-12-31"},
        )  # fmt: skip
        # Proved by the registry container over the compose network.
        assert bound.status_code == 201, bound.text
        assert bound.json()["assurance"] == "proofed"
        assert client.post("/v1/codes", headers=auth).status_code == 201


def test_a_macao_code_is_converted_through_the_exchange(
    stack: tuple[dict[str, str], str, str],
) -> None:
    _, _, macao = stack
    today = dt.datetime.now(ZoneInfo("Asia/Macau")).date().isoformat()
    with httpx.Client(base_url=macao, timeout=30) as client:
        declared = client.post(
            "/v1/declarations",
            json={"name": "陳大文", "doc_type": "BIR", "doc_number": "51234567",
                  "birth_date": "1988-03-04", "phone": "+85366123456", "fever": False,
                  "contact_14d": False, "travel_14d": False, "nat_negative_on": today},
        )  # fmt: skip
        assert declared.status_code in (200, 201), declared.text
        converted = client.post(
            "/v1/conversions/guangdong",
            json={
                "person_id": declared.json()["person_id"],
                "delivery": "direct",
                "consent": {"recipient": "yk:gd", "accepted": True, "text_version": "2020-05.1",
                            "fields": ["name", "document", "birth_date", "phone", "status",
                                       "nat", "travel"]},
            },
        )  # fmt: skip
        assert converted.status_code == 201, converted.text
        code = converted.json()["guangdong"]["code"]
        # Issued by the Guangdong node, delivered back through the exchange.
        assert (code["status"], code["qr_text"][:4]) == ("green", "YK1:")
