"""The production image, built by ``scripts/container`` and run with podman, for the deploy tests.

Building needs root (debootstrap, rootful podman) and podman, which ``scripts/container``
installs with apt when it can; elsewhere the tests that need the image skip and say why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "container"
IMAGE = "localhost/yuekang:test"


def skip_without_podman() -> None:
    """Skip the calling test where the image cannot be built here."""
    tools = ("podman", "buildah", "runc", "debootstrap")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    can_install = os.geteuid() == 0 and shutil.which("apt-get") is not None
    if missing and not can_install:
        pytest.skip(
            f"{', '.join(missing)} missing and not installable without root and apt: "
            "apt-get install podman buildah runc debootstrap"
        )
    if os.geteuid() != 0:
        pytest.skip("building the image's Debian base (debootstrap) and rootful podman need root")


def podman_env() -> dict[str, str]:
    conf = subprocess.run(
        [str(SCRIPT), "conf"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return {**os.environ, "CONTAINERS_CONF": conf}


def build_image() -> str:
    """Build (or, with the layers cached, re-use) the image; its tag."""
    done = subprocess.run(
        [str(SCRIPT), "build"],
        capture_output=True,
        text=True,
        env={**os.environ, "YUEKANG_IMAGE": IMAGE},
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout.strip().splitlines()[-1]


def podman(
    *args: str, check: bool = True, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, env=env or podman_env(), timeout=timeout
    )
    if check:
        assert done.returncode == 0, f"podman {' '.join(args[:3])}...: {done.stderr[-2000:]}"
    return done


def env_options(env: dict[str, str]) -> list[str]:
    """``-e NAME`` for each variable: the values travel in podman's environment, never on its
    command line (where ``ps`` would show the secrets)."""
    return [option for name in env for option in ("-e", name)]
