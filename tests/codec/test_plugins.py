"""The entry-point registry behind partner code formats and partner adapters."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from yuekang.codec import formats, plugins
from yuekang.codec.hongkong import FORMAT as HONG_KONG
from yuekang.codec.macao import FORMAT as MACAO


def registry(monkeypatch: pytest.MonkeyPatch, *declared: EntryPoint) -> plugins.Registry[object]:
    monkeypatch.setattr(plugins, "entry_points", lambda group: list(declared))
    return plugins.Registry("test.group", lambda item: str(item.name), "format")


def test_what_the_distribution_declares_is_found_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    found = registry(
        monkeypatch,
        EntryPoint("MO1", "yuekang.codec.macao:FORMAT", "test.group"),
        EntryPoint("HK1", "yuekang.codec.hongkong:FORMAT", "test.group"),
    )

    assert found.registered() == {"MO1": MACAO, "HK1": HONG_KONG}
    assert found.get("HK1") is HONG_KONG
    assert found.get("XX1") is None


def test_an_entry_point_named_for_another_item_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # HK1's name on Macao's reader: a check would read one partner's codes with another's format.
    found = registry(monkeypatch, EntryPoint("HK1", "yuekang.codec.macao:FORMAT", "test.group"))

    with pytest.raises(ValueError, match="entry point 'HK1' names format 'MO1'"):
        found.registered()


def test_a_second_item_under_a_taken_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    found = registry(monkeypatch)
    found.register(MACAO)
    found.register(MACAO)  # the same one again is harmless

    with pytest.raises(ValueError, match="a format 'MO1' is already registered"):
        found.register(formats.registered()["MO1"].__class__())


def test_the_installed_formats_are_ours_and_hong_kongs() -> None:
    assert formats.registered() == {"MO1": MACAO, "HK1": HONG_KONG}
