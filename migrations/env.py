"""Alembic environment: async engines, batch mode for SQLite ALTERs, the whole model metadata."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from yuekang.db import create_engine
from yuekang.models import Base
from yuekang.partitions import include_object

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("YUEKANG_DATABASE_URL")
    return str(url or "sqlite+aiosqlite:///var/yuekang.db")


def _configure(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a table by copying it and dropping the original; with foreign
        # keys on, dropping ``residents`` would cascade to every identity, status and code. The
        # pragma only takes effect outside a transaction, so it goes to the driver directly.
        _pragma(connection, "PRAGMA foreign_keys=OFF")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        compare_type=True,
        # Partitions and the partition-keyed constraints are the migration's and housekeeping's.
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()
    if sqlite and _pragma(connection, "PRAGMA foreign_key_check"):
        raise RuntimeError("the migration left rows whose foreign keys point nowhere")


def _pragma(connection: Connection, statement: str) -> list[object]:
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    try:
        cursor.execute(statement)
        return list(cursor.fetchall())
    finally:
        cursor.close()


async def _run_online() -> None:
    engine = create_engine(_url(), pool_size=1)
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
