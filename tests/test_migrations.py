"""The migrations are the schema: they must match the models on both databases, and go down too."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from yuekang.db import create_engine, migrate
from yuekang.models import Base


def _diff(url: str) -> list[object]:
    async def run() -> list[object]:
        engine = create_engine(url, pool_size=1)
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
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


def migrate_down(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from yuekang.db import migrations_dir

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url
    command.downgrade(config, "base")
