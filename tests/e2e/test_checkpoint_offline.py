"""A checkpoint that keeps judging with the server down: sync once, stop the server, scan valid,
forged, expired and revoked codes offline with the CLI, start the server again and upload the
queued scans -- twice -- finding each exactly once."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from support.api import registered_over_http
from support.servers import YUEKANG, Server, cli, serve, server_env
from yuekang.db import create_engine
from yuekang.scans.models import ScanRecord

pytestmark = pytest.mark.e2e


def _resident_code(server: Server, phone: str) -> tuple[dict[str, str], str]:
    with httpx.Client(base_url=server.base, timeout=30) as client:
        resident = registered_over_http(client, phone, registry=server.registry)
        code = client.post("/v1/codes", headers=resident.auth).json()
    assert resident.doc_number is not None
    return code, resident.doc_number


def _scan(env: dict[str, str], workdir: Path, *args: str) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [YUEKANG, "checkpoint", "scan", "--state", str(workdir / "gate"), "--json", *args],
        capture_output=True, text=True, env=env, cwd=workdir, timeout=60,
    )  # fmt: skip
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def _offline_records(url: str) -> int:
    async def count() -> int:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                query = select(func.count()).where(ScanRecord.source == "offline")
                return int((await connection.execute(query)).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(count())


def test_a_checkpoint_judges_offline_and_uploads_exactly_once(
    fresh_database_url: str, tmp_path: Path
) -> None:
    env = server_env(fresh_database_url, tmp_path / "keys")
    with serve(env, tmp_path, "first") as server:
        anchor = json.loads(cli(env, tmp_path, "keys", "anchor"))
        gate_key = cli(env, tmp_path, "checkpoints", "create", "Hengqin port")
        valid, _ = _resident_code(server, "+8613700137001")
        revoked, number = _resident_code(server, "+8613700137002")
        cli(env, tmp_path, "status", "set", "--doc-type", "prc_id", "--doc-number", number,
            "--status", "red", "--reason", "close contact")  # fmt: skip
        synced = cli(
            env, tmp_path, "checkpoint", "sync", "--server", server.base, "--key", gate_key,
            "--anchor", anchor["kid"], "--state", str(tmp_path / "gate"),
        )  # fmt: skip
        assert "synced version" in synced
        # The kind of place comes with the sync, signed by the anchor: this one is a venue.
        assert "registered as venue: Hengqin port" in synced

    # Whoever runs the device cannot make it a border post, nor anything else.
    relaxed = subprocess.run(
        [YUEKANG, "checkpoint", "scan", "--state", str(tmp_path / "gate"), "--place", "border",
         valid["qr_text"]],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert relaxed.returncode == 2
    assert "registered as venue; --place cannot change it" in relaxed.stderr

    # The server is down from here on.
    code, allowed = _scan(env, tmp_path, valid["qr_text"])
    assert (code, allowed["decision"], allowed["verdict"]) == (0, "allow", "valid")
    tail = valid["qr_text"][-6:]
    forged_text = valid["qr_text"][:-6] + ("AAAAAA" if tail != "AAAAAA" else "BBBBBB")
    code, forged = _scan(env, tmp_path, forged_text)
    assert (code, [r["code"] for r in forged["reasons"]]) == (1, ["bad_signature"])
    later = str(_epoch(valid["expires_at"]) + 600)
    code, expired = _scan(env, tmp_path, valid["qr_text"], "--at", later)
    assert (code, [r["code"] for r in expired["reasons"]]) == (1, ["expired"])
    code, refused = _scan(env, tmp_path, revoked["qr_text"])
    assert (code, [r["code"] for r in refused["reasons"]]) == (1, ["revoked"])
    queued = (tmp_path / "gate" / "queue.jsonl").read_text()
    assert len(queued.splitlines()) == 3  # a re-judgement with --at is not a scan
    # Each queued record says what the gate decided, besides the verdict.
    assert [json.loads(line)["decision"] for line in queued.splitlines()] == [
        "allow", "deny", "deny",
    ]  # fmt: skip
    # A registration altered on the device no longer counts: the device asks for its own.
    registration = tmp_path / "gate" / "registration.jws"
    registration.write_text(registration.read_text().replace(".", ".x", 1))
    unregistered = subprocess.run(
        [YUEKANG, "checkpoint", "scan", "--state", str(tmp_path / "gate"), "--at", later,
         valid["qr_text"]],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert unregistered.returncode == 2
    assert "no registration synced" in unregistered.stderr

    # A scan from a moment when the device clock was a day ahead.
    ahead = {
        "scan_id": "clock-ahead",
        "code_id": None,
        "verdict": "invalid",
        "scanned_at": "2099-01-01T00:00:00+00:00",
        "reason": "malformed",
    }
    (tmp_path / "gate" / "queue.jsonl").write_text(queued + json.dumps(ahead) + "\n")

    with serve(env, tmp_path, "second", port=server.port):
        done = subprocess.run(
            [YUEKANG, "checkpoint", "upload", "--state", str(tmp_path / "gate")],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "3 new" in done.stdout
        assert "1 scan(s) refused" in done.stderr
        assert "clock-ahead" in (tmp_path / "gate" / "refused.jsonl").read_text()
        # The device resends the same records (say the answer was lost): nothing is doubled.
        (tmp_path / "gate" / "queue.jsonl").write_text(queued)
        again = cli(env, tmp_path, "checkpoint", "upload", "--state", str(tmp_path / "gate"))
        assert "0 new, 3 already there" in again
    assert _offline_records(fresh_database_url) == 3


def _epoch(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
