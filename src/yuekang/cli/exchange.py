"""``yuekang exchange``: our exchange keys, partner systems and the outbox (docs/EXCHANGE.md)."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from yuekang.context import AppContext

exchange_app = typer.Typer(
    help="The exchange with partner health-code systems.", no_args_is_help=True
)
keys_app = typer.Typer(help="Our exchange keys.", no_args_is_help=True)
KID_ARGUMENT = {"ignore_unknown_options": True}
"""For commands taking a key id: base64url starts with "-" once in 64, and such an argument is
the id, not an unknown option."""
partner_app = typer.Typer(help="Partner systems and their keys.", no_args_is_help=True)
exchange_app.add_typer(keys_app, name="keys")
exchange_app.add_typer(partner_app, name="partner")


@keys_app.command("init")
def keys_init() -> None:
    """Make our exchange keys (a signing and an encryption key) if there are none; development
    servers do this on first run."""
    from yuekang.cli import run_in_transaction
    from yuekang.exchange import keys

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        made = await keys.ensure(
            session,
            passphrase=context.secrets.key_passphrase,
            now=now,
            token=context.keyring.token,
        )
        typer.echo("made " + ", ".join(made) if made else "exchange keys exist already")

    run_in_transaction(work)


@keys_app.command("list")
def keys_list() -> None:
    """Our exchange keys and their states."""
    from yuekang.cli import run_in_transaction
    from yuekang.exchange import keys

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        for record in await keys.records(session):
            typer.echo(f"{record.kid}  {record.use}  {record.state}  {record.created_at:%Y-%m-%d}")

    run_in_transaction(work)


@keys_app.command("rotate")
def keys_rotate(use: Annotated[Literal["sig", "enc"], typer.Argument()]) -> None:
    """Retire our active ``sig`` or ``enc`` key and make a new one. Partners learn it from
    ``GET /v1/exchange/keys``; a retired ``enc`` key still decrypts for 12 minutes."""
    from yuekang.cli import run_in_transaction
    from yuekang.exchange import keys
    from yuekang.principals import Actor

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        kid = await keys.rotate(
            session,
            use=use,
            passphrase=context.secrets.key_passphrase,
            actor=Actor.cli(),
            now=now,
            token=context.keyring.token,
        )
        typer.echo(f"new {use} key {kid}")

    run_in_transaction(work)


async def _fetch(context: AppContext, url: str) -> object:
    import httpx

    from yuekang.cli import fail

    try:
        response = await context.http.get(url.rstrip("/") + "/v1/exchange/keys", timeout=10)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        fail(f"cannot fetch the key document from {url}: {exc}")


def _sync(partner_id: str, url: str | None, expected: list[str]) -> None:
    from urllib.parse import urlsplit

    from yuekang.cli import fail, run_in_transaction
    from yuekang.exchange import adapters, partners
    from yuekang.principals import Actor

    adapter = adapters.get(partner_id)
    if adapter is None:
        # Keys for a partner nothing here can read would sit unused, or worse, be trusted the
        # day an adapter of that name is installed.
        installed = ", ".join(sorted(adapters.registered())) or "none"
        fail(f"no partner adapter {partner_id!r} is installed (installed: {installed})")

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        base = url
        if base is None:
            view = await partners.load(session, partner_id)
            if view is None:
                fail(f"no partner {partner_id!r}: add it first")
            base = view.base_url
        address = urlsplit(base)
        if address.scheme != "https" and not context.settings.is_dev:
            # Outside development, the key document is only as trustworthy as the channel.
            fail("a partner's URL must be https outside development")
        if address.scheme not in ("http", "https") or not address.hostname:
            fail(f"not a URL: {base!r}")
        document = partners.parse_key_document(await _fetch(context, base))
        if document.format != adapter.code_format:
            fail(
                f"the key document is for {document.format} codes; "
                f"{partner_id} issues {adapter.code_format}: nothing stored"
            )
        known = {record.kid for record in await partners.key_records(session, partner_id)}
        new = [key.kid for key in document.keys if key.kid not in known]
        unexpected = sorted(set(new) - set(expected))
        if expected and unexpected:
            # Nothing is stored: a key nobody announced is exactly what an attacker would add.
            fail("keys not in --expect-kid, nothing stored: " + ", ".join(unexpected))
        result = await partners.save(
            session,
            partner_id=partner_id,
            base_url=url,
            document=document,
            actor=Actor.cli(),
            now=now,
        )
        typer.echo(f"partner {partner_id}: issuer {document.issuer}, format {document.format}")
        for key in result.added:
            # Compare these with the partner's notice, sent out of band, before relying on them.
            typer.echo(f"  added   {key.kid}  {key.purpose}/{key.use}  {key.state}")
        for kid in result.retired:
            typer.echo(f"  retired {kid}")

    run_in_transaction(work)


@partner_app.command("add")
def partner_add(
    partner_id: Annotated[str, typer.Argument(help="Our name for it: macao")],
    url: Annotated[str, typer.Option(help="The partner's base URL (HTTPS in production)")],
    expect_kid: Annotated[
        list[str] | None,
        typer.Option(
            help="A key id from the partner's notice; repeat for each. New keys not "
            "listed are refused and nothing is stored."
        ),
    ] = None,
) -> None:
    """Register a partner from its key document, printing each key's id (its thumbprint) to
    compare with the partner's notice -- or checking them against --expect-kid first."""
    _sync(partner_id, url, expect_kid or [])


@partner_app.command("sync")
def partner_sync(
    partner_id: str,
    expect_kid: Annotated[
        list[str] | None,
        typer.Option(help="Key ids announced by the partner; other new keys are refused."),
    ] = None,
) -> None:
    """Fetch the partner's key document again: new keys added, dropped or retired ones retired."""
    _sync(partner_id, None, expect_kid or [])


@partner_app.command("retire-key", context_settings=KID_ARGUMENT)
def partner_retire_key(partner_id: str, kid: str) -> None:
    """Stop trusting one partner key now (say, on its compromise notice)."""
    from yuekang.cli import run_in_transaction
    from yuekang.exchange import partners
    from yuekang.principals import Actor

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        await partners.retire_key(
            session, partner_id=partner_id, kid=kid, actor=Actor.cli(), now=now
        )
        typer.echo(f"partner key {kid} retired")

    run_in_transaction(work)


@partner_app.command("list")
def partner_list() -> None:
    """Registered partners and their keys."""
    from yuekang.cli import run_in_transaction
    from yuekang.exchange import partners

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        for view in await partners.all_partners(session):
            typer.echo(f"{view.id}  {view.issuer}  {view.code_format}  {view.base_url}")
            for record in await partners.key_records(session, view.id):
                typer.echo(f"  {record.kid}  {record.purpose}/{record.use}  {record.state}")

    run_in_transaction(work)


@exchange_app.command("outbox")
def outbox() -> None:
    """Messages to partners and where their delivery stands, as JSON lines."""
    from yuekang.cli import run_in_transaction
    from yuekang.clock import rfc3339
    from yuekang.exchange import outbox as outbox_service

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        for m in await outbox_service.recent(session, state=None):
            typer.echo(
                json.dumps(
                    {
                        "id": str(m.id),
                        "partner": m.partner_id,
                        "state": m.state,
                        "attempts": m.attempts,
                        "last_error": m.last_error,
                        "next_attempt_at": rfc3339(m.next_attempt_at),
                    }
                )
            )

    run_in_transaction(work)
