"""The green-to-green conditions of a conversion, as a pure function of facts and the rule set's
parameters (``[exchange.macao.inbound]`` / ``[exchange.macao.outbound]``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from yuekang.rules.ruleset import ConversionConditions


def start_of_day(day: dt.date, utc_offset_hours: int) -> dt.datetime:
    """The first instant of a local date. A test known only by its date counts from here: it can
    only look older than it was, never fresher."""
    return dt.datetime.combine(day, dt.time(), dt.timezone(dt.timedelta(hours=utc_offset_hours)))


def refusals(
    conditions: ConversionConditions,
    *,
    status: str,
    nat_sampled_at: dt.datetime | None,
    nat_result: str | None,
    outside_region_days: Iterable[dt.date],
    now: dt.datetime,
    today: dt.date,
) -> list[str]:
    """Reason codes of every condition not met, in the order docs/EXCHANGE.md lists them; empty
    when the conversion may go ahead. ``outside_region_days`` are days spent outside the region."""
    problems = []
    if status != "green":
        problems.append("source_not_green")
    if nat_sampled_at is None or nat_result is None:
        problems.append("nat_missing")
    elif nat_result != "negative":
        problems.append("nat_not_negative")
    elif (
        not dt.timedelta(0)
        <= now - nat_sampled_at
        <= dt.timedelta(hours=conditions.nat_window_hours)
    ):
        problems.append("nat_too_old")
    earliest = today - dt.timedelta(days=conditions.no_travel_days)
    if conditions.no_travel_days and any(day > earliest for day in outside_region_days):
        problems.append("travel_outside_region")
    return problems
