"""The command line an operator uses: keys, checkpoints, operators, statuses, and refusals."""

from __future__ import annotations

import json
import sqlite3
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


def test_a_key_id_starting_with_a_dash_is_read_as_the_id(env: Path):
    # One key id in 64 starts with "-"; it must not be taken for an unknown option (exit 2).
    for command in (
        ("keys", "activate"),
        ("keys", "retire"),
        ("exchange", "partner", "retire-key", "macao"),
    ):
        code, _, err = run(*command, "-Zm9vYmFyYmF6cXV4cXV1eA")
        assert code == 1, (command, err)
        assert "No such option" not in err


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
    # Looking for a document nobody holds is kept in the audit log, as in the API.
    with sqlite3.connect(env / "cli.db") as db:
        probes = db.execute(
            "SELECT actor_type, detail FROM audit_log WHERE action = 'resident.lookup_by_document'"
        ).fetchall()
    assert [(actor, json.loads(detail)["found"]) for actor, detail in probes] == [("cli", False)]
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
    code, _, err = run(
        "status", "set", "--doc-type", "prc_id", "--doc-number", "11010519491231002X",
        "--status", "red", "--reason", "close contact", "--valid-days", "365",
    )  # fmt: skip
    assert code == 2
    assert "valid_days" in err


def test_feed_clients_are_created_with_their_kinds(env: Path):
    code, out, err = run("feeds", "clients", "create", "cdc-gz", "--kinds", "cases,nat-results")
    assert code == 0
    assert out.strip().startswith("ykf_")
    assert "kinds=cases,nat-results" in err
    code, _, err = run("feeds", "clients", "create", "cdc-gz", "--kinds", "cases")
    assert code == 1
    assert "feed_client_exists" in err
    code, _, err = run("feeds", "clients", "create", "lab", "--kinds", "cases,gossip")
    assert code == 2
    assert "kinds.1" in err
    assert "risk-areas" in err


def _rule_set(tmp_path: Path, **changes: object) -> Path:
    from yuekang.rules import default_rule_set

    document = {**default_rule_set().document(), **changes}
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(document, ensure_ascii=False))
    return path


def test_rules_check_lists_every_problem_and_activate_refuses_a_bad_file(env: Path):
    default = Path(__file__).parents[2] / "src/yuekang/rules/rulesets/gd-2021.toml"
    code, out, _ = run("rules", "check", str(default))
    assert code == 0
    assert "gd-2021.3" in out
    bad = _rule_set(env, version="bad version", utc_offset_hours=99)
    code, _, err = run("rules", "activate", str(bad))
    assert code == 1
    assert "version" in err
    assert "utc_offset_hours" in err
    code, _, err = run("rules", "check", str(env / "missing.toml"))
    assert code == 2
    assert "cannot read" in err


def test_rules_activate_puts_a_new_version_in_force_once(env: Path):
    path = _rule_set(env, version="gd-2021.2")
    code, out, _ = run("rules", "activate", str(path))
    assert code == 0
    assert "gd-2021.2 is active" in out
    assert run("rules", "activate", str(path))[0] == 0  # the same content again: fine
    changed = _rule_set(env, version="gd-2021.2", description="something else")
    code, _, err = run("rules", "activate", str(changed))
    assert code == 1
    assert "rule_set_version_exists" in err


def test_the_anchor_key_is_made_once_and_printed_for_pinning(env: Path):
    from yuekang.codec.keys import VerificationKey

    code, out, err = run("keys", "anchor")
    assert code == 0
    anchor = VerificationKey.from_jwk(json.loads(out))
    assert anchor.kid in err
    code, again, _ = run("keys", "anchor")
    assert code == 0
    assert json.loads(again) == json.loads(out)


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_a_bad_setting_is_named_never_echoed(
    env: Path, monkeypatch: pytest.MonkeyPatch, env_name: str
):
    # A partial set of secrets: pydantic's own message quotes the input, secret and all.
    secret = "abc-not-long-enough-but-secret"
    monkeypatch.setenv("YUEKANG_ENV", env_name)
    monkeypatch.setenv("YUEKANG_SECRETS__SESSION_SECRET", secret)
    for command in (["keys", "list"], ["serve"], ["db", "upgrade"]):
        code, out, err = run(*command)
        assert code == 2, command
        assert secret not in out + err and secret[:10] not in out + err
        assert "YUEKANG_SECRETS__SESSION_SECRET: String should have at least 32 characters" in err
        assert "YUEKANG_SECRETS__KEY_PASSPHRASE: Field required" in err
        assert "Traceback" not in err


