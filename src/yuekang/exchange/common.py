"""What both directions of a conversion (and the outbox) share: the parts of the application
they need, the refusal that carries its own status, and a partner's configuration.

A partner is configured in places that can drift apart -- its keys in the registry, an installed
adapter, the exchange terms of the rule set in force -- so a partner one of them lacks is not
configured (503 ``partner_not_configured``: ours to fix), never a refusal of the person.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from yuekang.auth.sms import SmsSender
from yuekang.exceptions import ServiceUnavailable, YuekangError
from yuekang.exchange import adapters
from yuekang.exchange import keys as exchange_keys
from yuekang.exchange.adapters import PartnerAdapter, PartnerTable
from yuekang.exchange.mapping import MappingError
from yuekang.keyring.ring import KeyRing
from yuekang.pii import BlindIndex, PiiCipher
from yuekang.rules import RuleSet
from yuekang.rules.ruleset import PartnerExchange


class ExchangeRefused(YuekangError):
    """A refusal with the status docs/EXCHANGE.md gives its code."""

    def __init__(self, code: str, message: str, *, status: int = 422, **kwargs: Any) -> None:
        super().__init__(message, code=code, **kwargs)
        self.status_code = status


@dataclass(frozen=True)
class ExchangeDeps:
    """What a conversion needs from the application context."""

    issuer: str
    passphrase: str
    key_cache: exchange_keys.ExchangeKeyCache
    pii: PiiCipher
    blind_index: BlindIndex
    keyring: KeyRing
    code_lifetime: dt.timedelta
    leeway: int
    sms: SmsSender


def partner_adapter(partner_id: str) -> PartnerAdapter:
    """The adapter of a partner registered here; a partner no installed adapter knows is not
    configured (its keys may have been stored before the adapter was removed)."""
    adapter = adapters.get(partner_id)
    if adapter is None:
        raise ServiceUnavailable(
            f"no partner adapter {partner_id!r} is installed", code="partner_not_configured"
        )
    return adapter


def partner_terms(rules: RuleSet, partner_id: str) -> PartnerExchange:
    """The exchange terms the rule set in force gives the partner (conditions, mapping table,
    home regions); a partner it names none for is not configured."""
    terms = rules.exchange.terms(partner_id)
    if terms is None:
        raise ServiceUnavailable(
            f"the rule set has no exchange terms for {partner_id!r}", code="partner_not_configured"
        )
    return terms


def partner_table(adapter: PartnerAdapter, terms: PartnerExchange) -> PartnerTable:
    """The mapping table the rule set names for the partner, or its adapter's own; one its
    adapter cannot load (a version misspelt, another partner's) is a partner not configured,
    for the rule set's authors to put right, not a crash."""
    version = terms.mapping or adapter.default_table
    try:
        return adapter.table(version)
    except MappingError as exc:
        raise ServiceUnavailable(
            f"the rule set names mapping table {version!r} for {adapter.id!r}, which its "
            f"adapter cannot load: {exc}",
            code="partner_not_configured",
        ) from exc
