from __future__ import annotations

import pytest

from yuekang.rules.facts import as_risk_level, as_status


@pytest.mark.parametrize("value", ["green", "yellow", "red"])
def test_a_stored_status_reads_back_as_itself(value: str) -> None:
    assert as_status(value) == value


@pytest.mark.parametrize("value", ["", "GREEN", "blue", "verde"])
def test_an_unknown_status_is_an_error_never_a_green(value: str) -> None:
    with pytest.raises(ValueError, match="unknown status"):
        as_status(value)


def test_risk_levels() -> None:
    assert [as_risk_level(v) for v in ("high", "medium", "low")] == ["high", "medium", "low"]
    with pytest.raises(ValueError, match="unknown risk level"):
        as_risk_level("severe")
