"""Settings of the reference Macao system, from ``MACAO_*`` environment variables.

The system is a test double that runs on a developer's machine or in CI, so every secret has a
development default: missing ones are generated on first run into ``<data dir>/secrets.json``
(readable by this user only) and reused afterwards, so keys stored encrypted under the passphrase
stay readable across restarts.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRETS_FILE = "secrets.json"
PII_KEY_BYTES = 32


class MacaoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MACAO_", extra="ignore")

    data_dir: Path = Path("macao-data")
    database_url: str | None = Field(
        None, description="SQLAlchemy async URL; default: SQLite in the data directory"
    )
    host: str = "127.0.0.1"
    port: int = Field(8100, ge=1, le=65535)
    issuer: str = Field("MO", min_length=1, max_length=16, pattern=r"^[A-Za-z0-9:.-]+$")
    guangdong_url: str = "http://127.0.0.1:8000"
    guangdong_keys_ttl_seconds: float = Field(
        60.0, ge=0, description="how long Guangdong's key document is reused before refetching"
    )
    http_timeout_seconds: float = Field(10.0, gt=0)
    code_lifetime_seconds: int = Field(21600, ge=60, le=7 * 86400)
    code_key_validity_days: int = Field(
        90, ge=1, description="a code key signs codes expiring at most this long after creation"
    )
    nat_window_hours: int = Field(168, ge=1, le=24 * 60)
    package_lifetime_seconds: int = Field(300, ge=30, le=600)
    consent_text_version: str = Field("2020-05.1", min_length=1, max_length=32)
    max_body_bytes: int = Field(
        96 * 1024, ge=1024, description="largest request body (a package is at most 64 KiB)"
    )
    key_passphrase: str | None = Field(None, min_length=16)
    pii_key: str | None = Field(None, description="AES-256-GCM key for personal data, base64")
    pii_key_id: str = Field("mo1", min_length=1, max_length=16)
    blind_index_key: str | None = Field(None, min_length=32)
    admin_token: str | None = Field(None, min_length=16)

    @field_validator("guangdong_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("guangdong_url must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("pii_key")
    @classmethod
    def _pii_key(cls, value: str | None) -> str | None:
        if value is not None:
            _decode_key(value)
        return value

    @model_validator(mode="after")
    def _code_key_outlives_codes(self) -> MacaoSettings:
        if self.code_key_validity_days * 86400 < 2 * self.code_lifetime_seconds:
            raise ValueError("code_key_validity_days must cover at least two code lifetimes")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'macao.db'}"


@dataclass(frozen=True, repr=False)
class MacaoSecrets:
    key_passphrase: bytes
    pii_key: bytes
    pii_key_id: str
    blind_index_key: bytes
    admin_token: str


def _decode_key(value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("pii_key must be base64") from exc
    if len(raw) != PII_KEY_BYTES:
        raise ValueError(f"pii_key must be {PII_KEY_BYTES} bytes")
    return raw


def resolve_secrets(settings: MacaoSettings) -> MacaoSecrets:
    """The secrets from settings, completed with development ones from the data directory."""
    generated = _dev_secrets(settings.data_dir)
    return MacaoSecrets(
        key_passphrase=(settings.key_passphrase or generated["key_passphrase"]).encode(),
        pii_key=_decode_key(settings.pii_key or generated["pii_key"]),
        pii_key_id=settings.pii_key_id,
        blind_index_key=(settings.blind_index_key or generated["blind_index_key"]).encode(),
        admin_token=settings.admin_token or generated["admin_token"],
    )


def _dev_secrets(data_dir: Path) -> dict[str, str]:
    path = data_dir / SECRETS_FILE
    if path.exists():
        loaded = json.loads(path.read_text())
        if isinstance(loaded, dict) and all(isinstance(v, str) for v in loaded.values()):
            return loaded
        raise ValueError(f"{path} is not a JSON object of strings")
    values = {
        "key_passphrase": secrets.token_urlsafe(32),
        "pii_key": base64.b64encode(os.urandom(PII_KEY_BYTES)).decode(),
        "blind_index_key": secrets.token_urlsafe(32),
        "admin_token": secrets.token_urlsafe(24),
    }
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Written under a private name and linked into place: a second process starting at the same
    # moment keeps the first one's secrets instead of overwriting them.
    temporary = data_dir / f".{SECRETS_FILE}.{os.getpid()}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(values, handle, indent=2)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return _dev_secrets(data_dir)
    finally:
        temporary.unlink()
    return values
