"""Masking of personal data for display: the one configurable place for masking.

No national rule fixes the pattern (see ``docs/DOMAIN.md``, "Masking"), so every screen, QR payload,
log line and API response that shows a name, document number or phone number in part must go
through these functions; changing the policy means changing the constants below and nothing else.

Defaults: name -> first character, ``*``, last character (``*三`` for two characters); document
number -> at most the first 2 and last 2 characters, never more than half of them; phone ->
``138****8000``. Birth dates are never shown in clear, so there is no function to mask one.
"""

from __future__ import annotations

import re

__all__ = ["mask_doc_number", "mask_name", "mask_phone"]

MASK_CHAR = "*"
DOC_KEEP_HEAD = 2
DOC_KEEP_TAIL = 2
# Up to this length a document number keeps only its last character (or none for a single one).
DOC_SHORT_LENGTH = 4
PHONE_KEEP_HEAD = 3
PHONE_KEEP_TAIL = 4
# Showing 3 + 4 digits suits 11-digit mainland mobiles, but would reveal 7 of the 8 digits of a
# Macao or HK number; at least this many digits stay hidden whatever the length.
PHONE_MIN_HIDDEN = 4
# The home country code is dropped from the display, as residents are used to seeing it.
HOME_COUNTRY_CODE = "86"

_E164 = re.compile(r"\+([1-9][0-9]{1,14})")
# E.164 country codes are prefix-free: these are all the 1- and 2-digit ones, every other country
# code has 3 digits.
_SHORT_COUNTRY_CODES = frozenset(
    {"1", "7"}
    | {"20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46"}
    | {"47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63"}
    | {"64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98"}
)


def _keep_ends(text: str, head: int, tail: int) -> str:
    hidden = len(text) - head - tail
    return text[:head] + MASK_CHAR * hidden + text[len(text) - tail :]


def mask_name(name: str) -> str:
    """``张小三`` -> ``张*三``, ``张三`` -> ``*三``, ``张`` -> ``*``, ``Chan Tai Man`` -> ``C*n``.

    Always a single mask character, so the display does not reveal the length of the name.
    """
    text = " ".join(name.split())
    if len(text) <= 1:
        return MASK_CHAR * len(text)
    if len(text) == 2:
        return MASK_CHAR + text[-1]
    return text[0] + MASK_CHAR + text[-1]


def mask_doc_number(number: str) -> str:
    """``11010519491231002X`` -> ``11**************2X``, ``A1234563`` -> ``A1****63``.

    Keeps at most ``DOC_KEEP_HEAD`` leading and ``DOC_KEEP_TAIL`` trailing characters and never
    reveals more than half of them; numbers of ``DOC_SHORT_LENGTH`` characters or fewer keep only
    the last one. The mask has the same length as the number.
    """
    text = number.strip()
    length = len(text)
    budget = length // 2
    if length <= DOC_SHORT_LENGTH:
        return _keep_ends(text, 0, min(1, budget))
    head = min(DOC_KEEP_HEAD, budget // 2)
    tail = min(DOC_KEEP_TAIL, budget - head)
    return _keep_ends(text, head, tail)


def mask_phone(e164: str) -> str:
    """``+8613800138000`` -> ``138****8000``; ``+85366123456`` -> ``+853 66****56``.

    The home country code is dropped; any other is kept as a ``+CC `` prefix. The national number
    keeps ``PHONE_KEEP_HEAD`` leading and ``PHONE_KEEP_TAIL`` trailing digits, shrunk for short
    numbers so that at least ``PHONE_MIN_HIDDEN`` digits stay hidden.
    """
    match = _E164.fullmatch(e164.strip())
    if match is None:
        # The input is not echoed: it is the phone number this function exists to hide.
        raise ValueError("phone number must be in E.164 form: +, country code, national number")
    digits = match.group(1)
    cc_length = next(n for n in (1, 2, 3) if n == 3 or digits[:n] in _SHORT_COUNTRY_CODES)
    country_code, national = digits[:cc_length], digits[cc_length:]
    if not national:
        raise ValueError("phone number has a country code but no national number")

    shown = max(0, min(PHONE_KEEP_HEAD + PHONE_KEEP_TAIL, len(national) - PHONE_MIN_HIDDEN))
    head = min(PHONE_KEEP_HEAD, shown // 2)
    tail = min(PHONE_KEEP_TAIL, shown - head)
    masked = _keep_ends(national, head, tail)
    return masked if country_code == HOME_COUNTRY_CODE else f"+{country_code} {masked}"
