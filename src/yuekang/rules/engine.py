"""The rules engine: facts + ``now`` + rule set -> decision. Pure: no database, no settings, no
clock of its own, so the server, the command line and tests all get the same answer.

Every rule turns facts into *findings*: a status held over a time interval ``[since, until)``. A
finding is active when ``since <= now < until``. The decision is the worst active finding (green
when none), every active finding as a reason, and ``valid_until`` -- the first moment the
decision could change with no new fact (a window ends, an override expires). Day-based windows
count local days (``utc_offset_hours``): a 14-day rule starting on day D holds through day D+13.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from yuekang import regions
from yuekang.rules.facts import SEVERITY, CaseCategory, Facts, NatFact, Status
from yuekang.rules.ruleset import (
    CaseCondition,
    ClearAfter,
    NatPositiveCondition,
    Rule,
    RuleSet,
    TravelCondition,
)

ParamValue = str | int


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason behind a decision."""

    rule_id: str
    """The rule's id, or ``override`` for an operator's decision."""
    reason: str
    status: Status
    since: dt.datetime
    until: dt.datetime | None
    received_at: dt.datetime
    params: Mapping[str, ParamValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NatSummary:
    latest_sampled_at: dt.datetime | None
    latest_result: str | None
    negative_within_hours: int | None
    """The smallest display bucket holding the latest test, if it was negative."""


@dataclass(frozen=True, slots=True)
class Decision:
    status: Status
    findings: tuple[Finding, ...]
    """Active findings, worst first; the ones an override covers are left out."""
    valid_until: dt.datetime | None
    rule_set_version: str
    nat: NatSummary
    vaccine_doses: int
    last_vaccinated_on: dt.date | None

    @property
    def reason_codes(self) -> list[str]:
        codes: list[str] = []
        for finding in self.findings:
            if finding.reason not in codes:
                codes.append(finding.reason)
        return codes


class _Calendar:
    def __init__(self, utc_offset_hours: int) -> None:
        self.tz = dt.timezone(dt.timedelta(hours=utc_offset_hours))

    def start_of(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), self.tz).astimezone(dt.UTC)

    def day_of(self, instant: dt.datetime) -> dt.date:
        return instant.astimezone(self.tz).date()


def evaluate(facts: Facts, *, now: dt.datetime, rules: RuleSet) -> Decision:
    """Decide a person's status from ``facts`` at ``now`` under ``rules``."""
    calendar = _Calendar(rules.utc_offset_hours)
    releases = sorted(
        ((c.start, c.received_at) for c in facts.cases if c.category is CaseCategory.RELEASED),
    )
    candidates = [
        finding for rule in rules.rules for finding in _findings(rule, facts, calendar, releases)
    ]
    override = facts.override
    if override is not None and (
        now < override.granted_at
        or (override.expires_at is not None and now >= override.expires_at)
    ):
        override = None
    if override is not None:
        candidates = [f for f in candidates if f.received_at > override.granted_at]
        candidates.append(
            Finding(
                rule_id="override",
                reason="override",
                status=override.status,
                since=override.granted_at,
                until=override.expires_at,
                received_at=override.granted_at,
                params={"reason": override.reason},
            )
        )
    active = [f for f in candidates if f.since <= now and (f.until is None or now < f.until)]
    changes = [f.since for f in candidates if f.since > now]
    changes += [f.until for f in active if f.until is not None]
    active.sort(key=lambda f: (-SEVERITY[f.status], f.since))
    status: Status = active[0].status if active else "green"
    return Decision(
        status=status,
        findings=tuple(active),
        valid_until=min(changes, default=None),
        rule_set_version=rules.version,
        nat=_nat_summary(facts.nats, now, rules.nat_display_hours),
        vaccine_doses=len({v.dose for v in facts.vaccinations}),
        last_vaccinated_on=max((v.date for v in facts.vaccinations), default=None),
    )


def _findings(
    rule: Rule, facts: Facts, calendar: _Calendar, releases: list[_Release]
) -> Iterator[Finding]:
    when = rule.when
    for since, until, received_at, params in _triggers(when, facts, calendar, releases):
        if when.lasts_days is not None:
            lapse = calendar.start_of(calendar.day_of(since) + dt.timedelta(days=when.lasts_days))
            until = lapse if until is None else min(until, lapse)
        if rule.clear_after is not None:
            cleared, done = _cleared(rule.clear_after, since, facts.nats, calendar)
            params = {
                **params,
                "tests_needed": rule.clear_after.negative_tests,
                "tests_done": done,
                "within_days": rule.clear_after.within_days or "",
            }
            if cleared is not None:
                until = cleared if until is None else min(until, cleared)
        if until is not None and until <= since:
            continue
        yield Finding(
            rule_id=rule.id,
            reason=rule.reason,
            status=rule.status,
            since=since,
            until=until,
            received_at=received_at,
            params=params,
        )


_Trigger = tuple[dt.datetime, dt.datetime | None, dt.datetime, dict[str, ParamValue]]


