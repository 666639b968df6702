"""Time, injected. Services ask a clock; pure code is handed ``now``; tests move the clock."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class ManualClock:
    """A clock that stands still until moved: for tests and simulations."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)

    def set(self, when: dt.datetime) -> None:
        self._now = when


def epoch(when: dt.datetime) -> int:
    """Integer UTC seconds, the only time format that goes into tokens."""
    return int(when.timestamp())


def rfc3339(when: dt.datetime) -> str:
    """The one form of a time in a JSON answer (docs/API.md, "Times"): RFC 3339 in UTC with
    ``Z``, as pydantic writes the UTC times of response models, so that a time built by hand
    into a document (an audit detail, a stored answer) reads the same."""
    utc = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    return utc.isoformat().replace("+00:00", "Z")


def from_epoch(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)
