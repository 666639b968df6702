"""Feed rows: what each kind of feed carries and how one row is checked.

Pure and fast: a batch can hold 100,000 rows, so each row is checked by a small function per kind
rather than a model per row. A row either becomes a tuple ready for the database or a list of
problems, each naming the field and a stable reason code (documented in ``docs/FEEDS.md``).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from yuekang import regions
from yuekang.residents.documents import DocType, DocumentError, plainly_valid, validate_document
from yuekang.rules.facts import CaseCategory


class FeedKind(StrEnum):
    CASES = "cases"
    NAT_RESULTS = "nat-results"
    VACCINATIONS = "vaccinations"
    RISK_AREAS = "risk-areas"
    TRAVEL = "travel"


@dataclass(frozen=True, slots=True)
class RowProblem:
    field: str | None
    reason: str
    message: str


class RowRejected(Exception):
    def __init__(self, problems: list[RowProblem]) -> None:
        super().__init__(problems[0].message)
        self.problems = problems


# Nothing the feeds describe happened before the first reports of December 2019.
EARLIEST_DATE = dt.date(2019, 12, 1)
# Midnight of that day in China, held in UTC: comparing datetimes with different tzinfo objects
# asks both for their offsets, fifteen times the cost of a comparison in one zone, for every row.
EARLIEST_INSTANT = dt.datetime(2019, 12, 1, tzinfo=dt.timezone(dt.timedelta(hours=8))).astimezone(
    dt.UTC
)
# A lab's clock may run a little ahead of ours; a sample time further ahead is a mistake.
FUTURE_LEEWAY = dt.timedelta(minutes=5)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_RFC3339_LOCAL = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
)
_DOC_TYPES = {t.value: t for t in DocType}
_CATEGORIES = {c.value: c for c in CaseCategory}
_NAT_RESULTS = {"negative": "negative", "positive": "positive"}
_LEVELS = {"high": "high", "medium": "medium", "low": "low"}


@dataclass(frozen=True, slots=True)
class RowContext:
    """What checking a row needs besides the row: the time, and how to index a document."""

    now: dt.datetime
    today: dt.date
    person: Callable[[DocType, str], bytes]
    latest: dt.datetime = field(init=False)
    """The latest acceptable sample time."""

    def __post_init__(self) -> None:
        # In UTC, the zone every parsed time is compared in (see EARLIEST_INSTANT).
        object.__setattr__(self, "latest", (self.now + FUTURE_LEEWAY).astimezone(dt.UTC))


class _Row:
    """Collects every problem of one row instead of stopping at the first."""

    __slots__ = ("problems", "values")

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values
        self.problems: list[RowProblem] = []

    def fail(self, field: str | None, reason: str, message: str) -> None:
        self.problems.append(RowProblem(field, reason, message))

    def text(self, field: str, *, optional: bool = False, max_length: int = 64) -> str | None:
        value = self.values.get(field)
        plain = _plain_text(value, max_length)
        if plain is not None:
            return plain
        if value is None or value == "" or (isinstance(value, str) and not value.strip()):
            self._missing(field, optional)
            return None
        if not isinstance(value, str):
            self.fail(field, "format", f"{field} must be a string")
            return None
        value = value.strip()
        if not _storable(value):
            self.fail(field, "format", f"{field} must be valid Unicode text")
            return None
        if len(value) > max_length:
            self.fail(field, "too_long", f"{field} is longer than {max_length} characters")
            return None
        if "\x00" in value:
            self.fail(field, "format", f"{field} must not contain NUL")
            return None
        return value

    def _missing(self, field: str, optional: bool) -> None:
        if not optional:
            self.fail(field, "missing", f"{field} is required")

    def choice(self, field: str, choices: Mapping[str, Any]) -> Any:
        value = self.text(field)
        if value is None:
            return None
        found = choices.get(value)
        if found is None:
            self.fail(field, "unknown_value", f"{field} must be one of {sorted(choices)}")
        return found

    def date(
        self, field: str, context: RowContext, *, optional: bool = False, future: bool = False
    ) -> dt.date | None:
        value = self.text(field, optional=optional, max_length=10)
        if value is None:
            return None
        if not _ISO_DATE.fullmatch(value):
            self.fail(field, "format", f"{field} must be a date, YYYY-MM-DD")
            return None
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            self.fail(field, "format", f"{field} is not a calendar date")
            return None
        if day < EARLIEST_DATE:
            self.fail(field, "too_old", f"{field} is before {EARLIEST_DATE.isoformat()}")
        elif not future and day > context.today:
            self.fail(field, "future", f"{field} is in the future")
        return day

    def instant(self, field: str, context: RowContext) -> dt.datetime | None:
        value = self.text(field, max_length=40)
        if value is None:
            return None
        if not _RFC3339.fullmatch(value):
            if _RFC3339_LOCAL.fullmatch(value):
                self.fail(field, "format", f"{field} needs a UTC offset (e.g. +08:00 or Z)")
            else:
                self.fail(field, "format", f"{field} must be an RFC 3339 date-time")
            return None
        try:
            moment = dt.datetime.fromisoformat(value).astimezone(dt.UTC)
        except (ValueError, OverflowError):
            self.fail(field, "format", f"{field} is not a real date-time")
            return None
        if moment < EARLIEST_INSTANT:
            self.fail(field, "too_old", f"{field} is before {EARLIEST_DATE.isoformat()}")
        elif moment > context.latest:
            self.fail(field, "future", f"{field} is in the future")
        return moment

    def integer(self, field: str, low: int, high: int) -> int | None:
        value = self.values.get(field)
        if isinstance(value, str):
            digits = value.strip()
            if digits.isascii() and digits.isdecimal():
                if len(digits) > len(str(high)):
                    self.fail(field, "out_of_range", f"{field} must be between {low} and {high}")
                    return None
                value = int(digits)
        if value is None or value == "":
            self.fail(field, "missing", f"{field} is required")
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(field, "format", f"{field} must be a whole number")
            return None
        if not low <= value <= high:
            self.fail(field, "out_of_range", f"{field} must be between {low} and {high}")
            return None
        return value

    def region(self, field: str) -> str | None:
        value = self.text(field, max_length=6)
        if value is not None and not regions.is_known(value):
            self.fail(field, "unknown_region", f"{field} is not a GB/T 2260 division code")
            return None
        return value

    def person(self, context: RowContext) -> bytes | None:
        doc_type = self.choice("doc_type", _DOC_TYPES)
        number = self.text("doc_number", max_length=32)
        if doc_type is None or number is None:
            return None
        try:
            normalised = validate_document(doc_type, number, today=context.today)
        except DocumentError as exc:
            self.fail("doc_number", exc.reason, exc.message)
            return None
        return context.person(doc_type, normalised)

    def in_order(self, first: str, start: Any, last: str, end: Any) -> None:
        if start is not None and end is not None and end < start:
            self.fail(last, "order", f"{last} is before {first}")


def _case(row: _Row, context: RowContext) -> tuple[Any, ...]:
    person = row.person(context)
    category = row.choice("category", _CATEGORIES)
    start = row.date("start_date", context)
    end = row.date("end_date", context, optional=True, future=True)
    row.in_order("start_date", start, "end_date", end)
    return (person, None if category is None else category.value, start, end)


def _nat(row: _Row, context: RowContext) -> tuple[Any, ...]:
    person = row.person(context)
    sampled_at = row.instant("sampled_at", context)
    result = row.choice("result", _NAT_RESULTS)
    lab = row.text("lab", max_length=128)
    return (person, sampled_at, result, lab)


def _vaccination(row: _Row, context: RowContext) -> tuple[Any, ...]:
    person = row.person(context)
    dose = row.integer("dose", 1, 10)
    day = row.date("date", context)
    product = row.text("product", max_length=64)
    return (person, dose, day, product)


def _risk_area(row: _Row, context: RowContext) -> tuple[Any, ...]:
    region = row.region("region_code")
    level = row.choice("level", _LEVELS)
    valid_from = row.date("valid_from", context)
    valid_to = row.date("valid_to", context, optional=True, future=True)
    row.in_order("valid_from", valid_from, "valid_to", valid_to)
    return (region, level, valid_from, valid_to)


def _travel(row: _Row, context: RowContext) -> tuple[Any, ...]:
    person = row.person(context)
    region = row.region("region_code")
    day = row.date("date", context)
    return (person, region, day)


# The plain paths. Each accepts only a row that the checks above accept, and gives the same tuple:
# every field present under its exact name and nothing else, and each value already in its
# canonical form (no surrounding space, an exact choice, a PRC ID written as issued). Whatever
# does not fit -- a mistake, an unusual but valid spelling, a value of an unexpected type, even an
# exception -- answers None and the row goes through the full checks, which report problems; so
# what a bad row reports never depends on this code.
_PLAIN_DOC_TYPES = {"prc_id": DocType.PRC_ID}


def _plain_text(value: Any, max_length: int) -> str | None:
    # The common case, in one test: a short printable string (so no NUL), to be trimmed.
    if value.__class__ is str and value and len(value) <= max_length and value.isprintable():
        stripped: str = value.strip()
        if stripped:
            return stripped
    return None


def _plain_person(values: Mapping[str, Any], context: RowContext) -> bytes | None:
    doc_type = _PLAIN_DOC_TYPES.get(values["doc_type"])
    number = values["doc_number"]
    if doc_type is None or number.__class__ is not str:
        return None
    normalised = plainly_valid(doc_type, number, context.today)
    if normalised is None:
        return None
    return context.person(doc_type, normalised)


@functools.lru_cache(maxsize=4096)
def _iso_date(value: str) -> dt.date | None:
    """The date a canonical YYYY-MM-DD names (feeds repeat a few dates many times)."""
    if _ISO_DATE.fullmatch(value) is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _plain_date(value: Any, context: RowContext, *, future: bool = False) -> dt.date | None:
    if value.__class__ is not str or len(value) != 10:
        return None
    day = _iso_date(value)
    if day is None or day < EARLIEST_DATE or (not future and day > context.today):
        return None
    return day


def _plain_instant(value: Any, context: RowContext) -> dt.datetime | None:
    # A string that _RFC3339 matches is printable ASCII without surrounding space, and at most 35
    # characters: _Row.text hands it on unchanged.
    if value.__class__ is not str or _RFC3339.fullmatch(value) is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None
    if moment < EARLIEST_INSTANT or moment > context.latest:
        return None
    return moment


def _nat_plain(values: Mapping[str, Any], context: RowContext) -> tuple[Any, ...] | None:
    # Five values, each found under one of the five names: no other field.
    if len(values) != 5:
        return None
    sampled_at = _plain_instant(values["sampled_at"], context)
    result = _NAT_RESULTS.get(values["result"])
    lab = _plain_text(values["lab"], 128)
    if sampled_at is None or result is None or lab is None:
        return None
    person = _plain_person(values, context)
    if person is None:
        return None
    return (person, sampled_at, result, lab)


def _case_plain(values: Mapping[str, Any], context: RowContext) -> tuple[Any, ...] | None:
    size = len(values)
    if size == 5:
        end = _plain_date(values["end_date"], context, future=True)
        if end is None:
            return None
    elif size == 4 and "end_date" not in values:
        end = None
    else:
        return None
    category = _CATEGORIES.get(values["category"])
    start = _plain_date(values["start_date"], context)
    if category is None or start is None or (end is not None and end < start):
        return None
    person = _plain_person(values, context)
    if person is None:
        return None
    return (person, category.value, start, end)


def _vaccination_plain(values: Mapping[str, Any], context: RowContext) -> tuple[Any, ...] | None:
    if len(values) != 5:
        return None
    dose = values["dose"]
    if dose.__class__ is not int or not 1 <= dose <= 10:
        return None
    day = _plain_date(values["date"], context)
    product = _plain_text(values["product"], 64)
    if day is None or product is None:
        return None
    person = _plain_person(values, context)
    if person is None:
        return None
    return (person, dose, day, product)


def _risk_area_plain(values: Mapping[str, Any], context: RowContext) -> tuple[Any, ...] | None:
    size = len(values)
    if size == 4:
        valid_to = _plain_date(values["valid_to"], context, future=True)
        if valid_to is None:
            return None
    elif size == 3 and "valid_to" not in values:
        valid_to = None
    else:
        return None
    region = values["region_code"]
    level = _LEVELS.get(values["level"])
    valid_from = _plain_date(values["valid_from"], context)
    if (
        region.__class__ is not str
        or not regions.is_known(region)
        or level is None
        or valid_from is None
        or (valid_to is not None and valid_to < valid_from)
    ):
        return None
    return (region, level, valid_from, valid_to)


def _travel_plain(values: Mapping[str, Any], context: RowContext) -> tuple[Any, ...] | None:
    if len(values) != 4:
        return None
    region = values["region_code"]
    day = _plain_date(values["date"], context)
    if region.__class__ is not str or not regions.is_known(region) or day is None:
        return None
    person = _plain_person(values, context)
    if person is None:
        return None
    return (person, region, day)


@dataclass(frozen=True, slots=True)
class KindSpec:
    kind: FeedKind
    fields: tuple[str, ...]
    optional: frozenset[str]
    check: Callable[[_Row, RowContext], tuple[Any, ...]]
    plain: Callable[[Mapping[str, Any], RowContext], tuple[Any, ...] | None]
    """The same check for a row in the shape nearly every row has, in the fewest steps: the row's
    tuple, or ``None`` for anything else (``check`` then finds and reports the problems)."""

    @property
    def names(self) -> frozenset[str]:
        return _NAMES[self.kind]


_PERSON = ("doc_type", "doc_number")
SPECS: dict[FeedKind, KindSpec] = {
    FeedKind.CASES: KindSpec(
        FeedKind.CASES,
        (*_PERSON, "category", "start_date", "end_date"),
        frozenset({"end_date"}),
        _case,
        _case_plain,
    ),
    FeedKind.NAT_RESULTS: KindSpec(
        FeedKind.NAT_RESULTS,
        (*_PERSON, "sampled_at", "result", "lab"),
        frozenset(),
        _nat,
        _nat_plain,
    ),
    FeedKind.VACCINATIONS: KindSpec(
        FeedKind.VACCINATIONS,
        (*_PERSON, "dose", "date", "product"),
        frozenset(),
        _vaccination,
        _vaccination_plain,
    ),
    FeedKind.RISK_AREAS: KindSpec(
        FeedKind.RISK_AREAS,
        ("region_code", "level", "valid_from", "valid_to"),
        frozenset({"valid_to"}),
        _risk_area,
        _risk_area_plain,
    ),
    FeedKind.TRAVEL: KindSpec(
        FeedKind.TRAVEL, (*_PERSON, "region_code", "date"), frozenset(), _travel, _travel_plain
    ),
}


_NAMES = {kind: frozenset(spec.fields) for kind, spec in SPECS.items()}


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(name: object) -> str:
    """A field name from the request, safe to echo back (lone surrogates escaped, bounded)."""
    return str(name)[:64].encode("utf-8", "backslashreplace").decode("utf-8")


def check_plainly(
    spec: KindSpec, values: Mapping[str, Any], context: RowContext
) -> tuple[Any, ...] | None:
    """The row as a database tuple if it takes the plain path; ``None`` if the full checks must
    say what it is. A row taken here holds only strings and integers."""
    try:
        return spec.plain(values, context)
    except (KeyError, TypeError):
        # A field missing, or a value of a type no plain row has (a list where a name is looked
        # up): the full checks say what is wrong.
        return None


def check_fully(spec: KindSpec, values: Mapping[str, Any], context: RowContext) -> tuple[Any, ...]:
    """The row as a database tuple, or :class:`RowRejected` with every problem found: what the
    plain path must agree with."""
    row = _Row(values)
    unknown = () if spec.names.issuperset(values) else [n for n in values if n not in spec.names]
    for name in unknown:
        row.fail(_shown(name), "unknown_field", f"{_shown(name)!r} is not a field of {spec.kind}")
    record = spec.check(row, context)
    if row.problems:
        raise RowRejected(row.problems)
    return record
