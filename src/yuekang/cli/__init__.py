"""The ``yuekang`` command line: run the service, manage keys, checkpoints, operators and
statuses, and verify codes offline. Commands call services; none of them holds SQL."""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn, TypeVar

import typer

from yuekang.cli.checkpoint import checkpoint_app
from yuekang.cli.exchange import KID_ARGUMENT, exchange_app
from yuekang.cli.operations import keys_rewrap, pii_app, trust_app
from yuekang.cli.partner import partner_app
from yuekang.cli.verify import verify_command

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from yuekang.context import AppContext
    from yuekang.rules import RuleSet

app = typer.Typer(
    help="yuekang: health codes with offline verification.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help for every command below. Typer's rich help writes a type column for every
    # option, flags included, so each flag read "<bool>" as if it took a value; its plain help
    # (click's layout) leaves flags bare, as flags.
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="Health-code signing keys.", no_args_is_help=True)
checkpoints_app = typer.Typer(help="Checkpoints and their API keys.", no_args_is_help=True)
operators_app = typer.Typer(help="Staff accounts for the admin API.", no_args_is_help=True)
status_app = typer.Typer(help="Residents' health status.", no_args_is_help=True)
feeds_app = typer.Typer(help="Authority data feeds.", no_args_is_help=True)
feed_clients_app = typer.Typer(help="Systems allowed to push feeds.", no_args_is_help=True)
rules_app = typer.Typer(help="Health-status rule sets.", no_args_is_help=True)
scans_app = typer.Typer(help="Scan records.", no_args_is_help=True)
maintenance_app = typer.Typer(help="Housekeeping.", no_args_is_help=True)
identity_app = typer.Typer(help="Identity bindings and their proofing.", no_args_is_help=True)
feeds_app.add_typer(feed_clients_app, name="clients")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(checkpoints_app, name="checkpoints")
app.add_typer(operators_app, name="operators")
app.add_typer(status_app, name="status")
app.add_typer(feeds_app, name="feeds")
app.add_typer(rules_app, name="rules")
app.add_typer(scans_app, name="scans")
app.add_typer(maintenance_app, name="maintenance")
app.add_typer(identity_app, name="identity")
app.add_typer(checkpoint_app, name="checkpoint")
app.add_typer(exchange_app, name="exchange")
app.add_typer(partner_app, name="partner")
app.add_typer(pii_app, name="pii")
app.add_typer(trust_app, name="trust")
app.command("verify")(verify_command)

T = TypeVar("T")


def main() -> None:
    from yuekang.config import ConfigurationError

    try:
        app()
    except ConfigurationError as exc:
        # Settings that cannot be used, from whichever command: one line, never a value. Typer's
        # Exit means nothing out here (it would be a traceback): leave directly.
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def with_context(work: Callable[[AppContext], Awaitable[T]], *, token_optional: bool = False) -> T:
    """Run ``work(context)`` with a freshly built context, closed after it; the work opens its
    own transactions. A configuration problem is its one line. With ``token_optional``, a
    PKCS#11 token that cannot be used is a warning, and the work runs without it."""
    from yuekang.config import ConfigurationError, load_settings, resolve
    from yuekang.context import AppContext

    def warn(reason: str) -> None:
        typer.echo(f"warning: {reason}; going on without the token", err=True)

    async def runner() -> T:
        try:
            context = AppContext.build(
                resolve(load_settings()), without_token=warn if token_optional else None
            )
        except ConfigurationError as exc:
            fail(str(exc))
        try:
            return await work(context)
        finally:
            await context.close()

    return asyncio.run(runner())


