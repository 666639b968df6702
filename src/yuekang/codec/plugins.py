"""A registry of things found by name in the installed distributions' entry points, in the
manner of pyjwt's algorithm registry: partner code formats (:mod:`yuekang.codec.formats`) and
partner adapters (:mod:`yuekang.exchange.adapters`) are both one. Pure: the standard library's
``importlib.metadata`` only."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Items of one kind by name: those registered, and those the entry points of ``group``
    declare, loaded on first use. An entry point's name must be the item's own."""

    def __init__(self, group: str, name_of: Callable[[T], str], kind: str) -> None:
        self.group = group
        self._name_of = name_of
        self._kind = kind
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, item: T) -> None:
        """Make ``item`` known; the same name twice must be the same item."""
        name = self._name_of(item)
        existing = self._items.get(name)
        if existing is not None and existing is not item:
            raise ValueError(f"a {self._kind} {name!r} is already registered")
        self._items[name] = item

    def registered(self) -> Mapping[str, T]:
        if not self._loaded:
            for entry in entry_points(group=self.group):
                item = entry.load()
                if self._name_of(item) != entry.name:
                    raise ValueError(
                        f"entry point {entry.name!r} names {self._kind} {self._name_of(item)!r}"
                    )
                self.register(item)
            self._loaded = True
        return self._items

    def get(self, name: str) -> T | None:
        return self.registered().get(name)
