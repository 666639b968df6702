"""The command line an operator uses: keys, checkpoints, operators, statuses, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from yuekang.cli import app
from yuekang.db import migrate


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    migrate(url)
    monkeypatch.setenv("YUEKANG_DATABASE_URL", url)
    monkeypatch.setenv("YUEKANG_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("YUEKANG_ENV", "dev")
    monkeypatch.delenv("YUEKANG_KEYS__PUBLISH_LEAD_SECONDS", raising=False)
    return tmp_path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_key_rotation_from_the_command_line(env: Path, monkeypatch: pytest.MonkeyPatch):
    code, out, _ = run("keys", "generate")
    assert code == 0
    kid = out.split()[0]
    assert "pending" in out
    code, _, err = run("keys", "activate", kid)
    assert code == 1
    assert "key_not_ready" in err
    monkeypatch.setenv("YUEKANG_KEYS__PUBLISH_LEAD_SECONDS", "0")
    assert run("keys", "activate", kid)[0] == 0
    code, out, _ = run("keys", "generate", "--alg", "EdDSA")
    second = out.split()[0]
    assert run("keys", "activate", second)[0] == 0
    listed = {k["kid"]: k for k in json.loads(run("keys", "list", "--json")[1])}
    assert listed[kid]["state"] == "retired"
    assert listed[second]["state"] == "active"
    assert listed[second]["alg"] == "EdDSA"
    code, out, _ = run("keys", "retire", second, "--compromised")
    assert code == 0
    assert "compromised" in out
    assert run("keys", "activate", "nope")[0] == 1


def test_checkpoint_and_operator_keys_are_printed_once(env: Path):
    code, out, err = run("checkpoints", "create", "Hengqin port")
    assert code == 0
    assert out.strip().startswith("ykc_")
    assert "Hengqin port" in err
    code, out, _ = run("operators", "create", "Ms Chan", "--role", "epidemiologist")
    assert code == 0
    assert out.strip().startswith("yko_")
    code, _, err = run("operators", "create", "Mr Lee", "--role", "superuser")
    assert code == 2
    assert "unknown role" in err


def test_status_set_needs_a_known_document(env: Path):
    code, _, err = run(
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
    )
    assert code == 1
    assert "resident_not_found" in err
    code, _, err = run(
        "status",
        "set",
        "--doc-type",
        "prc_id",
        "--doc-number",
        "110105194912310021",
        "--status",
        "red",
        "--reason",
        "confirmed case",
    )
    assert code == 1
    assert "invalid_document" in err


def test_production_refuses_to_start_with_development_secrets(
    env: Path, monkeypatch: pytest.MonkeyPatch
):
    run("keys", "list")  # creates keys/dev-secrets.json in dev mode
    dev = json.loads((env / "keys" / "dev-secrets.json").read_text())
    monkeypatch.setenv("YUEKANG_ENV", "prod")
    code, _, err = run("serve")
    assert code == 2
    assert "YUEKANG_SECRETS" in err
    for name, value in dev.items():
        monkeypatch.setenv(
            f"YUEKANG_SECRETS__{name.upper()}",
            json.dumps(value) if isinstance(value, dict) else value,
        )
    monkeypatch.setenv("YUEKANG_SMS__BACKEND", "http")
    monkeypatch.setenv("YUEKANG_SMS__HTTP_URL", "https://sms.example/send")
    monkeypatch.setenv("YUEKANG_SMS__HTTP_TOKEN", "t" * 20)
    code, _, err = run("serve")
    assert code == 2
    assert "refuses development settings" in err
    assert "key_passphrase" in err


def test_status_set_checks_the_reason_like_the_api(env: Path):
    code, _, err = run(
        "status",
        "set",
        "--doc-type",
        "prc_id",
        "--doc-number",
        "11010519491231002X",
        "--status",
        "red",
        "--reason",
        "ab",
    )
    assert code == 2
    assert "reason" in err