def run_in_transaction(
    work: Callable[[AppContext, AsyncSession, dt.datetime], Awaitable[T]],
    *,
    token_optional: bool = False,
) -> T:
    """Run ``work(context, session, now)`` in one transaction with a freshly built context
    (``token_optional`` as for :func:`with_context`)."""
    from sqlalchemy.exc import DBAPIError

    from yuekang.db import run_after_commit, shown_url
    from yuekang.exceptions import Refusal, YuekangError

    async def in_transaction(context: AppContext) -> T:
        try:
            async with context.sessionmaker() as session:
                async with session.begin():
                    result = await work(context, session, context.clock.now())
                await run_after_commit(session)
            if isinstance(result, Refusal):
                # Committed: the refusal's record (an audited lookup) stays.
                fail(f"{result.error.code}: {result.error.message}", code=1)
            return result
        except YuekangError as exc:
            fail(f"{exc.code}: {exc.message}", code=1)
        except DBAPIError as exc:
            if _no_schema(exc):
                # A fresh database, or the command run from another directory (SQLite's file
                # is relative to it): one line, not a traceback.
                where = shown_url(context.settings.database_url)
                fail(
                    f"the database at {where} has no tables: run `yuekang db upgrade` "
                    "(a SQLite path is relative to the directory a command runs in)"
                )
            raise

    return with_context(in_transaction, token_optional=token_optional)


def _no_schema(exc: Exception) -> bool:
    text = str(getattr(exc, "orig", exc))
    return "no such table" in text or ("relation" in text and "does not exist" in text)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Bind address (default 127.0.0.1, or YUEKANG_HOST)")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port (default 8000, or YUEKANG_PORT)"),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
    migrate: Annotated[
        bool | None, typer.Option(help="Run migrations first (default: yes in dev, no in prod)")
    ] = None,
) -> None:
    """Start the API (SQLite and development keys by default; see README for PostgreSQL)."""
    import uvicorn

    from yuekang import logs
    from yuekang.app import bootstrap_dev_key
    from yuekang.config import ConfigurationError, load_settings, resolve
    from yuekang.context import AppContext
    from yuekang.db import migrate as run_migrations
    from yuekang.db import schema_behind
    from yuekang.keyring.pkcs11 import open_token
    from yuekang.metrics import prepare_workers

    try:
        settings = load_settings()
    except ConfigurationError as exc:
        fail(str(exc))
    host = host or settings.host
    port = port or settings.port
    try:
        resolved = resolve(settings)
        # A signing token that cannot be used is this one line, not a traceback in each worker.
        token = open_token(resolved)
        if token is not None:
            token.close()
    except ConfigurationError as exc:
        fail(str(exc))
    # After the configuration (what is wrong with it comes first, wherever it runs), before
    # migrations and keys: a busy port is one line rather than uvicorn's error after a page of
    # start-up log.
    problem = _cannot_listen(host, port)
    if problem is not None:
        fail(problem)
    # The service's lines and uvicorn's in one format (YUEKANG_LOG__FORMAT), here and in every
    # worker uvicorn starts. Only once the checks above passed: a refusal is its one line on
    # stderr, and leaves the process's logging as it was (an in-process caller's stream).
    log_config = logs.configure(settings.log_format, settings.log.level)
    if migrate if migrate is not None else settings.is_dev:
        run_migrations(settings.database_url)
    elif not settings.is_dev:
        # Production migrates as a job of its own (docs/OPERATIONS.md). Without it every worker
        # failed on its first query, after which uvicorn stopped -- with exit status 0, so
        # nothing restarted it and nothing said what to do (newcomer review).
        behind = asyncio.run(schema_behind(settings.database_url, pooler=settings.database.pooler))
        if behind is not None:
            fail(behind)
    if settings.is_dev:

        async def bootstrap() -> None:
            context = AppContext.build(resolved)
            try:
                await bootstrap_dev_key(context)
            finally:
                await context.close()

        asyncio.run(bootstrap())
    if settings.metrics.enabled:
        # Before the workers start: they read PROMETHEUS_MULTIPROC_DIR as they import.
        private = prepare_workers(workers)
        if private is not None:
            # uvicorn.run returns on SIGTERM and Ctrl-C; the interpreter then removes it.
            atexit.register(shutil.rmtree, private, ignore_errors=True)
    uvicorn.run(
        "yuekang.app:serve_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=settings.trust_forwarded_for,
        server_header=False,
        # A worker answers the supervisor's health check only once it has imported the
        # service (several seconds on a busy node: 13 s measured on this 2-core machine under
        # load); uvicorn's 5 s default killed workers that were still starting, again and again.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        log_config=log_config,
        log_level=settings.log.level.lower(),
        # uvicorn's access line has the path and the query; the app writes its own
        # (YUEKANG_ACCESS_LOG: the route's template, the status and the time taken).
        access_log=False,
    )


