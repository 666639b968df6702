"""A throwaway SoftHSM2 token for the tests: a temporary token directory, a ``softhsm2.conf``
naming it (through ``SOFTHSM2_CONF``), and ``softhsm2-util --init-token``.

SoftHSM2 reads its configuration and finds its tokens when a process first loads the module, and
a process loads it once: so the test process has one token directory for its whole run, set
before anything loads the module, and a token made in it before the first load
(:func:`softhsm_token` is session-scoped for that reason; every test names its keys by kid, so
sharing the token shares nothing else).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MODULE_PATHS = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/local/lib/softhsm/libsofthsm2.so"),
)


@dataclass(frozen=True)
class SoftToken:
    module: Path
    label: str
    pin: str
    so_pin: str
    directory: Path


def module_path() -> Path | None:
    return next((p for p in MODULE_PATHS if p.is_file()), None)


def skip_reason() -> str | None:
    """Why a SoftHSM2 token cannot be made here, or None."""
    if module_path() is None or shutil.which("softhsm2-util") is None:
        return "SoftHSM2 is not installed (Debian: apt-get install softhsm2)"
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        return "python-pkcs11 is not installed (pip install -e '.[test]')"
    return None


def make_token(label: str = "yuekang-test") -> Iterator[SoftToken]:
    """A fresh token in a temporary directory, removed afterwards."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    module = module_path()
    assert module is not None
    directory = Path(tempfile.mkdtemp(prefix="softhsm-"))
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {directory / 'tokens'}\n"
        "objectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin, so_pin = secrets.token_hex(4), secrets.token_hex(4)
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            so_pin,
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
    )
    try:
        yield SoftToken(module=module, label=label, pin=pin, so_pin=so_pin, directory=directory)
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous
        shutil.rmtree(directory, ignore_errors=True)