def _triggers(
    when: CaseCondition | NatPositiveCondition | TravelCondition,
    facts: Facts,
    calendar: _Calendar,
    releases: list[_Release],
) -> Iterator[_Trigger]:
    if isinstance(when, CaseCondition):
        for case in facts.cases:
            if case.category not in when.categories:
                continue
            end = None if case.end is None else case.end + dt.timedelta(days=1)
            end = _released(case.start, case.received_at, end, releases)
            until = None if end is None else calendar.start_of(end)
            yield (
                calendar.start_of(case.start),
                until,
                case.received_at,
                {"category": case.category.value},
            )
    elif isinstance(when, NatPositiveCondition):
        for test in facts.nats:
            if test.result != "positive":
                continue
            end = _released(calendar.day_of(test.sampled_at), test.received_at, None, releases)
            until = None if end is None else max(calendar.start_of(end), test.sampled_at)
            yield test.sampled_at, until, test.received_at, {}
    else:
        match = regions.within if when.match == "area" else regions.same_city
        for trip in facts.travel:
            hits = [
                area
                for area in facts.risk_areas
                if area.level in when.levels
                and area.valid_from <= trip.date
                and (area.valid_to is None or trip.date <= area.valid_to)
                and match(trip.region, area.region)
            ]
            if not hits:
                continue
            level = "high" if any(a.level == "high" for a in hits) else "medium"
            # A trip becomes a finding once both it and the area are known.
            received_at = max(
                [trip.received_at, *(a.received_at for a in hits if a.received_at is not None)]
            )
            yield (
                calendar.start_of(trip.date),
                None,
                received_at,
                {
                    "region": trip.region,
                    "region_name": regions.name(trip.region) or trip.region,
                    "level": level,
                    "date": trip.date.isoformat(),
                },
            )


_Release = tuple[dt.date, dt.datetime]


def _released(
    start: dt.date, received_at: dt.datetime, end: dt.date | None, releases: list[_Release]
) -> dt.date | None:
    """The day an episode starting on ``start`` stops holding: its own end, or the first release
    after its start day -- or on it, if the release was not reported before the episode (a case
    confirmed on the day of an earlier release is a new case)."""
    for day, reported in releases:
        if day > start or (day == start and reported >= received_at):
            return day if end is None else min(end, day)
    return end


def _cleared(
    clear: ClearAfter, since: dt.datetime, nats: tuple[NatFact, ...], calendar: _Calendar
) -> tuple[dt.datetime | None, int]:
    """When negative tests cleared a finding (``None`` if not yet) and how many days counted.
    A positive test after the start means the tests did not clear anything."""
    deadline = (
        None
        if clear.within_days is None
        else calendar.start_of(calendar.day_of(since) + dt.timedelta(days=clear.within_days))
    )
    tests = sorted(
        (
            t
            for t in nats
            if t.sampled_at >= since and (deadline is None or t.sampled_at < deadline)
        ),
        key=lambda t: t.sampled_at,
    )
    days: set[dt.date] = set()
    for test in tests:
        if test.result == "positive":
            return None, len(days)
        days.add(calendar.day_of(test.sampled_at))
        if len(days) == clear.negative_tests:
            return test.sampled_at, len(days)
    return None, len(days)


def _nat_summary(nats: tuple[NatFact, ...], now: dt.datetime, buckets: list[int]) -> NatSummary:
    past = [t for t in nats if t.sampled_at <= now]
    if not past:
        return NatSummary(None, None, None)
    latest = max(past, key=lambda t: (t.sampled_at, t.result == "positive"))
    return NatSummary(
        latest.sampled_at,
        latest.result,
        negative_within_hours(latest.sampled_at, latest.result, now=now, buckets=buckets),
    )


def negative_within_hours(
    sampled_at: dt.datetime | None, result: str | None, *, now: dt.datetime, buckets: list[int]
) -> int | None:
    """The display bucket ("negative within 48 hours") of a person's latest test, if negative."""
    if sampled_at is None or result != "negative" or sampled_at > now:
        return None
    age = now - sampled_at
    return next((h for h in buckets if age <= dt.timedelta(hours=h)), None)


def explain(findings: Sequence[Finding], rules: RuleSet, language: str) -> list[str]:
    """A decision's findings in words, one sentence each (worst first), in ``language``."""
    calendar = _Calendar(rules.utc_offset_hours)
    if not findings:
        return [rules.explanations.green.text(language)]
    by_id = {rule.id: rule.explain for rule in rules.rules}
    sentences = []
    for finding in findings:
        template = by_id.get(finding.rule_id, rules.explanations.override)
        last_day = (
            ""
            if finding.until is None
            else calendar.day_of(finding.until - dt.timedelta(microseconds=1)).isoformat()
        )
        values = {
            **finding.params,
            "since": calendar.day_of(finding.since).isoformat(),
            "until": last_day,
        }
        sentences.append(template.text(language).format_map(values))
    return sentences