WORKER_HEALTHCHECK_SECONDS = 30


def _cannot_listen(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, in one line naming the way to another port, or
    None. The port is let go again at once; uvicorn binds it as it starts."""
    import errno
    import socket

    choose = "choose another with --port N or YUEKANG_PORT=N"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError) as exc:
        return f"cannot listen on {host!r}: {exc}; choose another address with --host"
    try:
        with socket.socket(family, kind, proto) as probe:
            # As uvicorn does: a port whose last connections are in TIME_WAIT is free to use.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} on {host} is already in use (another server?); {choose}"
        if exc.errno == errno.EACCES:
            return f"port {port} on {host} needs privileges to listen on; {choose}"
        return f"cannot listen on {host} port {port}: {exc.strerror}; {choose} or --host"
    return None


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the schema migrations."""
    from yuekang.config import ConfigurationError, load_settings
    from yuekang.db import migrate

    try:
        url = load_settings().database_url
    except ConfigurationError as exc:
        fail(str(exc))
    migrate(url, revision)
    typer.echo(f"database at {revision}")


@keys_app.command("generate")
def keys_generate(
    alg: Annotated[Literal["ES256", "EdDSA"] | None, typer.Option(help="Algorithm")] = None,
) -> None:
    """Generate a pending key. It is published at once and may be activated after one sync
    interval (keys.publish_lead_seconds)."""
    from yuekang.clock import rfc3339
    from yuekang.keyring import service
    from yuekang.principals import Actor

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        record = await service.generate(
            session,
            alg=alg or context.settings.keys.default_algorithm,
            passphrase=context.secrets.key_passphrase,
            validity=dt.timedelta(days=context.settings.keys.validity_days),
            actor=Actor.cli(),
            now=now,
            token=context.keyring.token,
        )
        lead = context.settings.keys.publish_lead_seconds
        ready = record.published_at + dt.timedelta(seconds=lead)
        where = "" if context.keyring.token is None else f" in token {context.keyring.token.label}"
        typer.echo(
            f"{record.kid} {record.alg} pending{where}; may be activated from {rfc3339(ready)}"
        )

    run_in_transaction(work)


@keys_app.command("anchor")
def keys_anchor() -> None:
    """Print the trust anchor's public key (a JWK; its kid is the fingerprint) for checkpoints to
    pin, making the anchor key on first use. Hand it to checkpoints out of band."""
    from yuekang.trust import service

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        anchor = await service.anchor_key(
            session,
            passphrase=context.secrets.key_passphrase,
            now=now,
            create=True,
            token=context.keyring.token,
        )
        assert anchor is not None
        typer.echo(f"anchor {anchor.kid} ({anchor.alg})", err=True)
        typer.echo(json.dumps(anchor.public().to_jwk()))

    run_in_transaction(work)


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the keys as JSON")] = False,
) -> None:
    """List signing keys, their states, and which are held in a PKCS#11 token."""
    from yuekang.clock import rfc3339
    from yuekang.keyring import service
    from yuekang.keyring.pkcs11 import is_token_key

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        records = await service.list_keys(session)
        rows = [
            {
                "kid": r.kid,
                "alg": r.alg,
                "state": r.state,
                "held_in": "token" if is_token_key(r.private_pem) else "database",
                "published_at": rfc3339(r.published_at),
                "activated_at": rfc3339(r.activated_at) if r.activated_at else None,
                "retired_at": rfc3339(r.retired_at) if r.retired_at else None,
                "not_after": rfc3339(r.not_after),
            }
            for r in records
        ]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        for row in rows:
            typer.echo(
                f"{row['kid']}  {row['alg']:<5}  {row['state']:<11}  {row['held_in']:<8}  "
                f"published {row['published_at']}  not after {row['not_after']}"
            )

    # Listing reads rows only: it must work while the token is away (when one asks most).
    run_in_transaction(work, token_optional=True)


