"""``yuekang pii``: rotating the keys of personal data (docs/OPERATIONS.md, "Secrets")."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from yuekang.context import AppContext

pii_app = typer.Typer(
    help="Keys of personal data: which rows are under which key, and moving them to the "
    "active one.",
    no_args_is_help=True,
)

T = TypeVar("T")


def _with_context(work: Callable[[AppContext], Awaitable[T]]) -> T:
    """Run ``work`` with a freshly built context; the work opens its own transactions."""
    from yuekang.cli import fail
    from yuekang.config import ConfigurationError, load_settings, resolve
    from yuekang.context import AppContext

    async def runner() -> T:
        try:
            context = AppContext.build(resolve(load_settings()))
        except ConfigurationError as exc:
            fail(str(exc))
        try:
            return await work(context)
        finally:
            await context.close()

    return asyncio.run(runner())


async def _status(context: AppContext) -> dict[str, object]:
    from yuekang import rekey

    async with context.sessionmaker() as session, session.begin():
        tables = await rekey.rows_by_key(session)
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
        "tables": tables,
    }


@pii_app.command("status")
def pii_status() -> None:
    """How many rows of personal data are under each key id, as JSON: "rows" per configured key
    (a key with 0 may be removed from YUEKANG_SECRETS__PII_KEYS), "under_old_keys" (what
    `yuekang pii reencrypt` would move), "unconfigured" (rows under a key id that is not
    configured: unreadable until it is added back). Exits 1 while any row is unreadable."""
    status = _with_context(_status)
    typer.echo(json.dumps(status, indent=2, sort_keys=True))
    if status["unconfigured"]:
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
    unreadable, status = _with_context(work)
    left = status["under_old_keys"]
    typer.echo(
        f"active key {status['active_key_id']}; {left} row(s) left under old keys "
        f"({unreadable} that do not decrypt); {time.monotonic() - started:.1f} s"
    )
    if left:
        raise typer.Exit(1)
