"""Notifications when a status row or a checkpoint's key changes, on PostgreSQL

Each process keeps the status rows and checkpoint keys it read in memory and drops one when
PostgreSQL says it changed (``yuekang.notices``). The triggers here say it: after a row of
``health_status`` is updated (unless it was decided again because it lapsed) or deleted,
``NOTIFY yuekang_status`` with its ``resident_id``;
after a checkpoint's key hash, ``disabled_at`` or id changes, or the checkpoint is deleted,
``NOTIFY yuekang_checkpoint_keys`` with its id; after a ``TRUNCATE`` of either table, ``*``
(everything). A notification is delivered when the transaction commits, and not at all if it
rolls back. Being triggers, enabled ALWAYS, they fire for every writer: the service, the
command line, a statement typed by hand, a restore, logical replication.

SQLite: nothing changes (nothing is kept in memory there).

Contract: safe for a rolling update. The old version ignores the notifications; this version
keeps nothing until it listens, and listens only to channels these triggers feed.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 03:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECKPOINTS = "yuekang_checkpoint_keys"

TRIGGERS = {
    "health_status": (
        "health_status_changed",
        "health_status_deleted",
        "health_status_truncated",
    ),
    "checkpoints": ("checkpoint_key_changed", "checkpoint_deleted", "checkpoints_truncated"),
}
"""As ``yuekang.notices.TRIGGERS`` says (a migration does not import the package it migrates;
tests/test_notices.py checks that the two agree)."""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION yuekang_status_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('yuekang_status', OLD.resident_id::text);
            RETURN NULL;
        END $$
        """
    )
    # A row decided again because it lapsed is not told: no process serves a kept row past
    # its valid_until (health_status.service.standing), and a day's statuses lapsing is a wave
    # of writes, each notifying commit taking PostgreSQL's one notification lock
    # (docs/OPERATIONS.md, "Rows kept until changed"). A row decided under another rule set is
    # told: the writer's rule book may be the older one (it refreshes every few seconds), and
    # a process holding the row decided under the newer would serve it on.
    op.execute(
        """
        CREATE TRIGGER health_status_changed AFTER UPDATE ON health_status
        FOR EACH ROW WHEN (OLD.valid_until IS NULL OR OLD.valid_until > now())
        EXECUTE FUNCTION yuekang_status_changed()
        """
    )
    op.execute(
        """
        CREATE TRIGGER health_status_deleted AFTER DELETE ON health_status
        FOR EACH ROW EXECUTE FUNCTION yuekang_status_changed()
        """
    )
    op.execute(
        """
        CREATE FUNCTION yuekang_checkpoint_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('yuekang_checkpoint_keys', OLD.id::text);
            RETURN NULL;
        END $$
        """
    )
    # Only what a sync's key check reads: a checkpoint renamed leaves its key kept.
    op.execute(
        """
        CREATE TRIGGER checkpoint_key_changed AFTER UPDATE ON checkpoints
        FOR EACH ROW WHEN (
            OLD.key_hash IS DISTINCT FROM NEW.key_hash
            OR OLD.disabled_at IS DISTINCT FROM NEW.disabled_at
            OR OLD.id IS DISTINCT FROM NEW.id
        ) EXECUTE FUNCTION yuekang_checkpoint_key_changed()
        """
    )
    op.execute(
        """
        CREATE TRIGGER checkpoint_deleted AFTER DELETE ON checkpoints
        FOR EACH ROW EXECUTE FUNCTION yuekang_checkpoint_key_changed()
        """
    )
    # TRUNCATE fires no row trigger: "*" drops everything kept from the table.
    op.execute(
        """
        CREATE FUNCTION yuekang_all_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify(TG_ARGV[0], '*');
            RETURN NULL;
        END $$
        """
    )
    for table, channel in (("health_status", "yuekang_status"), ("checkpoints", CHECKPOINTS)):
        op.execute(
            f"CREATE TRIGGER {table}_truncated AFTER TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION yuekang_all_changed('{channel}')"
        )
    # Fired under session_replication_role = replica too (pg_restore --disable-triggers, a
    # logical replication's apply): a change nobody is told of would be kept forever. Each
    # process checks that these are there and enabled so before it keeps anything
    # (yuekang.notices.TRIGGERS).
    for table, triggers in TRIGGERS.items():
        for trigger in triggers:
            op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ("health_status", "checkpoints"):
        op.execute(f"DROP TRIGGER {table}_truncated ON {table}")
    op.execute("DROP FUNCTION yuekang_all_changed()")
    op.execute("DROP TRIGGER checkpoint_deleted ON checkpoints")
    op.execute("DROP TRIGGER checkpoint_key_changed ON checkpoints")
    op.execute("DROP FUNCTION yuekang_checkpoint_key_changed()")
    op.execute("DROP TRIGGER health_status_deleted ON health_status")
    op.execute("DROP TRIGGER health_status_changed ON health_status")
    op.execute("DROP FUNCTION yuekang_status_changed()")
