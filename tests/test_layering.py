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


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_names_taken(source: str, *, package: str) -> list[str]:
    """The underscore names a module of ``package`` takes from yuekang modules: imported by
    name, or read as an attribute of a yuekang module it imported."""
    taken: set[str] = set()
    modules: dict[str, str] = {}  # a local name -> the yuekang module it is bound to
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "yuekang":
                    modules[alias.asname or "yuekang"] = alias.name if alias.asname else "yuekang"
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            origin = ".".join([*base, *([node.module] if node.module else [])])
            if origin.split(".")[0] != "yuekang":
                continue
            for alias in node.names:
                if _private(alias.name):
                    taken.add(f"{origin}.{alias.name}")
                elif _is_module(f"{origin}.{alias.name}"):
                    modules[alias.asname or alias.name] = f"{origin}.{alias.name}"

    def module_of(node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return modules.get(node.id)
        if isinstance(node, ast.Attribute):
            outer = module_of(node.value)
            if outer is not None and _is_module(f"{outer}.{node.attr}"):
                return f"{outer}.{node.attr}"
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = module_of(node.value)
            if owner is not None:
                taken.add(f"{owner}.{node.attr}")
    return sorted(taken)


def test_no_module_takes_another_modules_private_names() -> None:
    """A leading underscore means only its own module relies on the name: a helper another
    module needs is named without one, so renaming a private name never breaks a module
    elsewhere. (A module reading its own underscore names is not an import.)"""
    offenders = []
    for module in PACKAGE.rglob("*.py"):
        # The package a relative import starts from: an __init__ module's is its own.
        package = ".".join(module.relative_to(PACKAGE.parent).parent.parts)
        for name in private_names_taken(module.read_text(), package=package):
            offenders.append(f"{module.relative_to(PACKAGE)}: {name}")
    assert offenders == []


def test_the_check_sees_every_way_of_taking_a_private_name() -> None:
    source = """
from yuekang.exchange.inbound import _match, receive_inbound
from yuekang.exchange import outbound
from . import repository as repo
from .. import cli
import yuekang.exchange.common
import yuekang.exchange.outbox as box
outbound._queue_outbound(repo._hidden, yuekang.exchange.common._x, box._lease, cli._run)
outbound.check_outbound, receive_inbound, box.run, outbound.x._y
"""
    assert private_names_taken(source, package="yuekang.exchange") == [
        "yuekang.cli._run",
        "yuekang.exchange.common._x",
        "yuekang.exchange.inbound._match",
        "yuekang.exchange.outbound._queue_outbound",
        "yuekang.exchange.outbox._lease",
        "yuekang.exchange.repository._hidden",
    ]
