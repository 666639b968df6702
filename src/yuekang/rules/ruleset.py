"""Rule sets: the data that turns facts into a colour.

A rule set is a TOML (or the equivalent JSON) document, versioned in the repository and stored in
the database when activated. It is validated whole before it can be used; an invalid one is
refused with every problem listed, and whatever was active stays active.

Each rule names the status it gives, the reason code it reports, the facts it reads (``when``),
optionally how negative tests clear it (``clear_after``), and an explanation in every language.
The grammar is in ``docs/RULES.md``; ``rulesets/gd-2021.toml`` is the default.
"""

from __future__ import annotations

import functools
import hashlib
import json
import string
import tomllib
from importlib import resources
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    ValidationError,
    model_validator,
)

from yuekang.codec.reasons import LANGUAGES
from yuekang.rules.facts import CaseCategory

DEFAULT_RULE_SET = "gd-2021.toml"

_SLUG = r"^[a-z][a-z0-9_]{1,47}$"
# What an explanation may quote; each condition fills its own (see engine.Finding.params).
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "case": frozenset({"since", "until", "category"}),
    "nat_positive": frozenset({"since", "until"}),
    "travel": frozenset({"since", "until", "region", "region_name", "level", "date"}),
    "green": frozenset(),
    "override": frozenset({"since", "until", "reason"}),
}
CLEARING_PLACEHOLDERS = frozenset({"tests_needed", "tests_done", "within_days"})


