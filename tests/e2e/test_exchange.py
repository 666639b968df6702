"""Guangdong and the reference Macao system as two real processes on 127.0.0.1, each with its own
database: a green Macao code becomes a green 粤康码 (sent by Macao, and carried by the browser), a
yellow one is refused, a Guangdong code becomes a Macao code -- with Macao down at first and the
code delivered exactly once when it is back -- and a checkpoint that synced its bundle judges a
native, a converted and a Macao code offline."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.api import registered_over_http
from support.postgres import create_database
from support.servers import YUEKANG, Server, cli, free_port, serve, server_env
from yuekang.codec.macao import source_digest
from yuekang.db import migrate
from yuekang.residents.documents import local_date

pytestmark = pytest.mark.e2e

FIELDS = ["name", "document", "birth_date", "phone", "status", "nat", "travel"]
CONSENT_TO_GD = {"recipient": "yk:gd", "fields": FIELDS, "accepted": True, "text_version": "t1"}
MACAO = ("partner", "macao", "serve")


def _claims(qr_text: str) -> dict[str, Any]:
    payload = qr_text.removeprefix("YK1:").split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def _macao_id() -> str:
    """A Macao resident ID number: 8 digits, the first 1, 5 or 7."""
    return "5" + str(uuid.uuid4().int)[:7]


def _declare(macao: httpx.Client, **answers: Any) -> dict[str, Any]:
    today = local_date(dt.datetime.now(dt.UTC))
    body = {
        "name": "陳大文",
        "doc_type": "BIR",
        "doc_number": _macao_id(),
        "birth_date": "1988-03-04",
        "phone": f"+8536{uuid.uuid4().int % 10**7:07d}",
        "fever": False,
        "contact_14d": False,
        "travel_14d": False,
        "nat_negative_on": (today - dt.timedelta(days=1)).isoformat(),
        **answers,
    }
    declared = macao.post("/v1/declarations", json=body)
    assert declared.status_code == 201, declared.text
    result: dict[str, Any] = declared.json()
    return result


def _scan(workdir: Path, env: dict[str, str], qr_text: str) -> dict[str, Any]:
    done = subprocess.run(
        [YUEKANG, "checkpoint", "scan", "--state", str(workdir / "gate"), "--json",
         "--place", "border", qr_text],
        capture_output=True, text=True, env=env, cwd=workdir, timeout=60,
    )  # fmt: skip
    assert done.stdout, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _macao_codes_from_guangdong(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "macao.db") as db:
        (count,) = db.execute(
            "SELECT count(*) FROM codes WHERE origin = 'conversion' AND source_issuer = 'yk:gd'"
        ).fetchone()
    return int(count)


def _wait_for(read: Any, until: Any, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if until(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_conversions_both_ways_between_two_systems(pg_server: str, tmp_path: Path) -> None:
    url = create_database(pg_server)
    migrate(url)
    gd_port, macao_port = free_port(), free_port()
    macao_dir = tmp_path / "macao"
    env = server_env(
        url,
        tmp_path / "keys",
        YUEKANG_EXCHANGE__POLL_SECONDS="0.2",
        YUEKANG_EXCHANGE__BACKOFF_BASE_SECONDS="0.2",
        YUEKANG_EXCHANGE__BACKOFF_MAX_SECONDS="1",
        YUEKANG_EXCHANGE__CIRCUIT_OPEN_SECONDS="1",
        YUEKANG_KEYS__RING_REFRESH_SECONDS="0.5",
        MACAO_DATA_DIR=str(macao_dir),
        MACAO_GUANGDONG_URL=f"http://127.0.0.1:{gd_port}",
    )
    macao_command = (*MACAO, "--data-dir", str(macao_dir))
    with serve(env, tmp_path, "guangdong", port=gd_port) as gd_server:
        with serve(env, tmp_path, "macao", port=macao_port, command=macao_command) as macao:
            # The operator compares key ids with Macao's notice: a key nobody announced is refused
            # and nothing is stored.
            announced = [
                k["kid"] for k in httpx.get(f"{macao.base}/v1/exchange/keys").json()["keys"]
            ]
            add = [YUEKANG, "exchange", "partner", "add", "macao", "--url", macao.base]
            refused = subprocess.run(
                [*add, "--expect-kid", announced[0]],
                capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
            )  # fmt: skip
            assert refused.returncode != 0 and "nothing stored" in refused.stderr
            expected = [arg for kid in announced for arg in ("--expect-kid", kid)]
            added = cli(env, tmp_path, *add[1:], *expected)
            assert "issuer MO" in added and "code/sig" in added and "exchange/enc" in added
            converted, macao_code, auth, screen = _macao_to_guangdong(
                env, tmp_path, gd_server, macao
            )
        # Macao is down now: the conversion waits in the outbox until it is back.
        conversion = _ask_for_macao_code(gd_server, auth, screen)
        queued = _wait_for(
            lambda: _conversion(gd_server, auth, conversion),
            lambda c: (c["attempts"] or 0) >= 2,
        )
        # between attempts it is queued, during one delivering: never delivered while Macao is down
        assert queued["state"] in ("queued", "delivering") and queued["partner_code"] is None
        with serve(env, tmp_path, "macao-again", port=macao_port, command=macao_command):
            delivered = _wait_for(
                lambda: _conversion(gd_server, auth, conversion),
                lambda c: c["state"] == "delivered",
            )
            assert delivered["state"] == "delivered", delivered
            assert delivered["partner_code"].startswith("MO1:")
            time.sleep(1.5)  # more polls of the outbox: nothing is sent twice
        assert _macao_codes_from_guangdong(macao_dir) == 1
        _checkpoint_offline(env, tmp_path, gd_server, converted, macao_code, auth)


def _conversion(gd_server: Server, auth: dict[str, str], conversion_id: str) -> dict[str, Any]:
    with httpx.Client(base_url=gd_server.base, timeout=30) as gd:
        answer = gd.get(f"/v1/exchange/macao/outbound/{conversion_id}", headers=auth)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _ask_for_macao_code(gd_server: Server, auth: dict[str, str], screen: dict[str, Any]) -> str:
    consent = {
        "recipient": screen["recipient"],
        "fields": screen["fields"],
        "accepted": True,
        "text_version": screen["text_version"],
    }
    with httpx.Client(base_url=gd_server.base, timeout=30) as gd:
        asked = gd.post(
            "/v1/exchange/macao/outbound",
            headers={**auth, "Idempotency-Key": "to-macao-1"},
            json={"consent": consent},
        )
        assert asked.status_code == 202, asked.text
        assert asked.json()["state"] in ("queued", "delivering")
        repeated = gd.post(
            "/v1/exchange/macao/outbound",
            headers={**auth, "Idempotency-Key": "to-macao-1"},
            json={"consent": consent},
        )
        assert repeated.status_code == 200 and repeated.json()["id"] == asked.json()["id"]
    conversion_id: str = asked.json()["id"]
    return conversion_id


def _macao_to_guangdong(
    env: dict[str, str], workdir: Path, gd_server: Server, macao_server: Server
) -> tuple[str, str, dict[str, str], dict[str, Any]]:
    with (
        httpx.Client(base_url=gd_server.base, timeout=30) as gd,
        httpx.Client(base_url=macao_server.base, timeout=30) as macao,
    ):
        # Macao -> Guangdong, sent by the Macao system.
        person = _declare(macao)
        assert person["colour"] == "verde"
        sent = macao.post(
            "/v1/conversions/guangdong",
            json={"person_id": person["person_id"], "consent": CONSENT_TO_GD, "delivery": "direct"},
        )
        assert sent.status_code == 201, sent.text
        converted = sent.json()["guangdong"]["code"]
        assert converted["status"] == "green"
        claims = _claims(converted["qr_text"])
        assert claims["src"][0] == "MO" and claims["src"][2] == source_digest(person["code"])
        assert claims["nt"] <= 48  # the date of Macao's negative test travels with the code
        assert "陳" not in json.dumps(claims) or claims["nm"].count("*") >= 1

        # Macao -> Guangdong, carried by the person's browser: a form post of the package.
        other = _declare(macao)
        form = macao.post(
            "/v1/conversions/guangdong",
            headers={"Accept": "application/json"},
            json={"person_id": other["person_id"], "consent": CONSENT_TO_GD, "delivery": "browser"},
        )
        assert form.status_code == 200, form.text
        action = form.json()["action"]
        assert action == f"{gd_server.base}/v1/exchange/macao/inbound"
        carried = httpx.post(action, data={"package": form.json()["package"]}, timeout=30)
        assert carried.status_code == 201, carried.text
        again = httpx.post(action, data={"package": form.json()["package"]}, timeout=30)
        assert again.status_code == 409 and again.json()["error"]["code"] == "package_replayed"

        # A yellow Macao code gets a refusal, not a colour.
        yellow = _declare(macao, fever=True)
        assert yellow["colour"] == "amarelo"
        refused = macao.post(
            "/v1/conversions/guangdong",
            json={"person_id": yellow["person_id"], "consent": CONSENT_TO_GD, "delivery": "direct"},
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["state"] == "refused"
        assert refused.json()["error"]["code"] == "source_not_green"

        # Guangdong -> Macao while Macao is down: queued, then delivered once it is back.
        feed_key = cli(env, workdir, "feeds", "clients", "create", "lab", "--kinds", "nat-results")
        resident = registered_over_http(
            gd, "+8613800138555", name="李小龙", registry=gd_server.registry
        )
        auth, number = resident.auth, resident.doc_number
        sampled = dt.datetime.now(dt.UTC) - dt.timedelta(hours=20)
        nat_row = {"doc_type": "prc_id", "doc_number": number, "sampled_at": sampled.isoformat(),
                   "result": "negative", "lab": "广州金域医学检验中心"}  # fmt: skip
        pushed = gd.post(
            "/v1/feeds/nat-results",
            content=json.dumps(nat_row, ensure_ascii=False).encode() + b"\n",
            headers={"Authorization": f"Bearer {feed_key}", "Content-Type": "application/x-ndjson",
                     "Idempotency-Key": uuid.uuid4().hex},
        )  # fmt: skip
        assert pushed.status_code == 201, pushed.text
        screen = gd.get("/v1/exchange/macao/consent").json()
        assert screen["available"] and screen["recipient"] == "MO"

    return converted["qr_text"], person["code"], auth, screen


def _checkpoint_offline(
    env: dict[str, str],
    workdir: Path,
    gd_server: Server,
    converted: str,
    macao_code: str,
    auth: dict[str, str],
) -> None:
    gate_key = cli(env, workdir, "checkpoints", "create", "Gongbei port", "--kind", "border")
    anchor = json.loads(cli(env, workdir, "keys", "anchor"))
    synced = cli(
        env, workdir, "checkpoint", "sync", "--server", gd_server.base, "--key", gate_key,
        "--anchor", anchor["kid"], "--state", str(workdir / "gate"),
    )  # fmt: skip
    assert "synced version" in synced
    with httpx.Client(base_url=gd_server.base, timeout=30) as gd:
        native = gd.post("/v1/codes", headers=auth).json()["qr_text"]
    judged = {name: _scan(workdir, env, text) for name, text in
              (("native", native), ("converted", converted), ("macao", macao_code))}  # fmt: skip
    assert {name: v["verdict"] for name, v in judged.items()} == dict.fromkeys(judged, "valid")
    assert judged["native"]["origin"] == "guangdong"
    assert judged["converted"]["origin"] == "converted_from_macao"
    assert judged["converted"]["source"]["issuer"] == "MO"
    assert judged["macao"]["origin"] == "issued_by_macao"
    assert judged["macao"]["status"] == "green" and judged["macao"]["issuer"] == "MO"
    forged = macao_code[:-6] + ("A" if macao_code[-6] != "A" else "B") + macao_code[-5:]
    assert _scan(workdir, env, forged)["verdict"] == "invalid"
