"""A registry of things found by name in the installed distributions' entry points, in the
manner of pyjwt's algorithm registry: partner code formats (:mod:`yuekang.codec.formats`) and
partner adapters (:mod:`yuekang.exchange.adapters`) are both one. Pure: the standard library's
``importlib.metadata`` and ``logging`` only."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")
_log = logging.getLogger(__name__)


class Registry(Generic[T]):
    """Items of one kind by name: those registered, and those the entry points of ``group``
    declare, loaded on first use. An entry point's name must be the item's own."""

    def __init__(self, group: str, name_of: Callable[[T], str], kind: str) -> None:
        self.group = group
        self._name_of = name_of
        self._kind = kind
        self._items: dict[str, T] = {}
        self._loaded = False
        self.problems: list[str] = []

    def register(self, item: T) -> None:
        """Make ``item`` known; the same name twice must be the same item."""
        name = self._name_of(item)
        existing = self._items.get(name)
        if existing is not None and existing is not item:
            raise ValueError(f"a {self._kind} {name!r} is already registered")
        self._items[name] = item

    def registered(self) -> Mapping[str, T]:
        """Every item by name. An entry point that does not load, names another item or takes
        a name already taken is left out and said in :attr:`problems` (and logged): one broken
        plugin must not stop a checkpoint judging every other code."""
        if not self._loaded:
            self._loaded = True
            for entry in entry_points(group=self.group):
                try:
                    item = entry.load()
                    if self._name_of(item) != entry.name:
                        raise ValueError(
                            f"entry point {entry.name!r} names {self._kind} {self._name_of(item)!r}"
                        )
                    self.register(item)
                except Exception as exc:
                    problem = f"{self.group} {entry.name!r} ({entry.value}) left out: {exc}"
                    self.problems.append(problem)
                    _log.error("%s", problem)
        return self._items

    def get(self, name: str) -> T | None:
        return self.registered().get(name)
