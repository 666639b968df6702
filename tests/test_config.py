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
    assert resolve(Settings(env="prod", secrets=TEST_SECRETS, sms=sms)).secrets == TEST_SECRETS


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
