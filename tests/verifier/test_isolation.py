"""The offline verifier ships on its own: it must not pull in the service, web or database code.

Two checks: what a fresh interpreter actually loads, and (statically, so a lazy import inside a
function cannot hide) what the codec and verifier modules import.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import yuekang.codec
import yuekang.verifier

FORBIDDEN = (
    "fastapi",
    "sqlalchemy",
    "starlette",
    "pydantic_settings",
    "yuekang.config",
    "yuekang.db",
    "httpx",
    # the codec is documented as pure: no network either
    "socket",
    "ssl",
    "http.client",
    "urllib.request",
)
PURE_PACKAGES = ("yuekang.codec", "yuekang.verifier")
# cbor2, cwt and base45 read the Macao code (COSE/CWT); joserfc seals exchange packages (JWE).
# Pure libraries too: no network, no settings.
ALLOWED_THIRD_PARTY = {"cryptography", "cbor2", "cwt", "base45", "joserfc"}
# The verifier also applies checkpoint policies with the pure rules engine (itself free of the
# server: the fresh-import test above covers what it loads).
ALSO_FOR_THE_VERIFIER = ("yuekang.rules",)


def _loaded_modules(module: str, tmp_path: Path) -> list[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        timeout=60,
    )
    modules: list[str] = json.loads(result.stdout)
    return modules


def _matches(name: str, forbidden: str) -> bool:
    return name == forbidden or name.startswith(forbidden + ".")


# The verifier applies checkpoint policies with the rules engine, whose pydantic models load the
# `socket` module (pydantic_core's network types); nothing there opens a connection.
FORBIDDEN_TO_THE_VERIFIER = tuple(f for f in FORBIDDEN if f != "socket")


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("yuekang.verifier", FORBIDDEN_TO_THE_VERIFIER),
        ("yuekang.codec.healthcode", FORBIDDEN),
        ("yuekang.codec.jwks", FORBIDDEN),
        ("yuekang.codec.bundle", FORBIDDEN),
    ],
)
def test_fresh_import_loads_nothing_forbidden(
    module: str, forbidden: tuple[str, ...], tmp_path: Path
) -> None:
    loaded = _loaded_modules(module, tmp_path)

    assert module in loaded  # the probe did import what it claims to
    assert [m for m in loaded if any(_matches(m, f) for f in forbidden)] == []


def test_the_probe_would_notice_a_forbidden_import(tmp_path: Path) -> None:
    loaded = _loaded_modules("json.decoder, http.client", tmp_path)

    assert [m for m in loaded if any(_matches(m, f) for f in FORBIDDEN)] != []


# ---------------------------------------------------------------------------- static layering


def _package_dir(package: object) -> Path:
    return Path(package.__file__).parent  # type: ignore[attr-defined]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(source: str, module: str, is_package: bool) -> list[str]:
    """Absolute names of everything ``source`` (the text of ``module``) imports, anywhere in the
    file; ``from a import b`` yields ``a.b``, since ``b`` may be a submodule."""
    package = module if is_package else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return names


def layering_violations(source: str, module: str, is_package: bool = False) -> list[str]:
    def allowed(name: str) -> bool:
        top = name.split(".")[0]
        if top == "yuekang":
            packages = PURE_PACKAGES
            if _matches(module, "yuekang.verifier"):
                packages += ALSO_FOR_THE_VERIFIER
            return name == "yuekang.__version__" or any(_matches(name, p) for p in packages)
        if top in sys.stdlib_module_names:
            return not any(_matches(name, f) for f in FORBIDDEN)
        return top in ALLOWED_THIRD_PARTY

    return [name for name in imported_names(source, module, is_package) if not allowed(name)]


def _pure_modules() -> list[Path]:
    files = [
        *sorted(_package_dir(yuekang.codec).rglob("*.py")),
        *sorted(_package_dir(yuekang.verifier).rglob("*.py")),
    ]
    assert len(files) >= 7  # codec's six modules and the verifier at least
    return files


@pytest.mark.parametrize("path", _pure_modules(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_pure_packages_import_only_the_codec_the_stdlib_and_cryptography(path: Path) -> None:
    root = _package_dir(yuekang.codec).parent.parent
    module = _module_name(path, root)

    assert module.startswith(PURE_PACKAGES)
    assert layering_violations(path.read_text("utf-8"), module, path.name == "__init__.py") == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from yuekang.config import Settings", ["yuekang.config.Settings"]),
        ("import yuekang.db", ["yuekang.db"]),
        ("from yuekang import db", ["yuekang.db"]),
        ("from ... import config", ["yuekang.config"]),
        ("from ...health_codes.qr import render_png", ["yuekang.health_codes.qr.render_png"]),
        ("def f():\n    import httpx\n", ["httpx"]),
        ("import fastapi.responses", ["fastapi.responses"]),
        ("import urllib.request", ["urllib.request"]),
        ("from .. import keys", []),
        ("from ..errors import InvalidKey", []),
        ("from yuekang.verifier import Verifier", []),
        ("from yuekang.rules.policy import decide", ["yuekang.rules.policy.decide"]),
        ("import json, re, base64\nfrom cryptography.hazmat.primitives import hashes", []),
    ],
)
def test_layering_check_catches_violations(source: str, expected: list[str]) -> None:
    # Run as if the source were yuekang/codec/sub/mod.py, so ".." is yuekang.codec.
    assert layering_violations(source, "yuekang.codec.sub.mod") == expected


def test_only_the_verifier_may_use_the_rules_engine() -> None:
    source = "from yuekang.rules.policy import decide"
    assert layering_violations(source, "yuekang.verifier.trust") == []
    assert layering_violations(source, "yuekang.codec.bundle") == ["yuekang.rules.policy.decide"]
