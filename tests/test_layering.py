"""Layering (docs/ARCHITECTURE.md): queries live in services and repositories, so that an
endpoint or a command can be read without the schema and a query is written once."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "yuekang"
# What an endpoint or a command may name of SQLAlchemy: the session's type, and its errors.
ALLOWED = {"sqlalchemy.ext.asyncio": {"AsyncSession"}, "sqlalchemy.exc": None}


def test_endpoints_and_commands_hold_no_sql() -> None:
    modules = [*PACKAGE.glob("*/endpoints.py"), *PACKAGE.glob("cli/*.py")]
    offenders = []
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text())):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(
                "sqlalchemy"
            ):
                continue
            allowed = ALLOWED.get(node.module or "", set())
            names = {alias.name for alias in node.names}
            if allowed is not None and not names <= allowed:
                offenders.append(f"{module.relative_to(PACKAGE)}: {node.module} {sorted(names)}")
    assert len(modules) > 15
    assert offenders == []
