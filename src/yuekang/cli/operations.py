"""Operators' commands (docs/OPERATIONS.md): ``yuekang pii`` (rotating the keys of personal data),
``yuekang keys rewrap`` (a new key passphrase) and ``yuekang trust advance`` (after a restore)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from yuekang.context import AppContext

pii_app = typer.Typer(
    help="Keys of personal data: which rows are under which key, and moving them to the "
    "active one.",
    no_args_is_help=True,
)


async def _status(context: AppContext) -> dict[str, object]:
    from yuekang import rekey

    async with context.sessionmaker() as session, session.begin():
        tables = await rekey.rows_by_key(session)
        wrong = await rekey.keys_that_do_not_open(session, context.pii)
    configured = context.pii.key_ids
    totals = dict.fromkeys(sorted(configured), 0)
    unconfigured: dict[str, int] = {}
    for counts in tables.values():
        for kid, n in counts.items():
            if kid in configured:
                totals[kid] += n
            else:
                unconfigured[kid] = unconfigured.get(kid, 0) + n
    old = sum(n for kid, n in totals.items() if kid != context.pii.active_key_id)
    return {
        "active_key_id": context.pii.active_key_id,
        "rows": totals,
        "under_old_keys": old,
        "unconfigured": unconfigured,
        "wrong_keys": wrong,
        "tables": tables,
    }


@pii_app.command("status")
def pii_status() -> None:
    """How many rows of personal data are under each key id, as JSON: "rows" per configured key
    (a key with 0 may be removed from YUEKANG_SECRETS__PII_KEYS), "under_old_keys" (what
    `yuekang pii reencrypt` would move), "unconfigured" (rows under a key id that is not
    configured: unreadable until it is added back), "wrong_keys" (a configured key id whose key
    does not open a row stored under it: the wrong bytes for that id). Exits 1 while any row is
    unreadable."""
    from yuekang.cli import with_context

    status = with_context(_status)
    typer.echo(json.dumps(status, indent=2, sort_keys=True))
    if status["unconfigured"] or status["wrong_keys"]:
        raise typer.Exit(1)


@pii_app.command("reencrypt")
def pii_reencrypt(
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per transaction")] = 500,
    pause: Annotated[
        float,
        typer.Option(min=0, help="Seconds to wait between batches, to leave the database room"),
    ] = 0.0,
) -> None:
    """Re-encrypt under the active PII key every personal field still under another configured
    key, in batches of short transactions, while the service runs. Safe to stop and to run
    again: it starts with what is left. Exits 0 when no row is left under an old key, 1
    otherwise (rows that changed under it or were locked, to run again; rows that do not
    decrypt, named by table and id)."""
    from yuekang.principals import Actor

    actor = Actor.cli()

    async def work(context: AppContext) -> tuple[int, dict[str, object]]:
        from yuekang import rekey

        unreadable = 0
        for sealed in rekey.SEALED:
            after = None
            done = changed = 0
            while True:
                async with context.sessionmaker() as session, session.begin():
                    batch = await rekey.reencrypt_batch(
                        session,
                        sealed,
                        cipher=context.pii,
                        after=after,
                        limit=batch_size,
                        actor=actor,
                        now=context.clock.now(),
                    )
                done, changed = done + batch.reencrypted, changed + batch.changed
                for row_id in batch.unreadable:
                    typer.echo(f"{sealed.table} {row_id}: does not decrypt", err=True)
                unreadable += len(batch.unreadable)
                if batch.seen < batch_size:
                    break
                after = batch.last
                if pause:
                    await asyncio.sleep(pause)
            typer.echo(f"{sealed.table}: {done} re-encrypted, {changed} changed meanwhile")
        return unreadable, await _status(context)

    started = time.monotonic()
    from yuekang.cli import with_context

    unreadable, status = with_context(work)
    left = status["under_old_keys"]
    typer.echo(
        f"active key {status['active_key_id']}; {left} row(s) left under old keys "
        f"({unreadable} that do not decrypt); {time.monotonic() - started:.1f} s"
    )
    if left:
        raise typer.Exit(1)


PASSPHRASE_MAX_BYTES = 1024


def keys_rewrap(
    new_passphrase_file: Annotated[
        Path,
        typer.Option(
            help="A file holding the new passphrase (at least 16 characters; a trailing newline "
            "is dropped). Not an option's value: that would show in the process list."
        ),
    ],
) -> None:
    """Encrypt every stored private key (signing keys, the trust anchor, exchange keys) with a
    new passphrase instead of YUEKANG_SECRETS__KEY_PASSPHRASE, in one transaction: all or
    nothing. Keys already under the new one are left alone, so a repeated run is harmless. Then
    roll the new passphrase out at once (docs/OPERATIONS.md, "The key passphrase")."""
    from yuekang import operations
    from yuekang.cli import fail, run_in_transaction
    from yuekang.principals import Actor

    try:
        with new_passphrase_file.open("rb") as file:
            # Bounded: a passphrase is short, and /dev/zero or a log file given by mistake
            # must not fill the memory.
            raw = file.read(PASSPHRASE_MAX_BYTES + 1)
        new = raw.decode("utf-8").removesuffix("\n")
    except OSError as exc:
        fail(f"cannot read {new_passphrase_file}: {exc.strerror}")
    except UnicodeDecodeError:
        fail(f"{new_passphrase_file} is not UTF-8 text")
    if len(raw) > PASSPHRASE_MAX_BYTES:
        fail(f"{new_passphrase_file} is longer than {PASSPHRASE_MAX_BYTES} bytes: not a passphrase")
    if "\r" in new or "\n" in new:
        # The runbook exports the same file with $(cat ...), which keeps a \r: a passphrase with
        # a line break would be one thing here and another in the service's environment.
        fail(f"{new_passphrase_file} must hold one line (no CR or further line breaks)")
    if len(new) < 16:
        fail(f"{new_passphrase_file} must hold a passphrase of at least 16 characters")

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        if new == context.secrets.key_passphrase:
            fail("the new passphrase is the current one")
        try:
            done = await operations.rewrap_private_keys(
                session, current=context.secrets.key_passphrase, new=new, actor=Actor.cli(), now=now
            )
        except operations.PassphraseMismatch as exc:
            fail(f"{exc}; nothing was changed")
        for table in sorted(set(done.rewrapped) | set(done.already) | set(done.in_token)):
            typer.echo(
                f"{table}: {done.rewrapped.get(table, 0)} rewrapped, "
                f"{done.already.get(table, 0)} under the new passphrase already, "
                f"{done.in_token.get(table, 0)} held in a PKCS#11 token (no passphrase)"
            )

    run_in_transaction(work)


trust_app = typer.Typer(help="The checkpoints' trust bundle.", no_args_is_help=True)

RESTORE_MARGIN = 1_000_000
"""How far past the restored latest version ``trust advance`` goes when not told: more bundle
versions than a server makes in months (one per change of content, at most one per few
seconds), and far below the column's limit of 2**31."""

