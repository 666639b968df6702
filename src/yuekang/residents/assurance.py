"""Identity assurance: how we know that a bound document belongs to the person using it.

Pure. Every binding records one level (``identities.assurance``), which codes carry as the
compact claim ``ia`` and checkpoint policies may require (docs/IDENTITY.md):

=============  =====  =========================================================================
level          ``ia``  what was proved
=============  =====  =========================================================================
``unverified``  --    nothing (bindings made before proofing existed): no code is issued
``proofed``     1     the population register knows the name, document and birth date, the
                      carrier says the phone signing in is registered to that person, and the
                      one-time code shows the phone is in hand
``counter``     2     staff saw the document in person and recorded why
``dependant``   3     the register knows the person; a proofed adult declared the relationship
                      (and an adult dependant consented by SMS or at a counter)
``partner:MO``  4     a partner system (Macao) proofed its own resident and vouched for them
=============  =====  =========================================================================

Who may take a document over from whom (:func:`takes_over`) follows one rule: a binding that
passed proofing wins over one that never passed the same proofing. A resident proofed on their
own phone wins over ``unverified`` and ``dependant`` bindings; counter staff, having seen the
document, win over any binding; a guardian's registry check and a partner's word win only over
``unverified``.
"""

from __future__ import annotations

from typing import Final, Literal

from yuekang.codec.healthcode import ASSURANCE_LEVELS

Assurance = Literal["unverified", "proofed", "counter", "dependant", "partner"]
"""Levels as checkpoints see them; a partner binding is stored as ``partner:<issuer>``."""

UNVERIFIED: Final = "unverified"
PROOFED: Final = "proofed"
COUNTER: Final = "counter"
DEPENDANT: Final = "dependant"
PARTNER_PREFIX: Final = "partner:"

CLAIM_VALUES: Final[dict[str, int]] = {name: value for value, name in ASSURANCE_LEVELS.items()}
"""The ``ia`` claim of a code for each level. Integers, not names: the claim has to fit beside
every other claim of the largest ordinary code within QR version 13 (codec/healthcode.py)."""


def partner(issuer: str) -> str:
    """The stored level of an account made by a partner's inbound conversion (``partner:MO``)."""
    return PARTNER_PREFIX + issuer


def level(stored: str) -> Assurance:
    """What a stored assurance means to a checkpoint: ``partner:MO`` is ``partner``."""
    if stored.startswith(PARTNER_PREFIX):
        return "partner"
    if stored in (UNVERIFIED, PROOFED, COUNTER, DEPENDANT):
        return stored  # type: ignore[return-value]
    raise ValueError(f"unknown assurance {stored!r}")


def claim(stored: str) -> int | None:
    """The ``ia`` claim for a stored level; None for ``unverified`` (which gets no code)."""
    return CLAIM_VALUES.get(level(stored))


def may_have_codes(stored: str) -> bool:
    return stored != UNVERIFIED


def may_convert(stored: str) -> bool:
    """Whether we may vouch for this person to a partner system: a family member's record
    (the guardian declared the relationship) and an unverified binding may not."""
    return level(stored) in (PROOFED, COUNTER, "partner")


Proofing = Literal["self", "counter", "dependant", "partner"]
"""How a new binding was proved: by the resident on their own phone, at a counter, by a
guardian adding a family member, or by a partner's inbound conversion."""


def takes_over(new: Proofing, existing: str) -> bool:
    """Whether a binding proved by ``new`` releases another account's binding of the same
    document whose stored level is ``existing``."""
    current = level(existing)
    if new == "counter":
        return True
    if new == "self":
        return current in (UNVERIFIED, DEPENDANT)
    return current == UNVERIFIED


def stored_level(new: Proofing, *, partner_issuer: str | None = None) -> str:
    if new == "self":
        return PROOFED
    if new == "counter":
        return COUNTER
    if new == "dependant":
        return DEPENDANT
    if partner_issuer is None:
        raise ValueError("a partner binding names its partner")
    return partner(partner_issuer)
