"""``yuekang partner``: reference partner systems to run against a Guangdong service.

``yuekang partner macao serve`` starts the reference Macao system (issuer ``MO``, ``MO1:`` codes)
with its own keys and SQLite database in ``--data-dir``; every option can also come from a
``MACAO_*`` environment variable (see ``yuekang.partner.macao.settings``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

partner_app = typer.Typer(
    help="Reference partner systems to test the exchange against.", no_args_is_help=True
)
macao_app = typer.Typer(
    help="The reference Macao health-code system (issuer MO, MO1 codes).", no_args_is_help=True
)
partner_app.add_typer(macao_app, name="macao")


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
    """Serve the reference Macao system; keys and development secrets are made on first run."""
    import logging

    import uvicorn
    from pydantic import ValidationError

    from yuekang.partner.macao import MacaoSettings, create_app

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
    except (ValidationError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"Macao ({settings.issuer}) on http://{settings.host}:{settings.port}, "
        f"data in {settings.data_dir}, Guangdong at {settings.guangdong_url}",
        err=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
