"""Checkpoint policies: a verified code -> ``allow``, ``deny`` or ``manual_check`` for a place.

Pure and data-driven like the status rules: a policy is an ordered list of clauses, each a set of
conditions on what the code says (its status, its "negative within N hours" summary, its dose
count) and the verdict it gives; the first clause that holds decides, otherwise the default does.
The same function runs on the server (online verification) and on a checkpoint device (offline,
with the policies of its trust bundle), so a gate decides the same way with or without network.

The NAT condition reads the bucket the code carries (24/48/72/168 hours, as of issuance), so a
code that said "within 48 hours" when it was issued counts as such for its lifetime (an hour).
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from yuekang.rules.ruleset import RuleSetError

Verdict = Literal["allow", "deny", "manual_check"]
PlaceKind = Literal["venue", "transport", "border"]
PLACE_KINDS: tuple[PlaceKind, ...] = ("venue", "transport", "border")


def as_place_kind(value: str) -> PlaceKind:
    if value not in PLACE_KINDS:
        raise ValueError(f"unknown kind of place {value!r}")
    return value


DEFAULT_POLICIES = "gd-2021.toml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


AssuranceLevel = Literal["proofed", "counter", "dependant", "partner"]


class Conditions(_Model):
    status: list[Literal["green", "yellow", "red"]] | None = Field(default=None, min_length=1)
    negative_test_within_hours: int | None = Field(default=None, ge=1, le=720)
    min_doses: int | None = Field(default=None, ge=1, le=10)
    assurance: list[AssuranceLevel] | None = Field(
        default=None,
        min_length=1,
        description="how the holder's identity must have been proved; a code that does not "
        "say (issued before proofing existed) meets no such condition",
    )


class Clause(_Model):
    when: Conditions
    verdict: Verdict
    reason: str = Field(pattern=r"^[a-z][a-z0-9_]{1,47}$")


class Outcome(_Model):
    verdict: Verdict
    reason: str = Field(pattern=r"^[a-z][a-z0-9_]{1,47}$")


class Policy(_Model):
    description: str = Field(default="", max_length=300)
    clauses: list[Clause] = Field(max_length=50)
    default: Outcome


class Policies(_Model):
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    venue: Policy
    transport: Policy
    border: Policy

    def for_place(self, kind: PlaceKind) -> Policy:
        policy: Policy = getattr(self, kind)
        return policy

    def document(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str


def decide(
    policy: Policy,
    *,
    status: str,
    negative_within_hours: int | None,
    doses: int | None,
    assurance: str | None = None,
) -> Decision:
    """The verdict of ``policy`` for a verified code's status, summaries and assurance."""
    for clause in policy.clauses:
        if _holds(clause.when, status, negative_within_hours, doses, assurance):
            return Decision(clause.verdict, clause.reason)
    return Decision(policy.default.verdict, policy.default.reason)


def _holds(
    when: Conditions,
    status: str,
    negative_within_hours: int | None,
    doses: int | None,
    assurance: str | None,
) -> bool:
    if when.status is not None and status not in when.status:
        return False
    if when.assurance is not None and assurance not in when.assurance:
        return False
    if when.negative_test_within_hours is not None and (
        negative_within_hours is None or negative_within_hours > when.negative_test_within_hours
    ):
        return False
    return when.min_doses is None or (doses or 0) >= when.min_doses


def parse_policies(document: str | dict[str, Any]) -> Policies:
    """Validate policies (TOML text or their JSON form); :class:`RuleSetError` lists problems."""
    try:
        raw = tomllib.loads(document) if isinstance(document, str) else document
        return Policies.model_validate(raw)
    except tomllib.TOMLDecodeError as exc:
        raise RuleSetError([f"not valid TOML: {exc}"]) from exc
    except ValidationError as exc:
        raise RuleSetError(
            [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        ) from exc


@functools.cache
def default_policies() -> Policies:
    text = resources.files("yuekang.rules").joinpath("policies").joinpath(DEFAULT_POLICIES)
    return parse_policies(text.read_text())