@keys_app.command("activate", context_settings=KID_ARGUMENT)
def keys_activate(kid: str) -> None:
    """Make a pending key the signing key; the active key is retired."""
    from yuekang.keyring import service
    from yuekang.principals import Actor

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        await service.activate(
            session,
            kid=kid,
            publish_lead=dt.timedelta(seconds=context.settings.keys.publish_lead_seconds),
            actor=Actor.cli(),
            now=now,
        )
        typer.echo(f"{kid} active")

    run_in_transaction(work)


@keys_app.command("retire", context_settings=KID_ARGUMENT)
def keys_retire(
    kid: str,
    compromised: Annotated[
        bool, typer.Option(help="Withdraw at once: every code it signed stops verifying")
    ] = False,
) -> None:
    """Stop a key signing. It stays published until its codes expire, unless compromised."""
    from yuekang.keyring import service
    from yuekang.keyring.pkcs11 import is_token_key
    from yuekang.principals import Actor

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        token = context.keyring.token
        record = await service.retire(
            session, kid=kid, compromised=compromised, actor=Actor.cli(), now=now, token=token
        )
        typer.echo(f"{kid} {record.state}")
        if compromised and is_token_key(record.private_pem):
            if token is not None and not token.holds(kid):
                typer.echo(f"{kid} destroyed in token {token.label}: it cannot sign again")
            else:
                typer.echo(
                    f"warning: {kid} is held in a PKCS#11 token this command could not reach "
                    "(keys.backend=pkcs11 and its token needed): destroy it there by hand",
                    err=True,
                )

    # A stolen or broken token is exactly when its keys must be withdrawn: that needs only the
    # database.
    run_in_transaction(work, token_optional=compromised)


keys_app.command("rewrap")(keys_rewrap)


@checkpoints_app.command("create")
def checkpoints_create(
    name: str,
    kind: Annotated[str, typer.Option(help="venue, transport or border (its policy)")] = "venue",
    region: Annotated[str | None, typer.Option(help="GB/T 2260 code of its place")] = None,
) -> None:
    """Register a checkpoint and print its API key (shown once; only a hash is stored)."""
    from pydantic import ValidationError

    from yuekang.checkpoints import service
    from yuekang.checkpoints.schemas import CheckpointCreate
    from yuekang.principals import Actor

    try:
        # The same rules as the API's body for this action.
        body = CheckpointCreate.model_validate({"name": name, "kind": kind, "region_code": region})
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        checkpoint, api_key = await service.create_checkpoint(
            session,
            name=body.name,
            kind=body.kind,
            region_code=body.region_code,
            actor=Actor.cli(),
            now=now,
        )
        typer.echo(f"checkpoint {checkpoint.id} {name!r} ({checkpoint.kind})", err=True)
        typer.echo(api_key)

    run_in_transaction(work)


@checkpoints_app.command("rotate-key")
def checkpoints_rotate_key(checkpoint_id: str) -> None:
    """Print a new API key for a checkpoint; the old one stops working at once."""
    import uuid

    from yuekang.checkpoints import service
    from yuekang.principals import Actor

    try:
        parsed = uuid.UUID(checkpoint_id)
    except ValueError:
        fail(f"not a checkpoint id: {checkpoint_id!r}")

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        _, api_key = await service.rotate_key(
            session, checkpoint_id=parsed, actor=Actor.cli(), now=now
        )
        typer.echo(api_key)

    run_in_transaction(work)


