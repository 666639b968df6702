"""The entry-point registry behind partner code formats and partner adapters."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from yuekang.codec import formats, plugins
from yuekang.codec.hongkong import FORMAT as HONG_KONG
from yuekang.codec.macao import FORMAT as MACAO


def registry(monkeypatch: pytest.MonkeyPatch, *declared: EntryPoint) -> plugins.Registry[object]:
    formats.registered()  # the real ones, loaded before the entry points are stood in for
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


def test_a_broken_entry_point_is_left_out_and_said_and_the_others_still_serve(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # HK1's name on Macao's reader (a check would read one partner's codes with another's
    # format), a module that is not there, a second MO1: each left out, none stopping the rest.
    found = registry(
        monkeypatch,
        EntryPoint("HK1", "yuekang.codec.macao:FORMAT", "test.group"),
        EntryPoint("ZZ1", "yuekang.codec.nowhere:FORMAT", "test.group"),
        EntryPoint("MO1", "yuekang.codec.macao:FORMAT", "test.group"),
        EntryPoint("MO1", "yuekang.codec.hongkong:FORMAT", "test.group"),
    )

    assert found.registered() == {"MO1": MACAO}
    assert found.registered() == {"MO1": MACAO}  # loaded once, not retried per call
    assert len(found.problems) == 3
    assert (
        "'HK1' (yuekang.codec.macao:FORMAT) left out: entry point 'HK1' names format 'MO1'"
        in (found.problems[0])
    )
    assert "No module named 'yuekang.codec.nowhere'" in found.problems[1]
    assert "entry point 'MO1' names format 'HK1'" in found.problems[2]
    assert [r.levelname for r in caplog.records if r.name == plugins.__name__] == ["ERROR"] * 3


def test_a_second_item_under_a_taken_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    found = registry(monkeypatch)
    found.register(MACAO)
    found.register(MACAO)  # the same one again is harmless

    with pytest.raises(ValueError, match="a format 'MO1' is already registered"):
        found.register(type(MACAO)())


def test_the_installed_formats_are_ours_and_hong_kongs() -> None:
    assert formats.registered() == {"MO1": MACAO, "HK1": HONG_KONG}
