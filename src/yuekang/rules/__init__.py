"""Health-status rules as data, and the pure engine that applies them.

``evaluate(facts, now=..., rules=...)`` decides a colour; ``parse_rule_set`` validates a rule set
document; ``default_rule_set`` loads the one shipped in ``rulesets/``. Nothing here touches a
database, the settings or the clock.
"""

from yuekang.rules.engine import (
    Decision,
    Finding,
    NatSummary,
    evaluate,
    explain,
    negative_within_hours,
)
from yuekang.rules.facts import (
    SEVERITY,
    CaseCategory,
    CaseFact,
    Facts,
    NatFact,
    Override,
    RiskArea,
    Status,
    TravelFact,
    VaccinationFact,
)
from yuekang.rules.ruleset import RuleSet, RuleSetError, default_rule_set, parse_rule_set

__all__ = [
    "SEVERITY",
    "CaseCategory",
    "CaseFact",
    "Decision",
    "Facts",
    "Finding",
    "NatFact",
    "NatSummary",
    "Override",
    "RiskArea",
    "RuleSet",
    "RuleSetError",
    "Status",
    "TravelFact",
    "VaccinationFact",
    "default_rule_set",
    "evaluate",
    "explain",
    "negative_within_hours",
    "parse_rule_set",
]