@checkpoints_app.command("disable")
def checkpoints_disable(checkpoint_id: str) -> None:
    """Stop a checkpoint's key from working."""
    import uuid

    from yuekang.checkpoints import service
    from yuekang.principals import Actor

    try:
        parsed = uuid.UUID(checkpoint_id)
    except ValueError:
        fail(f"not a checkpoint id: {checkpoint_id!r}")

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        await service.disable(session, checkpoint_id=parsed, actor=Actor.cli(), now=now)
        typer.echo(f"checkpoint {parsed} disabled")

    run_in_transaction(work)


@feed_clients_app.command("create")
def feed_clients_create(
    name: str,
    kinds: Annotated[
        str,
        typer.Option(help="Comma-separated: cases,nat-results,vaccinations,risk-areas,travel"),
    ],
) -> None:
    """Register a feed client for some kinds of feed and print its key (shown once)."""
    from pydantic import ValidationError

    from yuekang.feeds import service
    from yuekang.feeds.schemas import FeedClientCreate
    from yuekang.principals import Actor

    try:
        # The same rules as the API's body for this action.
        body = FeedClientCreate.model_validate(
            {"name": name, "kinds": [k.strip() for k in kinds.split(",") if k.strip()]}
        )
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        client, key = await service.create_client(
            session, name=body.name, kinds=body.kinds, actor=Actor.cli(), now=now
        )
        typer.echo(f"feed client {client.id} {name!r} kinds={','.join(client.kinds)}", err=True)
        typer.echo(key)

    run_in_transaction(work)


def _rule_set_file(path: Path) -> RuleSet:
    from yuekang.rules import RuleSetError, parse_rule_set

    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    try:
        return parse_rule_set(data, fmt="json" if path.suffix == ".json" else "toml")
    except RuleSetError as exc:
        fail("invalid rule set:\n  " + "\n  ".join(exc.problems), code=1)


@rules_app.command("check")
def rules_check(path: Path) -> None:
    """Validate a rule set file (TOML, or JSON by extension) without activating it."""
    rules = _rule_set_file(path)
    typer.echo(f"rule set {rules.version}: {len(rules.rules)} rules, valid")


@rules_app.command("activate")
def rules_activate(path: Path) -> None:
    """Validate a rule set file and put it in force (every process within its refresh time;
    statuses decided under another version are decided again when next read)."""
    from yuekang.health_status import rulebook
    from yuekang.principals import Actor

    rules = _rule_set_file(path)

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        await rulebook.activate(session, rules=rules, actor=Actor.cli(), now=now)
        typer.echo(f"rule set {rules.version} is active")

    run_in_transaction(work)


@maintenance_app.command("run")
def maintenance_run() -> None:
    """Do a round of housekeeping now (the server does one an hour on its own): scan records
    past retention, spent rate-limit counters, sign-in challenges and sessions, superseded
    trust bundles, and on PostgreSQL the daily partitions of codes, revocations and scan
    records, made ahead and dropped past retention (see YUEKANG_MAINTENANCE__*). Waits for
    nobody: refused only while another process is in the middle of a round."""
    from yuekang import maintenance

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        done = await maintenance.run_once(
            context.sessionmaker, context.settings, context.clock, force=True
        )
        if not done.ran:
            fail("another process is doing a round now; try again in a few minutes")
        for name, count in done.deleted.items():
            typer.echo(f"{name}: {count} deleted")
        history = done.partitions
        if history.created or history.dropped or history.moved:
            typer.echo(
                f"partitions: {len(history.created)} created, {len(history.dropped)} dropped, "
                f"{history.moved} rows moved out of DEFAULT"
            )
        for name in history.deferred:
            typer.echo(f"partition {name}: deferred to the next round (a lock not had)")
        for name, why in history.failed.items():
            typer.echo(f"partition {name}: failed ({why}); the round went on", err=True)

    run_in_transaction(work)