ADVANCE_MAX = 2**30
"""The highest version ``trust advance`` moves past: half the column's range, leaving a
billion versions for the bundles after it."""


@trust_app.command("advance")
def trust_advance(
    past: Annotated[
        int | None,
        typer.Option(
            min=0,
            # The column is a 32-bit integer: past its top no bundle could ever be numbered
            # again, and checkpoints holding it would refuse every lower one.
            max=ADVANCE_MAX,
            help="The highest bundle version checkpoints may hold (e.g. Prometheus' "
            "max_over_time(yuekang_trust_bundle_version[90d])); default: the database's latest "
            f"+ {RESTORE_MARGIN:,}",
        ),
    ] = None,
) -> None:
    """After restoring the database from a backup: make the next trust bundle's version higher
    than any a checkpoint may hold, or checkpoints refuse the restored server's bundles as
    rollbacks. Prints the new version."""
    from yuekang import operations
    from yuekang.cli import fail, run_in_transaction
    from yuekang.trust import service as trust

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        settings = context.settings
        anchor = await trust.anchor_key(
            session,
            passphrase=context.secrets.key_passphrase,
            now=now,
            create=False,
            token=context.keyring.token,
        )
        if anchor is None:
            fail("no trust anchor key in this database: there is no bundle to advance")
        last = await trust.latest(session)
        floor = past if past is not None else (last.version if last else 0) + RESTORE_MARGIN
        if floor > ADVANCE_MAX:
            fail(f"bundle version {floor:,} is past the {ADVANCE_MAX:,} this command goes to")
        record = await operations.advance_bundle_version(
            session,
            past=floor,
            anchor=anchor,
            issuer=settings.issuer,
            now=now,
            lifetime=dt.timedelta(seconds=settings.trust.bundle_lifetime_seconds),
            grace=dt.timedelta(seconds=settings.trust.bundle_grace_seconds),
            max_code_lifetime=dt.timedelta(seconds=settings.codes.max_lifetime_seconds),
        )
        was = "none" if last is None else last.version
        typer.echo(f"trust bundle version {record.version} (was {was})")

    run_in_transaction(work)
