"""Moving personal data to a new PII key (yuekang.rekey, ``yuekang pii``), on SQLite and
PostgreSQL: every encrypted column is covered, every row moves, the old key can then go, and a
row a request rewrote while the job held it is left as the request wrote it."""

from __future__ import annotations

import ast
import base64
import datetime as dt
import json
import os
import re
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Update, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from conftest import TEST_SECRETS, RunningApp, make_settings, start_app
from support.api import Resident
from support.servers import YUEKANG
from yuekang import operations, rekey
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock, epoch
from yuekang.codec.keys import VerificationKey, private_key_from_pem
from yuekang.db import Base
from yuekang.pii import PiiCipher
from yuekang.principals import Actor
from yuekang.residents.models import Identity
from yuekang.trust import service as trust
from yuekang.trust.models import TrustBundleRecord
from yuekang.verifier import TrustStore

NEW_KEY = base64.b64encode(os.urandom(32)).decode()


def test_every_encrypted_column_is_listed() -> None:
    """A personal field added later without a place in SEALED would stay under an old key, and
    removing that key would make it unreadable."""
    encrypted = {
        f"{table.name}.{column.name}"
        for table in Base.metadata.tables.values()
        for column in table.columns
        if column.name.endswith("_ct")
    }
    listed = {f"{s.table}.{c}" for s in rekey.SEALED for c in s.columns}
    assert listed == encrypted
    for sealed in rekey.SEALED:
        assert sealed.key_column in sealed.model.__table__.columns


def secrets_with(keys: dict[str, str], active: str) -> Any:
    return TEST_SECRETS.model_copy(update={"pii_keys": keys, "pii_active_key_id": active})


@pytest.fixture
async def app_on_t1(
    fresh_database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
) -> AsyncIterator[RunningApp]:
    settings = make_settings(fresh_database_url, tmp_path / "keys")
    async for running in start_app(settings, clock, sms):
        yield running


async def three_residents(running: RunningApp) -> list[Resident]:
    residents = []
    for _ in range(3):
        resident = await running.api.sign_in()
        bound = await running.api.bind(resident)
        assert bound.status_code == 201, bound.text
        residents.append(resident)
    return residents


async def move_all(running: RunningApp, cipher: PiiCipher, limit: int) -> list[rekey.Batch]:
    batches = []
    for sealed in rekey.SEALED:
        after = None
        while True:
            async with running.context.sessionmaker() as session, session.begin():
                batch = await rekey.reencrypt_batch(
                    session,
                    sealed,
                    cipher=cipher,
                    after=after,
                    limit=limit,
                    actor=Actor.system("test"),
                    now=running.context.clock.now(),
                )
            batches.append(batch)
            if batch.seen < limit:
                break
            after = batch.last
    return batches


async def test_every_row_moves_and_the_old_key_can_go(
    app_on_t1: RunningApp,
    fresh_database_url: str,
    tmp_path: Path,
    clock: ManualClock,
    sms: MemorySmsSender,
) -> None:
    residents = await three_residents(app_on_t1)
    async with app_on_t1.context.sessionmaker() as session:
        before = await rekey.rows_by_key(session)
    assert before["residents"]["t1"] >= 3 and before["identities"] == {"t1": 3}

    both = PiiCipher(
        {"t1": TEST_SECRETS.pii_key_bytes()["t1"], "t2": base64.b64decode(NEW_KEY)}, "t2"
    )
    # Batches of two: the job pages through each table and stops when one comes back short.
    batches = await move_all(app_on_t1, both, limit=2)
    assert sum(b.reencrypted for b in batches) == sum(sum(c.values()) for c in before.values())
    assert sum(b.changed for b in batches) == 0
    async with app_on_t1.context.sessionmaker() as session:
        after = await rekey.rows_by_key(session)
    assert {table: set(counts) for table, counts in after.items()} == {
        table: {"t2"} for table in before
    }
    # Run again: nothing is left to do.
    assert sum(b.seen for b in await move_all(app_on_t1, both, limit=2)) == 0

    # The service on the new key alone reads every resident's identity.
    only_new = make_settings(
        fresh_database_url,
        tmp_path / "keys",
        secrets=secrets_with({"t2": NEW_KEY}, "t2"),
    )
    async for running in start_app(only_new, clock, sms, bootstrap=False):
        for resident in residents:
            read = await running.client.get("/v1/me/identity", headers=resident.auth)
            assert read.status_code == 200, read.text
            assert read.json()["masked_name"] == "张*三"


