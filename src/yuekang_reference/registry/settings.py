"""Settings of the reference identity registry, from ``REGISTRY_*`` environment variables.

The registry is a test double that runs on a developer's machine or in CI, so its two secrets have
development defaults: missing ones are generated on first run into ``<data dir>/secrets.json``
(readable by this user only) and read back afterwards, so the main service (which must hold the
same client secret) keeps working across restarts.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from yuekang.codec import proofing as wire

SECRETS_FILE: Final = "secrets.json"
_SECRET_NAMES: Final = ("client_secret", "admin_token")


class RegistrySettings(BaseSettings):
    """Where the registry keeps its data, where it listens, whom it answers and how much."""

    model_config = SettingsConfigDict(env_prefix="REGISTRY_", extra="ignore")

    data_dir: Path = Path("var/registry")
    database_url: str | None = Field(
        None, description="SQLAlchemy async URL; default: SQLite in the data directory"
    )
    host: str = "127.0.0.1"
    port: int = Field(8200, ge=1, le=65535)
    client_id: str = Field("yk-gd", pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    client_secret: str | None = Field(
        None, min_length=32, description="the HMAC key shared with the client, as UTF-8"
    )
    admin_token: str | None = Field(None, min_length=16)
    max_body_bytes: int = Field(
        wire.MAX_BODY_BYTES, ge=256, le=wire.MAX_BODY_BYTES, description="largest check request"
    )
    max_load_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="largest admin load body")
    rate_limit_per_second: float = Field(
        200.0, gt=0, description="checks a client may make per second (bursts of as many)"
    )


@dataclass(frozen=True, repr=False)
class RegistrySecrets:
    """The client's HMAC key and the admin token."""

    client_secret: bytes
    admin_token: str


def resolve_secrets(settings: RegistrySettings) -> RegistrySecrets:
    """The secrets from settings, completed with development ones from the data directory."""
    if settings.client_secret is not None and settings.admin_token is not None:
        return RegistrySecrets(settings.client_secret.encode(), settings.admin_token)
    generated = _dev_secrets(settings.data_dir)
    return RegistrySecrets(
        client_secret=(settings.client_secret or generated["client_secret"]).encode(),
        admin_token=settings.admin_token or generated["admin_token"],
    )


def client_secret(settings: RegistrySettings | None = None) -> str:
    """The secret the registry's client must sign with (the main service's
    ``YUEKANG_PROOFING__CLIENT_SECRET``); generated on first use, like the server would."""
    return resolve_secrets(settings or RegistrySettings()).client_secret.decode()


def _dev_secrets(data_dir: Path) -> dict[str, str]:
    path = data_dir / SECRETS_FILE
    if path.exists():
        loaded = json.loads(path.read_text())
        if isinstance(loaded, dict) and all(isinstance(loaded.get(k), str) for k in _SECRET_NAMES):
            return loaded
        raise ValueError(f"{path} does not hold {' and '.join(_SECRET_NAMES)} as strings")
    values = {"client_secret": secrets.token_urlsafe(32), "admin_token": secrets.token_urlsafe(24)}
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
