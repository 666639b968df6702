"""The README's shell blocks, run in order as a newcomer runs them.

Every fenced block of README.md is either a ``text`` block, a shell block that runs here, or a
shell block after the marker ``<!-- readme-test: skip (reason) -->`` saying why it does not (the
install-and-serve command, the whole suite, PostgreSQL, the benchmarks). A block with no language
fails the test, so that nothing is left out without a word.

How it runs them, and where that differs from a newcomer's terminal:

- in a fresh copy of the checkout (its tracked and unignored files, so uncommitted edits count)
  in a temporary directory, with ``.venv`` there a link to this suite's virtualenv: the
  install command is not run, the suite's install stands for it;
- against a real ``yuekang serve`` the test starts in that copy, and with the reference Macao
  the README starts itself; both on free ports of 127.0.0.1 put in place of the README's 8000
  and 8100;
- all blocks in one ``bash`` in order (variables carry over, as in one terminal), with
  ``set -e -o pipefail`` and curl given ``--fail-with-body``, so a command that fails or an HTTP
  error answer fails the test and names its block;
- with no ``YUEKANG_*``, ``MACAO_*`` or ``REGISTRY_*`` variables from the suite's environment,
  and ``TMPDIR`` in the test's own directory (the tour's ``mktemp -d``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.servers import free_port, serve

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHELLS = {"sh", "bash", "shell"}
SKIP = re.compile(r"<!-- readme-test: skip \((?P<reason>[^)]+)\) -->")
SECONDS = 150


@dataclass(frozen=True)
class Block:
    line: int
    language: str
    text: str
    skip: str | None


def blocks(markdown: str, skip: re.Pattern[str] = SKIP) -> list[Block]:
    """The fenced blocks of ``markdown``; ``skip`` is the marker that may sit right above one
    (docs/OPERATIONS.md has its own, tests/test_operations_postgresql.py)."""
    found: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = re.fullmatch(r"```(\S*)", lines[index])
        if opening is None:
            index += 1
            continue
        end = lines.index("```", index + 1)
        marker = skip.fullmatch(lines[index - 1]) if index else None
        found.append(
            Block(
                line=index + 1,
                language=opening.group(1),
                text="\n".join(lines[index + 1 : end]),
                skip=marker.group("reason") if marker else None,
            )
        )
        index = end + 1
    return found


def test_every_block_has_a_language_and_every_skip_a_reason() -> None:
    found = blocks(README.read_text())
    assert [b.line for b in found if not b.language] == []
    assert [b.line for b in found if b.skip and b.language not in SHELLS] == []
    # A marker must sit right above its block; one anywhere else would skip nothing.
    assert README.read_text().count("readme-test: skip") == sum(1 for b in found if b.skip)
    assert sum(1 for b in found if b.language in SHELLS and b.skip is None) >= 4


def _copy_checkout(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(Path(sys.prefix))


def _clean_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("YUEKANG_", "MACAO_", "REGISTRY_"))
    }


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A copy of the checkout with ``yuekang serve`` running in it; (its path, the port)."""
    copy = tmp_path / "yuekang"
    copy.mkdir()
    _copy_checkout(copy)
    with serve(
        _clean_env(), copy, executable=copy / ".venv/bin/yuekang", wait_seconds=60
    ) as server:
        yield copy, server.port


def test_the_readme_runs_as_written(checkout: tuple[Path, int], tmp_path: Path) -> None:
    copy, port = checkout
    macao = free_port()
    script = [
        "set -E -e -o pipefail",
        'curl() { command curl --fail-with-body "$@"; }',
        "trap 'echo \"README block at line $BLOCK failed (exit $?)\" >&2' ERR",
    ]
    ran = 0
    for block in blocks(README.read_text()):
        if block.language not in SHELLS or block.skip is not None:
            continue
        text = block.text.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        text = text.replace("8100", str(macao))
        script += [f"BLOCK={block.line}", text]
        ran += 1
    body = "\n".join(script)
    before = {p.name for p in copy.iterdir()}
    assert "127.0.0.1:8000" not in body and "8100" not in body
    # mktemp -d makes the tour's directory here, not in the machine's /tmp.
    returncode, text = run_script(
        body,
        cwd=copy,
        env=_clean_env() | {"TMPDIR": str(tmp_path)},
        transcript=tmp_path / "transcript.txt",
        seconds=SECONDS,
        what="the README",
    )
    assert returncode == 0, text[-6000:]
    assert ran >= 4
    # What the tour says each step shows.
    shown = [
        "verdict: valid",  # yuekang verify, offline
        '"reasons":[{"code":"revoked"',  # online, once the status is red
        "You were identified as a close contact",  # the status after the feed, in English
        "partner macao: issuer MO, format MO1",  # every announced key taken, no other
    ]
    assert [line for line in shown if line not in text] == [], text
    # The converted 粤康码, saying where it came from.
    assert re.match(r'\{"code_id": "\S+", "qr_text": "YK1:', text.splitlines()[-1]), text
    assert '"source": {"issuer": "MO"' in text.splitlines()[-1]
    # The tour's files went to its temporary directory: the checkout gained only the server's
    # database and development keys.
    assert {p.name for p in copy.iterdir()} - before <= {"var", "keys"}


def run_script(
    body: str, *, cwd: Path, env: dict[str, str], transcript: Path, seconds: int, what: str
) -> tuple[int, str]:
    """Run ``body`` with bash as a terminal would, returning its exit status and output. The
    output goes to a file, not a pipe: a server the blocks leave in the background keeps its
    copy of the output open. Whatever the blocks started is stopped with them."""
    with transcript.open("wb") as out:
        runner = subprocess.Popen(
            ["bash", "-c", body],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        runner.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} took over {seconds} s:\n{transcript.read_text()[-6000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGTERM)
        runner.wait(timeout=30)
    return runner.returncode, transcript.read_text(errors="replace")
