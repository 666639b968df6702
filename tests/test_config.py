"""Settings: development secrets on first run, and production refusing them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TEST_SECRETS
from yuekang.config import ConfigurationError, Settings, resolve


def test_development_secrets_are_generated_once_into_keys(tmp_path: Path):
    first = resolve(Settings(env="dev", keys_dir=tmp_path / "keys"))
    second = resolve(Settings(env="dev", keys_dir=tmp_path / "keys"))
    assert first.secrets == second.secrets
    path = tmp_path / "keys" / "dev-secrets.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["key_passphrase"].startswith("dev:")
    other = resolve(Settings(env="dev", keys_dir=tmp_path / "other"))
    assert other.secrets.session_secret != first.secrets.session_secret


def test_production_refuses_to_start_without_secrets(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="YUEKANG_SECRETS"):
        resolve(Settings(env="prod", keys_dir=tmp_path))


def test_production_refuses_development_secrets(tmp_path: Path):
    dev = resolve(Settings(env="dev", keys_dir=tmp_path)).secrets
    sms = {"backend": "http", "http_url": "https://sms.example/send", "http_token": "t" * 20}
    with pytest.raises(ConfigurationError, match="key_passphrase") as error:
        resolve(Settings(env="prod", keys_dir=tmp_path, secrets=dev, sms=sms))
    assert "pii_keys.dev1" in str(error.value)
    proofing = {"backend": "http", "url": "https://identity.example", "client_secret": "s" * 40}
    resolved = resolve(Settings(env="prod", secrets=TEST_SECRETS, sms=sms, proofing=proofing))
    assert resolved.secrets == TEST_SECRETS
    assert resolved.proofing_secret() == b"s" * 40


SMS = {"backend": "http", "http_url": "https://sms.example/send", "http_token": "t" * 20}


def test_production_refuses_the_built_in_registry():
    with pytest.raises(ConfigurationError, match=r"proofing\.backend=builtin"):
        resolve(Settings(env="prod", secrets=TEST_SECRETS, sms=SMS))


def test_production_needs_the_registrys_secret(tmp_path: Path):
    proofing = {"backend": "http", "url": "https://identity.example"}
    for env in ("prod", "dev"):
        with pytest.raises(ConfigurationError, match="PROOFING__CLIENT_SECRET"):
            resolve(Settings(env=env, secrets=TEST_SECRETS, sms=SMS, proofing=proofing))
    secret = tmp_path / "registry-secret"
    secret.write_text("short\n")
    with_file = {**proofing, "client_secret_file": secret}
    with pytest.raises(ConfigurationError, match="at least 32"):
        resolve(Settings(env="prod", secrets=TEST_SECRETS, sms=SMS, proofing=with_file))
    secret.write_text("f" * 40 + "\n")
    resolved = resolve(Settings(env="prod", secrets=TEST_SECRETS, sms=SMS, proofing=with_file))
    assert resolved.proofing_secret() == b"f" * 40
    dev_secret = {**proofing, "client_secret": "dev:" + "s" * 40}
    with pytest.raises(ConfigurationError, match=r"proofing\.client_secret"):
        resolve(Settings(env="prod", secrets=TEST_SECRETS, sms=SMS, proofing=dev_secret))


def test_development_takes_the_registry_secret_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Beside the generated development secrets, as a new user sets it for a registry process.
    monkeypatch.setenv("YUEKANG_PROOFING__BACKEND", "http")
    monkeypatch.setenv("YUEKANG_PROOFING__URL", "http://127.0.0.1:8200")
    monkeypatch.setenv("YUEKANG_PROOFING__CLIENT_SECRET", "c" * 40)
    resolved = resolve(Settings(keys_dir=tmp_path / "keys"))
    assert resolved.proofing_secret() == b"c" * 40
    assert resolved.secrets.key_passphrase.startswith("dev:")
    assert "c" * 40 not in repr(resolved.settings)


def test_production_asks_the_registry_over_tls():
    plain = {"backend": "http", "url": "http://identity.example", "client_secret": "s" * 40}
    with pytest.raises(ConfigurationError, match="https"):
        resolve(Settings(env="prod", secrets=TEST_SECRETS, sms=SMS, proofing=plain))


def test_the_http_registry_needs_a_url():
    with pytest.raises(ValueError, match=r"proofing\.url"):
        Settings(proofing={"backend": "http"})


def test_production_refuses_the_logging_sms_sender():
    with pytest.raises(ConfigurationError, match=r"sms\.backend=log"):
        resolve(Settings(env="prod", secrets=TEST_SECRETS))


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("YUEKANG_CODES__LIFETIME_SECONDS", "1800")
    monkeypatch.setenv("YUEKANG_DATABASE_URL", "postgresql+asyncpg://db/yk")
    settings = Settings()
    assert settings.codes.lifetime_seconds == 1800
    assert settings.database_url == "postgresql+asyncpg://db/yk"
    monkeypatch.setenv("YUEKANG_CODES__LIFETIME_SECONDS", "999999")
    with pytest.raises(ValueError, match="max_lifetime"):
        Settings()
