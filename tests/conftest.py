"""Fixtures shared by the database and API suites.

Every database test runs twice: on SQLite and on a real PostgreSQL that the suite starts itself
(a throwaway cluster on 127.0.0.1, see ``support/postgres.py``). Schemas come from the Alembic
migrations. Tests share one migrated database per backend and keep out of each other's way by
using fresh random phones and documents; tests that change global state (signing keys) ask for
``fresh_database_url``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, update

from codec.forge import Trust
from support.api import Api, Resident
from support.postgres import create_database, postgres_server
from yuekang.app import bootstrap_dev_key, create_app
from yuekang.auth.sms import MemorySmsSender
from yuekang.checkpoints import service as checkpoints
from yuekang.clock import ManualClock
from yuekang.codec.keys import SigningKey
from yuekang.config import (
    KeySettings,
    OtpSettings,
    ProofingSettings,
    ResolvedSettings,
    Secrets,
    Settings,
    TrustSettings,
)
from yuekang.context import AppContext
from yuekang.db import migrate
from yuekang.feeds import service as feeds
from yuekang.feeds.rows import FeedKind
from yuekang.health_status.models import HealthStatus
from yuekang.operators import service as operators
from yuekang.principals import Actor, Role
from yuekang.residents.models import Identity
from yuekang.residents.proofing import MemoryProofing
from yuekang.rules.policy import as_place_kind

TEST_SECRETS = Secrets(
    key_passphrase="test-passphrase-0123456789",
    session_secret="test-session-secret-0123456789abcdef",
    otp_secret="test-otp-secret-0123456789abcdefghij",
    pii_keys={"t1": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="},
    pii_active_key_id="t1",
    blind_index_key="test-blind-index-key-0123456789abcdef",
)


@pytest.fixture(scope="session")
def trust() -> Trust:
    """Our two signing keys (ES256, EdDSA) and an attacker's, for the codec and verifier suites."""
    return Trust(
        es=SigningKey.generate("ES256"),
        ed=SigningKey.generate("EdDSA"),
        attacker=SigningKey.generate("ES256"),
    )


@pytest.fixture(params=["ES256", "EdDSA"])
def any_key(request: pytest.FixtureRequest, trust: Trust) -> SigningKey:
    """Each of our trusted keys in turn."""
    return trust.es if request.param == "ES256" else trust.ed


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def _new_database(backend: str, request: pytest.FixtureRequest, tmp: Path) -> str:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'yuekang.db'}"
    else:
        url = create_database(request.getfixturevalue("pg_server"))
    migrate(url)
    return url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    return _new_database(backend, request, tmp_path_factory.mktemp(f"db-{backend}"))


@pytest.fixture
def fresh_database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _new_database(backend, request, tmp_path)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def sms() -> MemorySmsSender:
    return MemorySmsSender()


def make_settings(database_url: str, keys_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "dev",
        "database_url": database_url,
        "keys_dir": keys_dir,
        "secrets": TEST_SECRETS,
        # Tests sign one phone in again at one instant of their manual clock; the resend wait
        # has tests of its own (api/test_auth.py).
        "otp": OtpSettings(
            per_client_limit=100_000, verify_per_client_limit=100_000, resend_seconds=0
        ),
        # Every test signs in and binds from 127.0.0.1 against one shared database.
        "proofing": ProofingSettings(per_client_limit=100_000),
        "keys": KeySettings(ring_refresh_seconds=0),
        "trust": TrustSettings(serve_cached_seconds=0),
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path / "keys")


class RunningApp:
    def __init__(
        self,
        context: AppContext,
        client: httpx.AsyncClient,
        sms: MemorySmsSender,
        registry: MemoryProofing,
    ):
        self.context = context
        self.client = client
        self.sms = sms
        self.registry = registry
        """The identity registry the app proves identities against (people are added to it
        by ``api.bind`` unless a test says otherwise)."""
        self.api = Api(client, registry)

    async def operator_token(self, role: Role = Role.OPERATOR) -> str:
        async with self.context.sessionmaker() as session, session.begin():
            _, token = await operators.create_operator(
                session,
                name=f"test {role.value}",
                role=role,
                actor=Actor.cli(),
                now=self.context.clock.now(),
            )
        return token

    async def feed_key(self, *kinds: str, name: str | None = None) -> str:
        async with self.context.sessionmaker() as session, session.begin():
            _, key = await feeds.create_client(
                session,
                name=name or f"feed {uuid.uuid4().hex[:8]}",
                kinds=[FeedKind(k) for k in (kinds or [k.value for k in FeedKind])],
                actor=Actor.cli(),
                now=self.context.clock.now(),
            )
        return key

    async def set_red(self, resident: Resident, reason: str = "close contact") -> dict[str, Any]:
        """An operator sets the resident's status red, as a close contact would be."""
        operator = {"Authorization": f"Bearer {await self.operator_token(Role.OPERATOR)}"}
        me = (await self.client.get("/v1/me", headers=resident.auth)).json()
        changed = await self.client.put(
            f"/v1/admin/residents/{me['resident_id']}/status",
            headers=operator,
            json={"status": "red", "reason": reason},
        )
        assert changed.status_code == 200, changed.text
        answer: dict[str, Any] = changed.json()
        return answer

    async def checkpoint_key(self, name: str = "test gate", kind: str = "venue") -> str:
        async with self.context.sessionmaker() as session, session.begin():
            _, key = await checkpoints.create_checkpoint(
                session,
                name=name,
                kind=as_place_kind(kind),
                actor=Actor.cli(),
                now=self.context.clock.now(),
            )
        return key

    async def resident_id(self, resident: Resident) -> uuid.UUID:
        me = await self.client.get("/v1/me", headers=resident.auth)
        assert me.status_code == 200, me.text
        return uuid.UUID(me.json()["resident_id"])

    async def unverify(self, resident: Resident) -> None:
        """Make the resident's binding what migration 0007 made of every binding before it:
        ``unverified``, as if bound when nothing was proved, with no status to read."""
        resident_id = await self.resident_id(resident)
        async with self.context.sessionmaker() as session, session.begin():
            await session.execute(
                update(Identity)
                .where(Identity.resident_id == resident_id)
                .values(assurance="unverified", proofed_at=None, proofing_ref=None)
            )
            await session.execute(
                delete(HealthStatus).where(HealthStatus.resident_id == resident_id)
            )


async def start_app(
    settings: Settings,
    clock: ManualClock,
    sms: MemorySmsSender,
    *,
    bootstrap: bool = True,
    client_address: str = "127.0.0.1",
    registry: MemoryProofing | None = None,
) -> AsyncIterator[RunningApp]:
    registry = registry or MemoryProofing()
    app = create_app(
        ResolvedSettings(settings, settings.secrets or TEST_SECRETS),
        clock=clock,
        sms=sms,
        proofing=registry,
    )
    async with app.router.lifespan_context(app):
        context: AppContext = app.state.context
        if bootstrap:
            await bootstrap_dev_key(context)
        transport = httpx.ASGITransport(app=app, client=(client_address, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield RunningApp(context, client, sms, registry)


@pytest.fixture
async def running(
    settings: Settings, clock: ManualClock, sms: MemorySmsSender
) -> AsyncIterator[RunningApp]:
    async for running_app in start_app(settings, clock, sms):
        yield running_app


@pytest.fixture
def api(running: RunningApp) -> Api:
    return running.api
