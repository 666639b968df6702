"""Codes, revocations and scan records partitioned by day on PostgreSQL

Retention of these three tables becomes dropping a day's partition (milliseconds) rather than a
DELETE of a day's millions of rows. Each table is rebuilt as a range-partitioned table with its
rows: codes and revocations by ``expires_at`` (the time after which a code and its revocation are
useless; a revocation carries its code's ``expires_at``, so both land in the same day), scan
records by ``scanned_at`` (what ``scans.retention_days`` counts from). One partition per UTC day
from the oldest row's day (rows more than 60 days old share one partition, which housekeeping
drops once it is wholly past retention) to seven days ahead, and a DEFAULT partition that takes any row whose
day has none, so no insert can fail for want of a partition (maintenance.py keeps it empty).

A partitioned table's primary key and unique constraints must contain the partition key, so each
gains it: ``(code_id, expires_at)``, ``(resident_id, idempotency_key, expires_at)``,
``(id, scanned_at)``, ``(checkpoint_id, scan_id, scanned_at)``. What the narrower constraints
guaranteed is kept by the code (docs/ARCHITECTURE.md, "Partitions"). Nothing references these
tables by foreign key.

SQLite: nothing changes.

Contract: not safe for a rolling update on PostgreSQL. The version before this one stores scan
records with ``ON CONFLICT (checkpoint_id, scan_id)``, which needs the narrower unique constraint
this migration replaces (its uploads would fail), and this version names the wider one, which
the old schema lacks; the copy also holds the three tables' locks. Upgrade in a window: stop
the service, ``yuekang db upgrade``, start this version (docs/OPERATIONS.md, "Partitions").

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 21:00:00
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from alembic import op
from sqlalchemy import text

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AHEAD_DAYS = 7
"""Days ahead created now; housekeeping keeps as many ahead after this (partitions_ahead_days)."""

DAILY_DAYS = 60
"""Rows older than this many days get one partition between them rather than one per day."""


@dataclass(frozen=True)
class _Table:
    name: str
    key: str
    primary_key: list[str]
    unique: dict[str, list[str]] = field(default_factory=dict)
    indexes: dict[str, list[str]] = field(default_factory=dict)
    foreign_keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    """name -> (column, referenced table and column); all ON DELETE CASCADE"""
    sequence: str | None = None


_TABLES = [
    _Table(
        "health_codes",
        key="expires_at",
        primary_key=["code_id"],
        unique={"uq_health_codes_idempotency": ["resident_id", "idempotency_key"]},
        indexes={
            "ix_health_codes_resident_id_expires_at": ["resident_id", "expires_at"],
            "ix_health_codes_issued_at": ["issued_at"],
        },
        foreign_keys={"fk_health_codes_resident_id_residents": ("resident_id", "residents (id)")},
    ),
    _Table(
        "revocations",
        key="expires_at",
        primary_key=["code_id"],
        indexes={"ix_revocations_expires_at": ["expires_at"]},
        foreign_keys={"fk_revocations_resident_id_residents": ("resident_id", "residents (id)")},
    ),
    _Table(
        "scan_records",
        key="scanned_at",
        primary_key=["id"],
        unique={"uq_scan_records_scan": ["checkpoint_id", "scan_id"]},
        indexes={
            "ix_scan_records_checkpoint_id_scanned_at": ["checkpoint_id", "scanned_at"],
            "ix_scan_records_code_id_scanned_at": ["code_id", "scanned_at"],
            "ix_scan_records_scanned_at": ["scanned_at"],
            "ix_scan_records_subject_index_scanned_at": ["subject_index", "scanned_at"],
        },
        foreign_keys={
            "fk_scan_records_checkpoint_id_checkpoints": ("checkpoint_id", "checkpoints (id)")
        },
        sequence="scan_records_id_seq",
    ),
]


def _columns(names: list[str]) -> str:
    return ", ".join(names)


def _with_key(table: _Table, names: list[str]) -> list[str]:
    return names if table.key in names else [*names, table.key]


def _drop_own_constraints(table: _Table, name: str) -> None:
    """Frees the index names (they are schema-wide) on the table about to be copied and dropped."""
    for constraint in [f"pk_{table.name}", *table.unique, *table.foreign_keys]:
        op.execute(f"ALTER TABLE {name} DROP CONSTRAINT IF EXISTS {constraint}")
    for index in table.indexes:
        op.execute(f"DROP INDEX IF EXISTS {index}")


def _add_constraints(table: _Table, *, partitioned: bool) -> None:
    widen = (lambda names: _with_key(table, names)) if partitioned else (lambda names: names)
    name = table.name
    op.execute(
        f"ALTER TABLE {name} ADD CONSTRAINT pk_{name} "
        f"PRIMARY KEY ({_columns(widen(table.primary_key))})"
    )
    for constraint, columns in table.unique.items():
        op.execute(
            f"ALTER TABLE {name} ADD CONSTRAINT {constraint} UNIQUE ({_columns(widen(columns))})"
        )
    for index, columns in table.indexes.items():
        op.execute(f"CREATE INDEX {index} ON {name} ({_columns(columns)})")
    for constraint, (column, target) in table.foreign_keys.items():
        op.execute(
            f"ALTER TABLE {name} ADD CONSTRAINT {constraint} FOREIGN KEY ({column}) "
            f"REFERENCES {target} ON DELETE CASCADE"
        )


def _day(value: dt.date) -> str:
    return f"'{value.isoformat()} 00:00:00+00'"


def _partitions(table: _Table, old: str, today: dt.date) -> None:
    cutoff = today - dt.timedelta(days=DAILY_DAYS)
    day_of = f"({table.key} AT TIME ZONE 'UTC')::date"
    oldest, recent = (
        op.get_bind()
        .execute(
            text(
                f"SELECT min({day_of}), min({day_of}) FILTER (WHERE {day_of} >= :cutoff) "  # noqa: S608
                f"FROM {old}"
            ),
            {"cutoff": cutoff},
        )
        .one()
    )
    name = table.name
    if oldest is not None and oldest < cutoff:
        op.execute(
            f"CREATE TABLE {name}_before_{cutoff:%Y%m%d} PARTITION OF {name} "
            f"FOR VALUES FROM (MINVALUE) TO ({_day(cutoff)})"
        )
    day = today if recent is None else min(recent, today)
    while day <= today + dt.timedelta(days=AHEAD_DAYS):
        after = day + dt.timedelta(days=1)
        op.execute(
            f"CREATE TABLE {name}_p{day:%Y%m%d} PARTITION OF {name} "
            f"FOR VALUES FROM ({_day(day)}) TO ({_day(after)})"
        )
        day = after
    op.execute(f"CREATE TABLE {name}_default PARTITION OF {name} DEFAULT")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        name, old = table.name, f"{table.name}_0012"
        op.execute(f"ALTER TABLE {name} RENAME TO {old}")
        _drop_own_constraints(table, old)
        op.execute(
            f"CREATE TABLE {name} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
            f"PARTITION BY RANGE ({table.key})"
        )
        _partitions(table, old, dt.datetime.now(dt.UTC).date())
        # Indexes after the copy: one build per partition beats maintaining them row by row.
        op.execute(f"INSERT INTO {name} SELECT * FROM {old}")  # noqa: S608
        _add_constraints(table, partitioned=True)
        if table.sequence:
            op.execute(f"ALTER SEQUENCE {table.sequence} OWNED BY {name}.id")
        op.execute(f"DROP TABLE {old}")
        op.execute(f"ANALYZE {name}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        name, old = table.name, f"{table.name}_0012"
        op.execute(f"ALTER TABLE {name} RENAME TO {old}")
        _drop_own_constraints(table, old)
        op.execute(f"CREATE TABLE {name} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        op.execute(f"INSERT INTO {name} SELECT * FROM {old}")  # noqa: S608
        _add_constraints(table, partitioned=False)
        if table.sequence:
            op.execute(f"ALTER SEQUENCE {table.sequence} OWNED BY {name}.id")
        op.execute(f"DROP TABLE {old}")  # and every partition with it
