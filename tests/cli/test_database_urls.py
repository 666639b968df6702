"""A database URL SQLAlchemy would refuse -- a multi-host URL whose hosts and ports do not pair
up -- is one line naming the variable and the way to write it, exit status 2, from every
command: not SQLAlchemy's traceback from the first engine made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from yuekang.cli import app

PASSWORD = "pw-never-shown"

MISMATCHED = {
    "a host without its port": "host=127.0.0.1:5432&host=localhost",
    "two hosts, one port": "host=127.0.0.1,localhost&port=5432",
    "three ports for two hosts": "host=127.0.0.1,localhost&port=5432,5432,5432",
    "no port at all": "host=127.0.0.1,localhost",
    "host= twice with port=": "host=127.0.0.1&host=localhost&port=5432",
}


def url(query: str) -> str:
    return f"postgresql+asyncpg://yk:{PASSWORD}@/yuekang?{query}&target_session_attrs=read-write"


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in os.environ:
        if name.startswith("YUEKANG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("YUEKANG_KEYS_DIR", str(tmp_path / "keys"))
    return tmp_path


def one_line(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (args, result.output, result.exception)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert PASSWORD not in result.stderr
    return result.stderr


@pytest.mark.parametrize("query", MISMATCHED.values(), ids=MISMATCHED.keys())
def test_a_mismatched_multi_host_url_is_one_line(
    query: str, environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YUEKANG_DATABASE_URL", url(query))
    for args in (["keys", "list"], ["db", "upgrade"], ["serve", "--port", "1"]):
        said = one_line(args)

        assert said.startswith("error: YUEKANG_DATABASE_URL: "), said
        assert "host=h1:5432&host=h2:5432" in said
    # Nothing was made before the refusal: no database, no development secrets.
    assert list(environment.iterdir()) == []


def test_a_mismatched_replica_url_is_named_by_its_place(
    environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = "postgresql+asyncpg://yk@127.0.0.1:5432/yuekang"
    monkeypatch.setenv("YUEKANG_DATABASE_URL", good)
    monkeypatch.setenv(
        "YUEKANG_DATABASE__REPLICA_URLS", f'["{good}", "{url("host=a,b&port=5432")}"]'
    )

    said = one_line(["keys", "list"])

    assert said == (
        "error: YUEKANG_DATABASE__REPLICA_URLS: replica 2: the hosts and the ports do not pair "
        "up: a multi-host URL gives every host its port, "
        "?host=h1:5432&host=h2:5432&target_session_attrs=read-write\n"
    )


def test_the_server_refuses_it_in_one_line_before_anything_starts(environment: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("YUEKANG_")}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "yuekang"), "serve", "--port", "1"],
        cwd=environment,
        env={**environ, "YUEKANG_DATABASE_URL": url(MISMATCHED["a host without its port"])},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: YUEKANG_DATABASE_URL: a host is listed without its port: a multi-host URL "
        "gives every host its port, ?host=h1:5432&host=h2:5432&target_session_attrs=read-write\n"
    )