async def test_a_row_rewritten_meanwhile_is_left_as_written(app_on_t1: RunningApp) -> None:
    """A request (say, a process still on the old active key) rewrites a row between the job's
    read and its write: the job's write must not put the old values back."""
    await three_residents(app_on_t1)
    # The last row in the job's order: the job has written no row yet when the request writes.
    async with app_on_t1.context.sessionmaker() as session:
        resident_id = await session.scalar(
            select(Identity.resident_id).order_by(Identity.resident_id.desc()).limit(1)
        )
    t1 = PiiCipher(TEST_SECRETS.pii_key_bytes(), "t1")
    rewritten, _ = t1.encrypt("李四", context=f"identities.name:{resident_id}")

    class Meanwhile:
        """The job's session, where the request's write lands just before the job's first."""

        def __init__(self, session: AsyncSession) -> None:
            self.session, self.written = session, False

        async def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(statement, Update) and not self.written:
                self.written = True
                await self.session.execute(
                    update(Identity)
                    .where(Identity.resident_id == resident_id)
                    .values(name_ct=rewritten)
                )
            return await self.session.execute(statement, *args, **kwargs)

        def add(self, instance: object) -> None:
            self.session.add(instance)

    cipher = PiiCipher(
        {"t1": TEST_SECRETS.pii_key_bytes()["t1"], "t2": base64.b64decode(NEW_KEY)}, "t2"
    )
    identities = next(s for s in rekey.SEALED if s.table == "identities")
    async with app_on_t1.context.sessionmaker() as session, session.begin():
        batch = await rekey.reencrypt_batch(
            cast(AsyncSession, Meanwhile(session)),
            identities,
            cipher=cipher,
            after=None,
            limit=10,
            actor=Actor.system("test"),
            now=app_on_t1.context.clock.now(),
        )
    assert (batch.reencrypted, batch.changed) == (2, 1)
    async with app_on_t1.context.sessionmaker() as session:
        row = (
            await session.execute(
                select(Identity.key_id, Identity.name_ct).where(Identity.resident_id == resident_id)
            )
        ).one()
    assert row.key_id == "t1"
    assert t1.decrypt(row.name_ct, key_id="t1", context=f"identities.name:{resident_id}") == "李四"


async def test_a_row_that_does_not_decrypt_is_named_and_skipped(app_on_t1: RunningApp) -> None:
    (resident, *_) = await three_residents(app_on_t1)
    resident_id = await app_on_t1.resident_id(resident)
    async with app_on_t1.context.sessionmaker() as session, session.begin():
        identity = await session.get(Identity, resident_id)
        assert identity is not None
        identity.birth_date_ct = identity.birth_date_ct[:-1] + bytes(
            [identity.birth_date_ct[-1] ^ 1]
        )
    cipher = PiiCipher(
        {"t1": TEST_SECRETS.pii_key_bytes()["t1"], "t2": base64.b64decode(NEW_KEY)}, "t2"
    )
    identities = next(s for s in rekey.SEALED if s.table == "identities")
    async with app_on_t1.context.sessionmaker() as session, session.begin():
        batch = await rekey.reencrypt_batch(
            session,
            identities,
            cipher=cipher,
            after=None,
            limit=10,
            actor=Actor.system("test"),
            now=app_on_t1.context.clock.now(),
        )
    assert batch.unreadable == (uuid.UUID(str(resident_id)),)
    assert batch.reencrypted == 2


