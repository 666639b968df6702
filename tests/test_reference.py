"""The reference systems (``yuekang_reference``) are test doubles outside the service's package:
the wheel leaves them out, and what uses them says so in one line where they are missing."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from yuekang.config import Settings, resolve
from yuekang.context import AppContext
from yuekang.reference import NOT_INSTALLED, ReferenceNotInstalled, require_reference

ROOT = Path(__file__).resolve().parents[1]

# A Python where yuekang_reference cannot be imported, as where only the wheel is installed,
# running the ``yuekang`` command line with the arguments after ``-c``.
WITHOUT_REFERENCE = """
import sys
from importlib.abc import MetaPathFinder

class Hidden(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "yuekang_reference" or name.startswith("yuekang_reference."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Hidden())
from yuekang.cli import main
sys.argv = ["yuekang", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel built from this checkout (offline: hatchling is in the test extra, so no build
    environment is fetched)."""
    out = tmp_path_factory.mktemp("wheel")
    build = ["wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)]
    subprocess.run(
        [sys.executable, "-m", "pip", *build],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("yuekang-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_holds_the_service_and_no_reference_system(wheel: zipfile.ZipFile):
    names = wheel.namelist()
    assert [name for name in names if name.startswith("yuekang_reference/")] == []
    assert [name for name in names if name.startswith("yuekang/partner/")] == []
    assert [name for name in names if name.endswith("samples.ndjson")] == []
    assert {name.split("/")[0] for name in names} == {"yuekang", "yuekang-0.1.0.dist-info"}
    # Guangdong's side of the exchange with Macao is the service's own, and stays.
    assert "yuekang/codec/macao.py" in names
    assert "yuekang/exchange/adapters/macao.py" in names
    assert len([name for name in names if name.startswith("yuekang/exchange/")]) > 5
    # The commands stay, to say what is missing.
    assert "yuekang/cli/partner.py" in names
    assert "yuekang/reference.py" in names
    entry_points = wheel.read("yuekang-0.1.0.dist-info/entry_points.txt").decode()
    assert "yuekang.exchange.adapters.macao:ADAPTER" in entry_points
    assert "yuekang_reference" not in entry_points


PARTNER_COMMANDS = [
    ("partner", "macao", "serve"),
    ("partner", "macao", "keys"),
    ("partner", "registry", "serve"),
    ("partner", "registry", "load", "-"),
    ("partner", "registry", "credentials"),
    (
        "partner",
        "registry",
        "add",
        "--name",
        "张三",
        "--doc-type",
        "prc_id",
        "--doc-number",
        "11010519491231002X",
        "--birth-date",
        "1949-12-31",
    ),
]


def without_reference(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "YUEKANG_ENV": "dev",
        "YUEKANG_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'yk.db'}",
        "YUEKANG_KEYS_DIR": str(tmp_path / "keys"),
        "REGISTRY_DATA_DIR": str(tmp_path / "registry"),
        "MACAO_DATA_DIR": str(tmp_path / "macao"),
    }
    env.pop("YUEKANG_PROOFING__BACKEND", None)
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_REFERENCE, *args],
        cwd=tmp_path,
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", PARTNER_COMMANDS, ids=lambda c: " ".join(c[:3]))
def test_a_partner_command_without_the_reference_systems_says_so(
    tmp_path: Path, command: tuple[str, ...]
):
    done = without_reference(tmp_path, *command)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"error: {NOT_INSTALLED}\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # nothing made on the way


def test_the_built_in_registry_without_the_reference_systems_says_so(tmp_path: Path):
    done = without_reference(tmp_path, "keys", "list")
    assert (done.returncode, done.stdout) == (2, "")
    [line] = done.stderr.splitlines()
    assert line.startswith("error: proofing.backend=builtin ")
    assert "YUEKANG_PROOFING__BACKEND=http" in line
    assert line.endswith(NOT_INSTALLED)


def test_serving_in_development_without_the_reference_systems_says_so(tmp_path: Path):
    # Past the settings: the built-in registry is asked for when the context is built.
    done = without_reference(tmp_path, "serve", "--no-migrate")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("error: proofing.backend=builtin ")


async def test_a_context_with_the_built_in_registry_needs_the_reference_systems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    url = f"sqlite+aiosqlite:///{tmp_path / 'yk.db'}"
    monkeypatch.setitem(sys.modules, "yuekang_reference", None)
    with pytest.raises(ReferenceNotInstalled) as refused:
        require_reference()
    assert str(refused.value) == NOT_INSTALLED
    builtin = resolve(Settings(env="dev", keys_dir=tmp_path, database_url=url))
    with pytest.raises(ReferenceNotInstalled, match=r"^proofing\.backend=builtin .*pip install"):
        AppContext.build(builtin)
    # Another registry needs none of it.
    proofing = {"backend": "http", "url": "http://127.0.0.1:9", "client_secret": "s" * 40}
    http = resolve(Settings(env="dev", keys_dir=tmp_path, database_url=url, proofing=proofing))
    context = AppContext.build(http)
    await context.close()


def test_the_reference_systems_are_there_in_a_source_checkout():
    require_reference()
