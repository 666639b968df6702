"""``yuekang partner``: reference partner systems to run against a Guangdong service.

``yuekang partner macao serve`` starts the reference Macao system (issuer ``MO``, ``MO1:`` codes)
with its own keys and SQLite database in ``--data-dir``; every option can also come from a
``MACAO_*`` environment variable (see ``yuekang_reference.macao.settings``).

``yuekang partner registry serve|load|add|credentials`` run and fill the reference identity
registry (``yuekang_reference.registry``); its options can come from ``REGISTRY_*`` variables. Its
default data directory, ``var/registry``, is the one ``yuekang serve`` proofs against in
development, so ``add`` and ``load`` there give the development service more people.

Both live in ``yuekang_reference``, which comes with a source checkout and not with the wheel:
where it is missing, every command here says so in one line and exits with 2.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from yuekang.residents.documents import DocType

if TYPE_CHECKING:
    from yuekang_reference.registry import RegistrySettings, RegistryStore
    from yuekang_reference.registry.store import LoadReport

T = TypeVar("T")

partner_app = typer.Typer(
    help="Reference partner systems to test the exchange against.", no_args_is_help=True
)
macao_app = typer.Typer(
    help="The reference Macao health-code system (issuer MO, MO1 codes).", no_args_is_help=True
)
registry_app = typer.Typer(
    help="The reference identity registry (population register, carriers' registrations).",
    no_args_is_help=True,
)
partner_app.add_typer(macao_app, name="macao")
partner_app.add_typer(registry_app, name="registry")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _require_reference() -> None:
    """Stop with one line, exit code 2, where the reference systems are not installed (a wheel:
    they come with a source checkout)."""
    from yuekang.reference import ReferenceNotInstalled, require_reference

    try:
        require_reference()
    except ReferenceNotInstalled as exc:
        _fail(str(exc))


@macao_app.callback()
def macao() -> None:
    """The reference Macao health-code system (issuer MO, MO1 codes)."""


@macao_app.command("serve")
def serve(
    port: Annotated[int | None, typer.Option(help="Port (default 8100 or MACAO_PORT)")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1)")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Keys, secrets and database (default ./macao-data)")
    ] = None,
    guangdong_url: Annotated[
        str | None, typer.Option(help="Base URL of the Guangdong service")
    ] = None,
    issuer: Annotated[str | None, typer.Option(help="Macao's issuer id (default MO)")] = None,
) -> None:
    """Serve the reference Macao system; keys and development secrets are made on first run,
    and its key ids printed as it starts: Guangdong adds it with each as --expect-kid."""
    _require_reference()
    import logging

    import uvicorn
    from pydantic import ValidationError

    from yuekang_reference.macao import MacaoSettings, create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {
        "port": port,
        "host": host,
        "data_dir": data_dir,
        "guangdong_url": guangdong_url,
        "issuer": issuer,
    }
    try:
        settings = MacaoSettings(**{k: v for k, v in overrides.items() if v is not None})
        app = create_app(settings)
    except ValidationError as exc:
        # Named, never quoted: a secret's value would be printed with pydantic's message.
        problems = (
            f"MACAO_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        typer.echo("error: " + "; ".join(problems), err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"Macao ({settings.issuer}) on http://{settings.host}:{settings.port}, "
        f"data in {settings.data_dir}, Guangdong at {settings.guangdong_url}",
        err=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")


@macao_app.command("keys")
def macao_keys(
    data_dir: Annotated[
        Path | None, typer.Option(help="Macao's data (default ./macao-data or MACAO_DATA_DIR)")
    ] = None,
    ids: Annotated[
        bool, typer.Option("--ids", help="Only the key ids, one a line (for --expect-kid)")
    ] = False,
) -> None:
    """Print Macao's key ids, as its operator would send them to Guangdong out of band: each goes
    to `yuekang exchange partner add macao` as --expect-kid. Serving prints them too."""
    _require_reference()
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from yuekang_reference.macao import MacaoSettings
    from yuekang_reference.macao.app import key_lines, stored_key_document

    try:
        given: dict[str, Any] = {"data_dir": data_dir} if data_dir is not None else {}
        settings = MacaoSettings(**given)
    except ValidationError as exc:
        _fail("; ".join(f"MACAO_{'_'.join(map(str, e['loc'])).upper()}" for e in exc.errors()))
    if not (settings.data_dir / "macao.db").exists() and settings.database_url is None:
        # Reading would make a new Macao with keys of its own: not the one that is serving.
        _fail(f"no Macao data in {settings.data_dir}: start it with `yuekang partner macao serve`")

    try:
        keys = asyncio.run(stored_key_document(settings))
    except (OSError, ValueError, SQLAlchemyError) as exc:
        _fail(f"Macao's data in {settings.data_dir}: {exc}")
    for line in key_lines(keys):
        typer.echo(line.split()[0] if ids else line)


@registry_app.callback()
def registry() -> None:
    """The reference identity registry: answers YKP1 checks with match / no match."""


DataDir = Annotated[
    Path | None,
    typer.Option(help="Database and secrets (default var/registry or REGISTRY_DATA_DIR)"),
]


def _registry_settings(**overrides: Any) -> RegistrySettings:
    """The registry's settings; every registry command starts here."""
    _require_reference()
    from pydantic import ValidationError

    from yuekang_reference.registry import RegistrySettings

    try:
        return RegistrySettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        _fail(
            "; ".join(f"setting {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        )


def _with_store(settings: RegistrySettings, work: Callable[[RegistryStore], Awaitable[T]]) -> T:
    """Run ``work`` on the registry's started store; a database or file failure is a one-line
    error, exit code 2."""
    from sqlalchemy.exc import SQLAlchemyError

    from yuekang_reference.registry import open_store

    async def runner() -> T:
        store = open_store(settings.data_dir, settings.database_url)
        try:
            await store.start()
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(runner())
    except (OSError, SQLAlchemyError) as exc:
        _fail(f"the registry's database: {exc}")


def _print_report(report: LoadReport) -> None:
    typer.echo(
        f"people={report.people} subscriptions={report.subscriptions} errors={len(report.errors)}"
    )
    for error in report.errors:
        typer.echo(f"line {error.line}: {error.message}", err=True)


@registry_app.command("serve")
def registry_serve(
    port: Annotated[int | None, typer.Option(help="Port (default 8200 or REGISTRY_PORT)")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Serve the registry.

    Secrets are made on first run, and the sample people loaded into an empty register.
    """
    _require_reference()
    import logging

    import uvicorn

    from yuekang_reference.registry import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = _registry_settings(port=port, host=host, data_dir=data_dir)
    try:
        app = create_app(settings)
    except (OSError, ValueError) as exc:
        _fail(str(exc))

    async def seed(store: RegistryStore) -> None:
        await store.seed_samples()

    # Before serving, so that a database that cannot be opened is one line here rather than a
    # traceback from the server's start.
    _with_store(settings, seed)
    typer.echo(
        f"identity registry on http://{settings.host}:{settings.port} for client "
        f"{settings.client_id}, data in {settings.data_dir}\n"
        f"prove identities against it: YUEKANG_PROOFING__BACKEND=http "
        f"YUEKANG_PROOFING__URL=http://{settings.host}:{settings.port} "
        f"YUEKANG_PROOFING__CLIENT_ID={settings.client_id} and YUEKANG_PROOFING__CLIENT_SECRET "
        f"from `yuekang partner registry credentials --data-dir {settings.data_dir}`",
        err=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")


@registry_app.command("load")
def registry_load(
    file: Annotated[str, typer.Argument(help="NDJSON records (see samples.ndjson), - for stdin")],
    data_dir: DataDir = None,
) -> None:
    """Load NDJSON records: people and carrier subscriptions.

    A subscription with "action": "delete" drops the number. Bad lines are listed on stderr and
    the exit code is 1; the others are loaded.
    """
    settings = _registry_settings(data_dir=data_dir)
    try:
        body = typer.get_binary_stream("stdin").read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}")

    async def load(store: RegistryStore) -> LoadReport:
        return await store.load(body.splitlines())

    report = _with_store(settings, load)
    _print_report(report)
    if report.errors:
        raise typer.Exit(1)


@registry_app.command("add")
def registry_add(
    name: Annotated[str, typer.Option(help="Name as on the document")],
    doc_type: Annotated[DocType, typer.Option(help="Document type")],
    doc_number: Annotated[str, typer.Option(help="Document number")],
    birth_date: Annotated[str, typer.Option(help="Birth date, YYYY-MM-DD")],
    phone: Annotated[
        str | None,
        typer.Option(
            help="A number registered to them, as people type it (138 0013 8000, +853 6612 "
            "3456); an 8-digit one with --region"
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(help="CN, MO or HK: where an 8-digit --phone is from (Macao or Hong Kong)"),
    ] = None,
    carrier: Annotated[str | None, typer.Option(help="The number's carrier")] = None,
    data_dir: DataDir = None,
) -> None:
    """Add one person, and with --phone their number's registration.

    More sample people for development: nothing is written if anything is refused.
    """
    from yuekang.auth.service import normalize_phone
    from yuekang.exceptions import ValidationFailed

    if region not in (None, "CN", "MO", "HK"):
        _fail("--region is CN, MO or HK")
    if phone is not None:
        # The form the service signs people in with, so that the number matches theirs.
        try:
            phone = normalize_phone(phone, region)
        except ValidationFailed as exc:
            _fail(f"--phone: {exc.message}")
    settings = _registry_settings(data_dir=data_dir)
    lines = [
        json.dumps(
            {
                "kind": "person",
                "name": name,
                "doc_type": doc_type.value,
                "doc_number": doc_number,
                "birth_date": birth_date,
            }
        )
    ]
    if phone is not None:
        subscription = {
            "kind": "subscription",
            "phone": phone,
            "doc_type": doc_type.value,
            "doc_number": doc_number,
            "name": name,
        }
        lines.append(json.dumps(subscription | ({"carrier": carrier} if carrier else {})))

    async def add(store: RegistryStore) -> LoadReport:
        return await store.load(lines, all_or_nothing=True)

    report = _with_store(settings, add)
    if report.errors:
        _fail(report.errors[0].message)
    typer.echo(f"added 1 person{' and 1 subscription' if phone else ''} to {settings.data_dir}")


@registry_app.command("credentials")
def registry_credentials(data_dir: DataDir = None) -> None:
    """Print the client id and secret the main service must use.

    They go into YUEKANG_PROOFING__CLIENT_ID and YUEKANG_PROOFING__CLIENT_SECRET (or a file
    named by YUEKANG_PROOFING__CLIENT_SECRET_FILE). The secret is made on first use.
    """
    settings = _registry_settings(data_dir=data_dir)
    from yuekang_reference.registry.settings import client_secret

    try:
        secret = client_secret(settings)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"client_id={settings.client_id}")
    typer.echo(f"client_secret={secret}")