async def test_the_key_passphrase_changes_and_the_service_signs_under_the_new_one(
    app_on_t1: RunningApp,
    fresh_database_url: str,
    tmp_path: Path,
    clock: ManualClock,
    sms: MemorySmsSender,
) -> None:
    new = "a new passphrase, 0123456789"
    actor, now = Actor.system("test"), app_on_t1.context.clock.now()
    async with app_on_t1.context.sessionmaker() as session, session.begin():
        done = await operations.rewrap_private_keys(
            session, current=TEST_SECRETS.key_passphrase, new=new, actor=actor, now=now
        )
    assert done.rewrapped == {"signing_keys": 1, "anchor_keys": 1, "exchange_keys": 2}
    # Repeated (say, after a lost connection): nothing left to do, nothing broken.
    async with app_on_t1.context.sessionmaker() as session, session.begin():
        again = await operations.rewrap_private_keys(
            session, current=TEST_SECRETS.key_passphrase, new=new, actor=actor, now=now
        )
    assert (again.rewrapped, again.already) == ({}, done.rewrapped)
    # A passphrase that opens nothing is refused, and nothing changes.
    with pytest.raises(operations.PassphraseMismatch):
        async with app_on_t1.context.sessionmaker() as session, session.begin():
            await operations.rewrap_private_keys(
                session,
                current="not the passphrase!",
                new="another one, 0123456789",
                actor=actor,
                now=now,
            )
    async with app_on_t1.context.sessionmaker() as session:
        for model in operations.PRIVATE_KEYS:
            for record in (await session.execute(select(model))).scalars():
                private_key_from_pem(record.private_pem, new.encode())

    # The service with the new passphrase signs codes (its key ring decrypts the stored key).
    settings = make_settings(
        fresh_database_url,
        tmp_path / "keys",
        secrets=TEST_SECRETS.model_copy(update={"key_passphrase": new}),
    )
    async for running in start_app(settings, clock, sms, bootstrap=False):
        resident = await running.api.registered()
        code = await running.api.code(resident)
        assert code["qr_text"].startswith("YK1:")


async def test_after_a_restore_checkpoints_take_the_bundles_again(
    app_on_t1: RunningApp, clock: ManualClock
) -> None:
    running = app_on_t1
    gate = {"Authorization": f"Bearer {await running.checkpoint_key()}"}
    async with running.context.sessionmaker() as session, session.begin():
        anchor = await trust.anchor_key(
            session, passphrase=TEST_SECRETS.key_passphrase, now=clock.now(), create=False
        )
    assert anchor is not None
    store = TrustStore(VerificationKey.from_jwk(anchor.public().to_jwk()))

    async def sync() -> TrustStore:
        bundle = await running.client.get("/v1/trust-bundle", headers=gate)
        assert bundle.status_code == 200, bundle.text
        return store.load(bundle.text, now=epoch(clock.now()))

    first, second = await running.api.registered(), await running.api.registered()
    store = await sync()
    await running.set_red(first)
    store = await sync()
    held = store.bundle
    assert held is not None
    # The database is restored from a backup taken before the checkpoint's version was made:
    # the restored server numbers its next bundle as that one, with other content.
    async with running.context.sessionmaker() as session, session.begin():
        await session.execute(
            delete(TrustBundleRecord).where(TrustBundleRecord.version == held.version)
        )
    code = await running.api.code(second)
    await running.set_red(second)
    assert (await sync()).verify(code["qr_text"], now=epoch(clock.now())).valid  # not learned

    async with running.context.sessionmaker() as session, session.begin():
        record = await operations.advance_bundle_version(
            session,
            past=held.version + 1000,
            anchor=anchor,
            issuer=running.context.settings.issuer,
            now=clock.now(),
            lifetime=dt.timedelta(days=1),
            grace=dt.timedelta(days=3),
            max_code_lifetime=dt.timedelta(days=1),
        )
    assert record.version > held.version + 1000
    store = await sync()
    verdict = store.verify(code["qr_text"], now=epoch(clock.now()))
    assert list(verdict.reasons) == ["revoked"]
    async with running.context.sessionmaker() as session:
        assert await session.get(TrustBundleRecord, held.version + 1001) is None  # placeholder


MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations" / "versions"
CONTRACTING = {"drop_table", "drop_column", "rename_table"}