def test_production_names_every_secret_it_needs(env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("YUEKANG_ENV", "prod")
    code, _, err = run("serve")
    assert code == 2
    for name in ("KEY_PASSPHRASE", "SESSION_SECRET", "OTP_SECRET", "PII_KEYS", "BLIND_INDEX_KEY"):
        assert f"YUEKANG_SECRETS__{name}" in err


def test_a_partner_needs_an_installed_adapter_and_its_format(env: Path):
    import http.server
    import threading

    from yuekang.codec.keys import SigningKey

    code, _, err = run("exchange", "partner", "add", "atlantis", "--url", "http://127.0.0.1:9")
    assert code == 2
    assert "no partner adapter 'atlantis' is installed" in err
    assert "hongkong" in err and "macao" in err

    key = SigningKey.generate().public().to_jwk()
    document = json.dumps(
        {"issuer": "HK", "format": "MO1", "keys": [{**key, "purpose": "code", "state": "active"}]}
    ).encode()

    class KeyDocument(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), KeyDocument)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, _, err = run("exchange", "partner", "add", "hongkong", "--url", url)
    finally:
        server.shutdown()
    assert code == 2
    assert "the key document is for MO1 codes; hongkong issues HK1: nothing stored" in err
    assert run("exchange", "partner", "list")[1].count("hongkong") == 0


def test_a_checkpoint_refuses_a_bundle_larger_than_any_bundle_can_be(tmp_path: Path):
    import http.server
    import threading

    from yuekang.codec.bundle import MAX_BUNDLE_CHARS
    from yuekang.codec.keys import SigningKey

    anchor = tmp_path / "anchor.json"
    anchor.write_text(json.dumps(SigningKey.generate().public().to_jwk()))

    class Flood(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/jose")
            self.end_headers()
            chunk = b"A" * (1 << 20)
            try:
                for _ in range(MAX_BUNDLE_CHARS // len(chunk) + 2):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the device hung up, as it should

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flood)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state = tmp_path / "state"
    try:
        code, _, err = run(
            "checkpoint", "sync", "--state", str(state),
            "--server", f"http://127.0.0.1:{server.server_address[1]}",
            "--key", "yk_cp_x", "--anchor", str(anchor),
        )  # fmt: skip
    finally:
        server.shutdown()
    assert code == 1
    assert f"sent over {MAX_BUNDLE_CHARS} bytes: refused" in err
    assert not (state / "bundle.jws").exists()


def test_a_command_on_a_database_without_tables_says_so_in_one_line(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As when a command runs from another directory: a new, empty SQLite file there.
    empty = env / "elsewhere.db"
    monkeypatch.setenv("YUEKANG_DATABASE_URL", f"sqlite+aiosqlite:///{empty}")

    code, _, err = run("checkpoints", "create", "Gate 1")

    assert code == 2
    assert f"the database at sqlite+aiosqlite:///{empty} has no tables" in err
    assert "yuekang db upgrade" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"x" * 4096, "longer than 1024 bytes"),
        (b"a-new-passphrase-0123\r\n", "one line"),
        (b"first-line-0123456789\nsecond\n", "one line"),
        (b"\xff" * 20, "not UTF-8"),
    ],
)
def test_keys_rewrap_refuses_what_is_not_one_passphrase(
    env: Path, content: bytes, why: str
) -> None:
    """Read bounded (a /dev/zero given by mistake once filled the memory), and one line only:
    the runbook exports the same file with $(cat ...), which keeps a CR (hostile review)."""
    file = env / "passphrase"
    file.write_bytes(content)
    code, _, err = run("keys", "rewrap", "--new-passphrase-file", str(file))
    assert code == 2
    assert why in err


def test_trust_advance_stays_within_the_version_column(env: Path) -> None:
    """Past 2**31 no bundle could be numbered again and every checkpoint holding the advanced
    version would refuse the lower ones for good: the option stops at 2**30."""
    code, _, err = run("trust", "advance", "--past", str(2**31 - 2))
    assert code == 2
    assert "--past" in err