class RuleSetError(ValueError):
    """A rule set that cannot be used; ``problems`` lists every reason, one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid rule set: " + "; ".join(problems))
        self.problems = problems


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Explanation(_Model):
    zh_hans: str = Field(alias="zh-Hans", min_length=1, max_length=300)
    zh_hant: str = Field(alias="zh-Hant", min_length=1, max_length=300)
    en: str = Field(min_length=1, max_length=300)
    pt: str = Field(min_length=1, max_length=300)

    def text(self, language: str) -> str:
        return {"zh-Hant": self.zh_hant, "en": self.en, "pt": self.pt}.get(language, self.zh_hans)

    def check(self, allowed: frozenset[str]) -> list[str]:
        problems = []
        for language in LANGUAGES:
            try:
                parsed = list(string.Formatter().parse(self.text(language)))
            except ValueError as exc:
                problems.append(f"{language}: {exc}")
                continue
            fields = {field for _, field, _, _ in parsed if field is not None}
            # Only plain {name} placeholders: a format spec or conversion ({since:%Y}, {x!r},
            # {}) could fail, or allocate without bound, when a resident's status is shown.
            if any(
                field is not None and (not field.isidentifier() or spec or conversion)
                for _, field, spec, conversion in parsed
            ):
                problems.append(
                    f"{language}: placeholders must be plain names like {{since}}, "
                    "without positions, format specs or conversions"
                )
                continue
            unknown = fields - allowed
            if unknown:
                problems.append(
                    f"{language}: unknown placeholder(s) {sorted(unknown)}; "
                    f"allowed here: {sorted(allowed)}"
                )
        return problems


class CaseCondition(_Model):
    """An episode reported by the case feed in one of ``categories``. It lasts until its end
    date, a ``released`` record, or ``lasts_days`` after its start, whichever comes first."""

    fact: Literal["case"]
    categories: list[CaseCategory] = Field(min_length=1)
    lasts_days: int | None = Field(default=None, ge=1, le=366)

    @model_validator(mode="after")
    def _not_released(self) -> CaseCondition:
        if CaseCategory.RELEASED in self.categories:
            raise ValueError("'released' ends episodes; it cannot start one")
        return self


class NatPositiveCondition(_Model):
    """A positive nucleic-acid test, from its sample time until a ``released`` record (or
    ``lasts_days``)."""

    fact: Literal["nat_positive"]
    lasts_days: int | None = Field(default=None, ge=1, le=366)


class TravelCondition(_Model):
    """A reported stay in a place that was a risk area of one of ``levels`` on that day.
    ``match = "area"``: the place lies in the area; ``"city"``: in the same city as the area."""

    fact: Literal["travel"]
    levels: list[Literal["high", "medium"]] = Field(min_length=1)
    match: Literal["area", "city"]
    lasts_days: int = Field(ge=1, le=366)


Condition = Annotated[
    CaseCondition | NatPositiveCondition | TravelCondition, Field(discriminator="fact")
]


class ClearAfter(_Model):
    """Negative tests, sampled after the rule started and on distinct local days, that end it
    early; ``within_days`` bounds how late they may be sampled."""

    negative_tests: int = Field(ge=1, le=10)
    within_days: int | None = Field(default=None, ge=1, le=366)


class Rule(_Model):
    id: str = Field(pattern=_SLUG)
    status: Literal["yellow", "red"]
    reason: str = Field(pattern=_SLUG)
    when: Condition
    clear_after: ClearAfter | None = None
    explain: Explanation


class Explanations(_Model):
    green: Explanation
    override: Explanation


class ConversionConditions(_Model):
    """Green-to-green conditions for converting a code from or to a partner system."""

    nat_window_hours: int = Field(
        default=168, ge=1, le=24 * 30, description="A negative test sampled within this window"
    )
    no_travel_days: int = Field(
        default=14, ge=0, le=366, description="No stay outside the region within this many days"
    )


class PartnerExchange(_Model):
    mapping: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9-]{0,63}$",
        description="The version of the partner's mapping table; its adapter's own when omitted",
    )
    home_regions: list[str] = Field(
        default=["44", "82"],
        min_length=1,
        max_length=20,
        description="GB/T 2260 prefixes that count as inside the region (Guangdong, Macao)",
    )
    inbound: ConversionConditions = Field(default_factory=ConversionConditions)
    outbound: ConversionConditions = Field(default_factory=ConversionConditions)


PartnerId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class Exchange(RootModel[dict[PartnerId, PartnerExchange]]):
    """The terms for each partner, by the id it is registered under (``[exchange.<id>]``): a
    partner added later (yuekang.exchange.adapters) gets its terms from the rule set too."""

    model_config = ConfigDict(frozen=True)

    def terms(self, partner_id: str) -> PartnerExchange | None:
        """The terms of the partner registered as ``partner_id``, if the rule set has any."""
        return self.root.get(partner_id)


class RuleSet(_Model):
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    description: str = Field(default="", max_length=500)
    utc_offset_hours: int = Field(
        default=8, ge=-12, le=14, description="Where a day starts and ends for day-based windows"
    )
    nat_display_hours: list[int] = Field(
        default=[24, 48, 72, 168],
        min_length=1,
        max_length=8,
        description="Buckets for 'negative within N hours' shown with the code",
    )
    explanations: Explanations
    rules: list[Rule] = Field(min_length=1, max_length=200)
    exchange: Exchange = Field(default_factory=lambda: Exchange({"macao": PartnerExchange()}))

    @model_validator(mode="after")
    def _consistent(self) -> RuleSet:
        problems: list[str] = []
        for label, values in (("id", [r.id for r in self.rules]), ("reason", self.reasons())):
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:
                problems.append(f"rule {label}s must be unique: {duplicates}")
            if "override" in values:
                problems.append(f"rule {label} 'override' is reserved for operators' decisions")
        hours = self.nat_display_hours
        if any(h <= 0 for h in hours) or hours != sorted(set(hours)):
            problems.append("nat_display_hours must be positive and strictly increasing")
        problems += [
            f"explanations.green: {p}" for p in self.explanations.green.check(PLACEHOLDERS["green"])
        ]
        problems += [
            f"explanations.override: {p}"
            for p in self.explanations.override.check(PLACEHOLDERS["override"])
        ]
        for rule in self.rules:
            allowed = PLACEHOLDERS[rule.when.fact]
            if rule.clear_after is not None:
                allowed = allowed | CLEARING_PLACEHOLDERS
            problems += [f"rule {rule.id}: {p}" for p in rule.explain.check(allowed)]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def reasons(self) -> list[str]:
        return [rule.reason for rule in self.rules]

    def document(self) -> dict[str, Any]:
        """The canonical JSON form: what is stored, compared and (later) shipped to checkpoints."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def canonical_json(self) -> str:
        return json.dumps(
            self.document(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )

    @property
    def digest(self) -> str:
        """Of the canonical form: what an answer made under these rules says depends on all of
        it, texts included, not only on the version's name. Worked out once per rule set
        object (not cached on it: a copy with changes would carry the copied digest)."""
        known = _DIGESTS.get(id(self))
        if known is not None and known[0] is self:
            return known[1]
        digest = hashlib.blake2b(self.canonical_json().encode(), digest_size=12).hexdigest()
        if len(_DIGESTS) >= 64:
            _DIGESTS.clear()
        _DIGESTS[id(self)] = (self, digest)
        return digest


_DIGESTS: dict[int, tuple[RuleSet, str]] = {}
"""Rule sets' digests by object; the few rule sets a process holds (each kept alive here, so an
id is not reused while its entry stands)."""


def parse_rule_set(document: str | bytes | dict[str, Any], *, fmt: str = "toml") -> RuleSet:
    """Validate a rule set; raises :class:`RuleSetError` listing every problem."""
    try:
        if isinstance(document, dict):
            raw = document
        elif fmt == "toml":
            text = document.decode() if isinstance(document, bytes) else document
            raw = tomllib.loads(text)
        else:
            raw = json.loads(document)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, UnicodeDecodeError and over-long integers.
        raise RuleSetError([f"not valid {fmt.upper()}: {exc}"]) from exc
    if not isinstance(raw, dict):
        raise RuleSetError(["a rule set is a table (object) at the top level"])
    try:
        return RuleSet.model_validate(raw)
    except RecursionError as exc:
        raise RuleSetError(["the document is nested too deeply"]) from exc
    except ValidationError as exc:
        raise RuleSetError([_problem(error) for error in exc.errors()]) from exc


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


@functools.cache
def default_rule_set() -> RuleSet:
    """The rule set shipped with the service (``rulesets/gd-2021.toml``)."""
    text = (
        resources.files("yuekang.rules").joinpath("rulesets").joinpath(DEFAULT_RULE_SET).read_text()
    )
    return parse_rule_set(text)