@scans_app.command("purge")
def scans_purge() -> None:
    """Delete scan records older than the retention period (YUEKANG_SCANS__RETENTION_DAYS),
    with the rest of a housekeeping round (`yuekang maintenance run`)."""
    maintenance_run()


@operators_app.command("create")
def operators_create(
    name: str,
    role: Annotated[str, typer.Option(help="operator, epidemiologist or admin")] = "operator",
) -> None:
    """Create a staff account and print its bearer token (shown once)."""
    from yuekang.operators import service
    from yuekang.principals import Actor, Role

    try:
        parsed = Role(role)
    except ValueError:
        fail(f"unknown role {role!r}; use operator, epidemiologist or admin")

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        operator, token = await service.create_operator(
            session, name=name, role=parsed, actor=Actor.cli(), now=now
        )
        typer.echo(f"operator {operator.id} {name!r} ({parsed.value})", err=True)
        typer.echo(token)

    run_in_transaction(work)


@status_app.command("set")
def status_set(
    doc_type: Annotated[str, typer.Option(help="prc_id, residence_permit, hk_macao_permit, ...")],
    doc_number: Annotated[str, typer.Option()],
    status: Annotated[Literal["green", "yellow", "red"], typer.Option()],
    reason: Annotated[str, typer.Option(help="Recorded in the status history and audit log")],
    valid_days: Annotated[
        int | None,
        typer.Option(help="How long it overrides the facts known now (default: until replaced)"),
    ] = None,
) -> None:
    """Override the status of the resident holding a document (facts that arrive later still
    count)."""
    from pydantic import ValidationError

    from yuekang.exceptions import Refusal
    from yuekang.health_status import service
    from yuekang.health_status.schemas import StatusSet
    from yuekang.principals import Actor
    from yuekang.residents import service as residents
    from yuekang.residents.documents import DocType

    try:
        parsed = DocType(doc_type)
    except ValueError:
        fail(f"unknown document type {doc_type!r}")
    try:
        # The same rules as the API's body for this action.
        change = StatusSet(status=status, reason=reason, valid_days=valid_days)
    except ValidationError as exc:
        fail("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors()))

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> Refusal | None:
        actor = Actor.cli()
        resident_id = await residents.find_by_document(
            session,
            doc_type=parsed,
            doc_number=doc_number,
            blind_index=context.blind_index,
            actor=actor,
            reason=change.reason,
            now=now,
        )
        if isinstance(resident_id, Refusal):
            return resident_id
        _, revoked = await service.set_status(
            session,
            resident_id=resident_id,
            status=change.status,
            reason=change.reason,
            expires_at=None
            if change.valid_days is None
            else now + dt.timedelta(days=change.valid_days),
            rules=await context.rulebook.current(),
            actor=actor,
            now=now,
        )
        typer.echo(f"resident {resident_id} is {status}; {revoked} code(s) revoked")
        return None

    run_in_transaction(work)


@identity_app.command("revoke-unverified")
def identity_revoke_unverified() -> None:
    """Revoke at once the live codes of every binding never proved (made before proofing
    existed). Without this they run out within their lifetime (an hour by default); with it,
    their holders must prove their identity before they show a code again."""
    from yuekang.principals import Actor
    from yuekang.residents import service as residents

    async def work(context: AppContext, session: AsyncSession, now: dt.datetime) -> None:
        accounts, codes = await residents.revoke_unverified_codes(
            session, actor=Actor.cli(), now=now
        )
        typer.echo(f"{codes} code(s) of {accounts} unverified binding(s) revoked")

    run_in_transaction(work)


if __name__ == "__main__":  # pragma: no cover
    main()
