"""Consent to a transfer, either way: the text a person agrees to, and what a consent must cover.

The same rule judges both directions (:func:`yuekang.exchange.messages.consent_gaps`: the right
recipient, the purpose, every field sent), so a consent we would refuse from a partner is one we
never send. What differs is who recorded it: inbound, the partner did, and we check that it is
this transfer's (given shortly before the package was sealed); outbound, the person gives it to
us, to the text shown now, and the receipt is written with the outbox message that carries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yuekang.exchange import adapters
from yuekang.exchange.common import ExchangeRefused
from yuekang.exchange.messages import (
    CONSENT_TEXT_VERSION,
    FIELDS,
    PURPOSE,
    Consent,
    consent_gaps,
)
from yuekang.exchange.partners import PartnerView

CONSENT_MAX_AGE = 86_400
"""A consent given more than a day before its package was sealed is not this transfer's."""

CONSENT_TEXT = {
    "zh-Hans": "我同意将上述个人信息发送至{recipient}，仅用于本次健康码转换。",
    "zh-Hant": "我同意將上述個人資料發送至{recipient}，僅用於本次健康碼轉換。",
    "en": "I agree to send the data above to {recipient}, only to convert my health code "
    "this time.",
    "pt": "Autorizo o envio dos dados acima para {recipient}, apenas para converter o meu código "
    "de saúde desta vez.",
}


@dataclass(frozen=True)
class OutboundConsent:
    """What the person agreed to on the consent screen, as their request states it."""

    recipient: str
    fields: list[str]
    accepted: bool
    text_version: str


def consent_screen(partner: PartnerView | None, partner_id: str) -> dict[str, Any]:
    """What the consent screen shows: the recipient, every field sent, the text."""
    recipient = partner.issuer if partner else None
    adapter = adapters.get(partner_id)
    name = adapter.recipient_name if adapter is not None else partner_id
    return {
        "recipient": recipient,
        "recipient_name": name,
        "purpose": PURPOSE,
        "fields": list(FIELDS),
        "text_version": CONSENT_TEXT_VERSION,
        "text": {lang: text.format(recipient=name) for lang, text in CONSENT_TEXT.items()},
        "available": partner is not None and partner.enc_key is not None,
    }


def check_inbound_consent(given: Consent, *, recipient: str, sealed_at: int, leeway: int) -> None:
    """The consent a partner recorded must name us (``recipient``), the purpose and every field,
    and have been given at most :data:`CONSENT_MAX_AGE` before the package was sealed
    (``sealed_at``, its ``iat``)."""
    missing = consent_gaps(
        named=given.recipient, purpose=given.purpose, fields=given.fields, recipient=recipient
    )
    if not sealed_at - CONSENT_MAX_AGE <= given.granted_at <= sealed_at + leeway:
        missing.append("granted_at")
    if missing:
        raise ExchangeRefused(
            "consent_insufficient",
            f"the consent does not cover: {', '.join(missing)}",
        )


def check_outbound_consent(consent: OutboundConsent, *, recipient: str) -> None:
    """The person's consent must be given, to the current text, naming the partner
    (``recipient``) and exactly the fields sent."""
    if consent.text_version != CONSENT_TEXT_VERSION:
        raise ExchangeRefused(
            "consent_insufficient",
            f"the consent was given to another text ({consent.text_version!r}); show the "
            f"current one ({CONSENT_TEXT_VERSION!r}) and ask again",
        )
    if not consent.accepted:
        raise ExchangeRefused("consent_insufficient", "the consent was not given")
    missing = consent_gaps(
        named=consent.recipient, purpose=PURPOSE, fields=consent.fields, recipient=recipient
    )
    extra = [f for f in consent.fields if f not in FIELDS]
    if missing or extra:
        raise ExchangeRefused(
            "consent_insufficient",
            "the consent must name the recipient and exactly the fields sent: "
            + ", ".join(list(FIELDS)),
            fields=[{"field": "consent.fields", "reason": "missing", "message": m} for m in missing]
            + [{"field": "consent.fields", "reason": "unknown", "message": e} for e in extra],
        )
