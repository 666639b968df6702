"""``yuekang serve`` proving identities against ``yuekang partner registry serve``: two real
processes, each with its own database, speaking YKP1 over a socket. Proofing succeeds, a
mismatch is refused, the registry stopped gives 503 with nothing bound, and restarted it works."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import httpx
import pytest

from support.api import answer, random_phone, random_prc_id
from support.servers import cli, free_port, serve, server_env

pytestmark = pytest.mark.e2e

REGISTRY = ("partner", "registry", "serve")


def signed_in(client: httpx.Client, phone: str) -> dict[str, str]:
    sent = client.post("/v1/auth/otp", json={"phone": phone})
    assert sent.status_code == 200, sent.text
    token = client.post("/v1/auth/token", json={"phone": phone, **answer(sent.json())})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def bind(
    client: httpx.Client, auth: dict[str, str], name: str, number: str, birth: dt.date
) -> httpx.Response:
    return client.put(
        "/v1/me/identity",
        headers=auth,
        json={
            "name": name,
            "doc_type": "prc_id",
            "doc_number": number,
            "birth_date": birth.isoformat(),
        },
    )


def people(path: Path, *entries: tuple[str, str, dt.date, str]) -> Path:
    lines = []
    for name, number, birth, phone in entries:
        lines.append({"kind": "person", "name": name, "doc_type": "prc_id",
                      "doc_number": number, "birth_date": birth.isoformat()})  # fmt: skip
        lines.append({"kind": "subscription", "phone": phone, "doc_type": "prc_id",
                      "doc_number": number, "name": name, "carrier": "China Mobile"})  # fmt: skip
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    return path


def test_proofing_against_a_registry_process(fresh_database_url: str, tmp_path: Path) -> None:
    registry_port = free_port()
    registry_env = server_env(
        fresh_database_url, tmp_path / "keys", REGISTRY_DATA_DIR=str(tmp_path / "registry")
    )
    # The registry's shared secret is made on first use; the operator hands it to the service.
    credentials = dict(
        line.split("=", 1)
        for line in cli(registry_env, tmp_path, "partner", "registry", "credentials").splitlines()
    )
    secret_file = tmp_path / "registry-secret"
    secret_file.write_text(credentials["client_secret"] + "\n")
    ma, ma_number, ma_birth, ma_phone = "马小跳", *random_prc_id(), random_phone()
    ding, ding_number, ding_birth, ding_phone = "丁当", *random_prc_id(), random_phone()
    loaded = cli(
        registry_env,
        tmp_path,
        "partner",
        "registry",
        "load",
        str(people(tmp_path / "people.ndjson", (ma, ma_number, ma_birth, ma_phone),
                   (ding, ding_number, ding_birth, ding_phone))),
    )  # fmt: skip
    assert "people=2" in loaded and "subscriptions=2" in loaded
    env = server_env(
        fresh_database_url,
        tmp_path / "keys",
        YUEKANG_PROOFING__BACKEND="http",
        YUEKANG_PROOFING__URL=f"http://127.0.0.1:{registry_port}",
        YUEKANG_PROOFING__CLIENT_ID=credentials["client_id"],
        YUEKANG_PROOFING__CLIENT_SECRET_FILE=str(secret_file),
        YUEKANG_PROOFING__BUDGET_SECONDS="2",
        YUEKANG_PROOFING__TIMEOUT_SECONDS="1",
    )
    with (
        serve(env, tmp_path, "yuekang") as service,
        httpx.Client(base_url=service.base, timeout=30) as client,
    ):
        with serve(registry_env, tmp_path, "registry", port=registry_port, command=REGISTRY):
            auth = signed_in(client, ma_phone)
            wrong = bind(client, auth, "马大跳", ma_number, ma_birth)
            assert (wrong.status_code, wrong.json()["error"]["code"]) == (422, "identity_mismatch")
            proved = bind(client, auth, ma, ma_number, ma_birth)
            assert proved.status_code == 201, proved.text
            assert proved.json()["assurance"] == "proofed"
            assert client.post("/v1/codes", headers=auth).status_code == 201

        # The registry is stopped: a clean 503 within the budget, and nothing bound.
        auth = signed_in(client, ding_phone)
        started = time.monotonic()
        down = bind(client, auth, ding, ding_number, ding_birth)
        assert time.monotonic() - started < 10
        assert (down.status_code, down.json()["error"]["code"]) == (503, "proofing_unavailable")
        assert down.headers["retry-after"]
        assert client.get("/v1/me/identity", headers=auth).status_code == 404
        assert client.post("/v1/codes", headers=auth).json()["error"]["code"] == (
            "identity_required"
        )

        with serve(registry_env, tmp_path, "registry-again", port=registry_port, command=REGISTRY):
            again = bind(client, auth, ding, ding_number, ding_birth)
            assert again.status_code == 201, again.text
            assert client.post("/v1/codes", headers=auth).status_code == 201