def contractions(source: str) -> list[str]:
    """What ``upgrade()`` of a migration does that the code of the release before it would
    trip over (docs/OPERATIONS.md, "Upgrading without downtime")."""
    found = []
    for function in ast.parse(source).body:
        if not (isinstance(function, ast.FunctionDef) and function.name == "upgrade"):
            continue
        for node in ast.walk(function):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name = node.func.attr
            keywords = {k.arg: k.value for k in node.keywords}
            if name in CONTRACTING:
                found.append(name)
            elif name == "alter_column" and (
                "new_column_name" in keywords
                or "type_" in keywords
                or _is_false(keywords.get("nullable"))
            ):
                found.append("alter_column " + ast.unparse(node.args[0]) if node.args else name)
            elif name == "add_column":
                column = node.args[-1] if node.args else None
                if isinstance(column, ast.Call):
                    options = {k.arg: k.value for k in column.keywords}
                    if _is_false(options.get("nullable")) and "server_default" not in options:
                        found.append("add_column NOT NULL without a default")
            elif (
                name == "execute"
                and node.args
                and re.search(r"\b(DROP|RENAME)\b", ast.unparse(node.args[0]), re.IGNORECASE)
            ):
                found.append("execute " + ast.unparse(node.args[0])[:60])
    return found


def _is_false(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def test_migrations_expand_unless_they_say_they_contract() -> None:
    offenders = {}
    for path in sorted(MIGRATIONS.glob("*.py")):
        source = path.read_text()
        docstring = ast.get_docstring(ast.parse(source)) or ""
        declared = any(line.startswith("Contract:") for line in docstring.splitlines())
        if contractions(source) and not declared:
            offenders[path.name] = contractions(source)
    assert offenders == {}
    assert len(list(MIGRATIONS.glob("*.py"))) >= 10


def test_the_migration_check_sees_a_contraction() -> None:
    source = """
def upgrade():
    op.drop_column("residents", "phone_ct")
    with op.batch_alter_table("identities") as batch_op:
        batch_op.alter_column("masked_name", nullable=False)
        batch_op.add_column(sa.Column("kind", sa.String(8), nullable=False))
        batch_op.add_column(sa.Column("note", sa.String(8), nullable=True))
        batch_op.add_column(sa.Column("flag", sa.String(8), nullable=False, server_default="x"))
    op.execute("ALTER TABLE appeals DROP COLUMN text_ct")

def downgrade():
    op.drop_table("everything")
"""
    assert sorted(contractions(source)) == [
        "add_column NOT NULL without a default",
        "alter_column 'masked_name'",
        "drop_column",
        "execute 'ALTER TABLE appeals DROP COLUMN text_ct'",
    ]


async def test_pii_status_fails_while_a_rows_key_is_not_configured(
    app_on_t1: RunningApp, fresh_database_url: str, tmp_path: Path, backend: str
) -> None:
    """What the runbook relies on before removing a key and after a restore: `yuekang pii
    status` exits 1 and names the key when rows are under one that is not configured."""
    if backend != "sqlite":
        pytest.skip("the command's exit, once: the counts are the same query on both")
    await three_residents(app_on_t1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUEKANG_")} | {
        "YUEKANG_DATABASE_URL": fresh_database_url,
        "YUEKANG_KEYS_DIR": str(tmp_path / "cli-keys"),
        "YUEKANG_SECRETS__KEY_PASSPHRASE": TEST_SECRETS.key_passphrase,
        "YUEKANG_SECRETS__SESSION_SECRET": TEST_SECRETS.session_secret,
        "YUEKANG_SECRETS__OTP_SECRET": TEST_SECRETS.otp_secret,
        "YUEKANG_SECRETS__BLIND_INDEX_KEY": TEST_SECRETS.blind_index_key,
    }

    def status(keys: dict[str, str], active: str) -> tuple[int, dict[str, Any]]:
        done = subprocess.run(
            [YUEKANG, "pii", "status"],
            env=env
            | {
                "YUEKANG_SECRETS__PII_KEYS": json.dumps(keys),
                "YUEKANG_SECRETS__PII_ACTIVE_KEY_ID": active,
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.returncode, json.loads(done.stdout)

    code, both = status({"t1": TEST_SECRETS.pii_keys["t1"], "t2": NEW_KEY}, "t2")
    assert code == 0
    assert both["rows"]["t2"] == 0 and both["under_old_keys"] == both["rows"]["t1"] >= 6
    code, only_new = status({"t2": NEW_KEY}, "t2")
    assert code == 1
    assert only_new["unconfigured"] == {"t1": both["rows"]["t1"]}
    assert both["wrong_keys"] == {}
    # The id configured with the wrong bytes: counting ids alone called this readable.
    code, wrong = status({"t1": NEW_KEY}, "t1")
    assert code == 1
    assert wrong["unconfigured"] == {} and set(wrong["wrong_keys"]) == {"t1"}
