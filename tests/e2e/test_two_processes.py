"""Two `yuekang serve` processes on one PostgreSQL: nothing that must be consistent lives in one
process's memory. A revocation, a key rotation, a compromised key and a rate limit made through
one process hold on the other."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.api import registered_over_http
from support.postgres import create_database
from support.servers import Server, cli, serve, server_env
from yuekang.db import migrate

pytestmark = pytest.mark.e2e
REFRESH = 0.5


@pytest.fixture
def two(pg_server: str, tmp_path: Path) -> Iterator[tuple[Server, Server, dict[str, str]]]:
    url = create_database(pg_server)
    migrate(url)
    env = server_env(
        url,
        tmp_path / "keys",
        YUEKANG_KEYS__RING_REFRESH_SECONDS=str(REFRESH),
        YUEKANG_KEYS__PUBLISH_LEAD_SECONDS="0",
        YUEKANG_OTP__PER_PHONE_LIMIT="3",
        YUEKANG_OTP__RESEND_SECONDS="0",
    )
    with serve(env, tmp_path, "a") as a, serve(env, tmp_path, "b") as b:
        admin = cli(env, tmp_path, "operators", "create", "root", "--role", "admin")
        yield a, b, {"Authorization": f"Bearer {admin}"}


def _kid(qr_text: str) -> str:
    header = qr_text.removeprefix("YK1:").split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * 4))["kid"]
    return kid


def _eventually(check: Any, seconds: float = 10) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_what_one_process_decides_holds_on_the_other(
    two: tuple[Server, Server, dict[str, str]], tmp_path: Path
) -> None:
    a, b, admin = two
    gate = cli(a.env, tmp_path, "checkpoints", "create", "Hengqin")
    checkpoint = {"Authorization": f"Bearer {gate}"}
    with (
        httpx.Client(base_url=a.base, timeout=30) as on_a,
        httpx.Client(base_url=b.base, timeout=30) as on_b,
    ):
        # A revocation made through A: B refuses the code at once (no cache stands between).
        first = registered_over_http(on_a, "+8613900139001", registry=a.registry)
        auth, number = first.auth, first.doc_number
        code = on_a.post("/v1/codes", headers=auth).json()["qr_text"]
        assert (
            on_b.post("/v1/verify", headers=checkpoint, json={"qr_text": code}).json()["verdict"]
            == "valid"
        )
        found = on_a.post(
            "/v1/admin/residents/lookup",
            headers=admin,
            json={"doc_type": "prc_id", "doc_number": number, "reason": "two-process test"},
        ).json()["resident_id"]
        red = on_a.put(
            f"/v1/admin/residents/{found}/status",
            headers=admin,
            json={"status": "red", "reason": "close contact"},
        )
        assert red.status_code == 200, red.text
        judged = on_b.post("/v1/verify", headers=checkpoint, json={"qr_text": code}).json()
        assert judged["verdict"] == "invalid"
        assert [r["code"] for r in judged["reasons"]] == ["revoked"]

        # A key rotation made through A: B signs with the new key within the refresh interval.
        other = registered_over_http(on_b, "+8613900139002", registry=b.registry).auth
        old_kid = _kid(on_b.post("/v1/codes", headers=other).json()["qr_text"])
        new = on_a.post("/v1/admin/keys", headers=admin, json={}).json()["kid"]
        assert on_a.post(f"/v1/admin/keys/{new}/activate", headers=admin).status_code == 200
        assert new != old_kid
        assert _eventually(
            lambda: _kid(on_b.post("/v1/codes", headers=other).json()["qr_text"]) == new
        ), "B kept signing with the retired key"

        # A key declared compromised through A: B refuses its codes.
        signed_by_new = on_b.post("/v1/codes", headers=other).json()["qr_text"]
        compromised = on_a.post(
            f"/v1/admin/keys/{new}/retire", headers=admin, json={"compromised": True}
        )
        assert compromised.status_code == 200, compromised.text
        assert _eventually(
            lambda: (
                on_b.post("/v1/verify", headers=checkpoint, json={"qr_text": signed_by_new}).json()[
                    "verdict"
                ]
                == "invalid"
            )
        ), "B still accepted a code of a compromised key"

        # A rate limit counts requests made through both: 3 per phone, wherever they land.
        phone = {"phone": "+8613900139003"}
        answers = [
            (on_a if i % 2 == 0 else on_b).post("/v1/auth/otp", json=phone).status_code
            for i in range(4)
        ]
        assert answers == [200, 200, 200, 429]
