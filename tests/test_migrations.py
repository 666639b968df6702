"""The migrations are the schema: they must match the models on both databases, and go down too."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import LargeBinary, Uuid, bindparam, inspect, select, text

from yuekang.db import UTCDateTime, create_engine, migrate
from yuekang.health_status.models import HealthStatus, StatusOverride
from yuekang.models import Base
from yuekang.partitions import include_object
from yuekang.residents.models import Identity


def _diff(url: str) -> list[object]:
    async def run() -> list[object]:
        engine = create_engine(url, pool_size=1)
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(
                        sync, opts={"compare_type": True, "include_object": include_object}
                    ),
                    Base.metadata,
                )
            )
        await engine.dispose()
        return list(diff)

    return asyncio.run(run())


def _tables(url: str) -> set[str]:
    async def run() -> set[str]:
        engine = create_engine(url, pool_size=1)
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        await engine.dispose()
        return set(names)

    return asyncio.run(run())


def test_migrations_match_the_models(fresh_database_url: str):
    assert _diff(fresh_database_url) == []
    assert set(Base.metadata.tables) <= _tables(fresh_database_url)


def test_migrations_go_down_and_up_again(fresh_database_url: str):
    migrate_down(fresh_database_url)
    assert _tables(fresh_database_url) <= {"alembic_version"}
    migrate(fresh_database_url)
    assert set(Base.metadata.tables) <= _tables(fresh_database_url)


def _config(url: str) -> Any:
    from alembic.config import Config

    from yuekang.db import migrations_dir

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url
    return config


def migrate_down(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(_config(url), revision)


def test_statuses_set_by_operators_before_the_rules_engine_are_kept(fresh_database_url: str):
    from alembic import command

    url = fresh_database_url
    migrate_down(url, "0001")
    resident = uuid.uuid4()
    when = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)

    typed = [
        bindparam("id", type_=Uuid()),
        bindparam("index", type_=LargeBinary()),
        bindparam("at", type_=UTCDateTime()),
    ]

    async def seed() -> None:
        engine = create_engine(url, pool_size=1)
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO residents (id, phone_index, phone_ct, phone_key_id, created_at) "
                    "VALUES (:id, :index, :ct, 'k1', :at)"
                ).bindparams(*typed),
                {"id": resident, "index": b"i" * 32, "ct": b"c", "at": when},
            )
            await connection.execute(
                text(
                    "INSERT INTO health_status (resident_id, status, reason_codes, reason_text, "
                    "source, updated_at, updated_by) VALUES (:id, 'red', '[]', 'close contact', "
                    "'operator', :at, 'operator:7')"
                ).bindparams(*typed[:1], typed[2]),
                {"id": resident, "at": when},
            )
        await engine.dispose()

    async def overrides() -> list[tuple[str, str, str]]:
        engine = create_engine(url, pool_size=1)
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(StatusOverride.status, StatusOverride.reason, StatusOverride.granted_by)
            )
            found = [tuple(r) for r in rows.all()]
        await engine.dispose()
        return found

    asyncio.run(seed())
    command.upgrade(_config(url), "head")
    assert asyncio.run(overrides()) == [("red", "close contact", "operator:7")]


def test_bindings_made_before_proofing_become_unverified_with_no_status_to_read(
    fresh_database_url: str,
):
    # 0007 rebuilds `residents` on SQLite; with foreign keys on, dropping the old table used to
    # cascade to every identity, status and override: the bindings must come through, as
    # "unverified", and the operators' decisions filed under their documents. Their statuses
    # go (an unproved account must not read the document's person's health data) and are
    # decided again from the facts once proved.
    from alembic import command

    url = fresh_database_url
    migrate_down(url, "0006")
    resident = uuid.uuid4()
    when = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    typed = [
        bindparam("id", type_=Uuid()),
        bindparam("index", type_=LargeBinary()),
        bindparam("at", type_=UTCDateTime()),
    ]

    async def seed() -> None:
        engine = create_engine(url, pool_size=1)
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO residents (id, phone_index, phone_ct, phone_key_id, created_at) "
                    "VALUES (:id, :index, :ct, 'k1', :at)"
                ).bindparams(*typed),
                {"id": resident, "index": b"p" * 32, "ct": b"c", "at": when},
            )
            await connection.execute(
                text(
                    "INSERT INTO identities (resident_id, doc_type, doc_index, name_ct, "
                    "doc_number_ct, birth_date_ct, key_id, masked_name, bound_at, updated_at) "
                    "VALUES (:id, 'prc_id', :index, :ct, :ct, :ct, 'k1', '张*三', :at, :at)"
                ).bindparams(*typed),
                {"id": resident, "index": b"d" * 32, "ct": b"c", "at": when},
            )
            await connection.execute(
                text(
                    "INSERT INTO health_status (resident_id, status, reason_codes, reason_text, "
                    "source, updated_at, updated_by) VALUES (:id, 'green', '[]', NULL, "
                    "'rules', :at, 'system:rules')"
                ).bindparams(*typed[:1], typed[2]),
                {"id": resident, "at": when},
            )
        await engine.dispose()

    async def after() -> tuple[list[tuple[str, object]], int]:
        engine = create_engine(url, pool_size=1)
        async with engine.connect() as connection:
            identities = (
                await connection.execute(
                    select(Identity.assurance, Identity.proofed_at).where(
                        Identity.resident_id == resident
                    )
                )
            ).all()
            statuses = (
                await connection.execute(
                    select(HealthStatus.resident_id).where(HealthStatus.resident_id == resident)
                )
            ).all()
        await engine.dispose()
        return [tuple(row) for row in identities], len(statuses)

    asyncio.run(seed())
    command.upgrade(_config(url), "head")
    assert asyncio.run(after()) == ([("unverified", None)], 0)


def test_a_new_sqlite_database_is_for_its_owner_only(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'yuekang.db'}"
    migrate(url)
    assert (tmp_path / "var").stat().st_mode & 0o777 == 0o700
    for name in ("yuekang.db", "yuekang.db-wal", "yuekang.db-shm"):
        path = tmp_path / "var" / name
        if path.exists():
            assert path.stat().st_mode & 0o077 == 0, name
