"""What a newcomer meets first on the command line: help that reads flags as flags, and a busy
port named in one line with the way to another."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from yuekang.cli import app


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    # Typer's groups are its own click's (typer._click), not the click package's.
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_help_shows_flags_without_a_value_and_options_with_one() -> None:
    root = typer.main.get_command(app)
    paths = list(_commands(root))
    assert ("verify",) in paths and ("partner", "macao", "keys") in paths
    for path in paths:
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, path
        # The flag's own line: "--help", then its description, and no value to give.
        assert re.search(r"^  --help +Show this message and exit\.$", result.output, re.M), path
    serve = CliRunner().invoke(app, ["serve", "--help"]).output
    assert re.search(r"^  --migrate / --no-migrate +Run migrations", serve, re.M)
    assert re.search(r"^  --port <int range> +Port \(default 8000, or YUEKANG_PORT\)", serve, re.M)
    verify = CliRunner().invoke(app, ["verify", "--help"]).output
    assert re.search(r"^  --json +Print the verdict as JSON$", verify, re.M)


def test_a_busy_port_is_named_in_one_line_with_the_way_to_another(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(Path(sys.executable).parent / "yuekang"), "serve", "--port", str(port)],
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if not k.startswith("YUEKANG_")},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: port {port} on 127.0.0.1 is already in use (another server?); "
        "choose another with --port N or YUEKANG_PORT=N\n"
    )
    # Refused before the database was made or migrated (the development secrets, the first
    # thing a development server reads, are made by then and kept for the next start).
    assert [p.name for p in tmp_path.iterdir()] in ([], ["keys"])


def test_macao_prints_the_key_ids_guangdong_is_to_expect(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    import httpx

    from yuekang_reference.macao import MacaoSettings, create_app

    data = tmp_path / "macao"
    missing = CliRunner().invoke(app, ["partner", "macao", "keys", "--data-dir", str(data)])
    assert missing.exit_code == 2
    assert f"no Macao data in {data}" in missing.stderr
    assert not data.exists()  # reading made no Macao of its own

    caplog.set_level(logging.INFO, logger="yuekang_reference.macao")
    macao = create_app(MacaoSettings(data_dir=data))

    async def announced_kids() -> set[str]:
        async with macao.router.lifespan_context(macao):
            transport = httpx.ASGITransport(app=macao)
            async with httpx.AsyncClient(transport=transport, base_url="http://macao") as client:
                document = (await client.get("/v1/exchange/keys")).json()
        return {key["kid"] for key in document["keys"]}

    announced = asyncio.run(announced_kids())
    printed = {
        r.getMessage().split()[1] for r in caplog.records if r.getMessage().startswith("key ")
    }
    assert len(announced) == 3 and printed == announced

    ids = CliRunner().invoke(app, ["partner", "macao", "keys", "--ids", "--data-dir", str(data)])
    assert ids.exit_code == 0, ids.output
    assert set(ids.stdout.split()) == announced
    listing = CliRunner().invoke(app, ["partner", "macao", "keys", "--data-dir", str(data)])
    assert "exchange/enc  active" in listing.stdout


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("70000", "Input should be less than or equal to 65535"),
        ("0", "Input should be greater than or equal to 1"),
    ],
)
def test_a_port_that_cannot_exist_is_a_configuration_error_in_one_line(
    tmp_path: Path, value: str, problem: str
) -> None:
    # Before it was bounded, 70000 started a server that said it ran "on :70000", and 0 one on
    # a port the system chose.
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUEKANG_")}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "yuekang"), "serve"],
        cwd=tmp_path,
        env={**env, "YUEKANG_PORT": value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"error: YUEKANG_PORT: {problem}\n"
    assert list(tmp_path.iterdir()) == []
