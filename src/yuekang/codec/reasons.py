"""The reason taxonomy: one stable set of machine-readable codes for every verdict.

Every path that judges a health code -- the token codec, the offline verifier, the online
``POST /v1/verify`` endpoint and (later) the browser scanner -- explains itself with these codes and
nothing else, so a checkpoint operator sees the same words whichever path answered. Codes are part
of the public API: add new ones, never rename or reuse one.

Messages are short, for a scanner screen, in zh-Hans (default), zh-Hant, en and pt.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final


class Reason(StrEnum):
    """Why a code was judged the way it was."""

    MALFORMED = "malformed"
    """The text is not a well-formed health code (prefix, segments, encoding, JSON, claims)."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """A health-code prefix of a version this verifier does not know (e.g. ``YK2:``)."""
    UNKNOWN_KEY = "unknown_key"
    """The header names a key id that is not in the trusted key set."""
    ALGORITHM_NOT_ALLOWED = "algorithm_not_allowed"
    """The header's ``alg`` is not allowed, or differs from the algorithm bound to the key."""
    BAD_SIGNATURE = "bad_signature"
    """The signature does not verify: the code was altered or forged."""
    EXPIRED = "expired"
    """The code's expiry, plus the clock leeway, has passed."""
    NOT_YET_VALID = "not_yet_valid"
    """The code was issued later than now plus the clock leeway."""
    REVOKED = "revoked"
    """The issuer revoked this code (for example, the person's status got worse)."""
    UNTRUSTED_ISSUER = "untrusted_issuer"
    """The issuer named in the code is not the one the key belongs to, or is not trusted here."""
    KEY_NOT_VALID = "key_not_valid"
    """The key was compromised, or the code was signed outside the key's validity window."""
    TRUST_STALE = "trust_stale"
    """A warning: the verifier's trust bundle is past its expiry but within its grace period."""
    TRUST_EXPIRED = "trust_expired"
    """The trust bundle is past its grace period: nothing can be verified until it is synced."""
    WRONG_CLOCK = "wrong_clock"
    """The device clock is earlier than the trust bundle was issued: fix the clock."""
    NO_TRUST = "no_trust"
    """The verifier holds no trust bundle yet: sync first."""
    NO_VALID_CODE = "no_valid_code"
    """A document check (刷证核验): this document has no valid code here -- whether the document
    is unknown, unbound or its holder unproved is not said, so that the answer is no oracle."""


LANGUAGES: Final = ("zh-Hans", "zh-Hant", "en", "pt")
DEFAULT_LANGUAGE: Final = "zh-Hans"

MESSAGES: Final[Mapping[Reason, Mapping[str, str]]] = {
    Reason.MALFORMED: {
        "zh-Hans": "二维码格式无效",
        "zh-Hant": "二維碼格式無效",
        "en": "Not a valid health code",
        "pt": "Código de saúde inválido",
    },
    Reason.UNSUPPORTED_VERSION: {
        "zh-Hans": "不支持的健康码版本",
        "zh-Hant": "不支援的健康碼版本",
        "en": "Unsupported health code version",
        "pt": "Versão do código de saúde não suportada",
    },
    Reason.UNKNOWN_KEY: {
        "zh-Hans": "签发密钥未知",
        "zh-Hant": "簽發密鑰未知",
        "en": "Signed with an unknown key",
        "pt": "Assinado com uma chave desconhecida",
    },
    Reason.ALGORITHM_NOT_ALLOWED: {
        "zh-Hans": "签名算法不被允许",
        "zh-Hant": "簽名演算法不被允許",
        "en": "Signature algorithm not allowed",
        "pt": "Algoritmo de assinatura não permitido",
    },
    Reason.BAD_SIGNATURE: {
        "zh-Hans": "签名无效，疑似伪造或篡改",
        "zh-Hant": "簽名無效，疑似偽造或篡改",
        "en": "Invalid signature: forged or altered",
        "pt": "Assinatura inválida: falsificado ou alterado",
    },
    Reason.EXPIRED: {
        "zh-Hans": "健康码已过期，请刷新",
        "zh-Hant": "健康碼已過期，請重新整理",
        "en": "Code expired: ask for a fresh one",
        "pt": "Código expirado: peça um novo",
    },
    Reason.NOT_YET_VALID: {
        "zh-Hans": "健康码尚未生效，请检查设备时间",
        "zh-Hant": "健康碼尚未生效，請檢查裝置時間",
        "en": "Code not yet valid: check the device clock",
        "pt": "Código ainda não válido: verifique o relógio",
    },
    Reason.REVOKED: {
        "zh-Hans": "健康码已被撤销",
        "zh-Hant": "健康碼已被撤銷",
        "en": "Code revoked",
        "pt": "Código revogado",
    },
    Reason.UNTRUSTED_ISSUER: {
        "zh-Hans": "签发机构不受信任",
        "zh-Hant": "簽發機構不受信任",
        "en": "Issuer not trusted",
        "pt": "Emissor não confiável",
    },
    Reason.KEY_NOT_VALID: {
        "zh-Hans": "签发密钥已失效",
        "zh-Hant": "簽發密鑰已失效",
        "en": "Signing key no longer valid",
        "pt": "Chave de assinatura já não é válida",
    },
    Reason.TRUST_STALE: {
        "zh-Hans": "核验数据已过期，请尽快同步",
        "zh-Hant": "核驗資料已過期，請盡快同步",
        "en": "Trust data out of date: sync soon",
        "pt": "Dados de confiança desatualizados: sincronize em breve",
    },
    Reason.TRUST_EXPIRED: {
        "zh-Hans": "核验数据已失效，无法核验，请同步",
        "zh-Hant": "核驗資料已失效，無法核驗，請同步",
        "en": "Trust data expired: cannot verify until synced",
        "pt": "Dados de confiança expirados: sincronize para verificar",
    },
    Reason.WRONG_CLOCK: {
        "zh-Hans": "设备时间有误，请校准",
        "zh-Hant": "裝置時間有誤，請校準",
        "en": "Device clock is wrong: set it right",
        "pt": "Relógio do dispositivo errado: acerte-o",
    },
    Reason.NO_TRUST: {
        "zh-Hans": "尚未同步核验数据",
        "zh-Hant": "尚未同步核驗資料",
        "en": "No trust data yet: sync first",
        "pt": "Sem dados de confiança: sincronize primeiro",
    },
    Reason.NO_VALID_CODE: {
        "zh-Hans": "该证件无有效健康码",
        "zh-Hant": "該證件無有效健康碼",
        "en": "No valid health code for this document",
        "pt": "Sem código de saúde válido para este documento",
    },
}


def message(reason: Reason, language: str = DEFAULT_LANGUAGE) -> str:
    """The short message for ``reason`` in ``language`` (zh-Hans when the language is unknown)."""
    texts = MESSAGES[reason]
    return texts.get(language, texts[DEFAULT_LANGUAGE])


def pick_language(accept_language: str | None) -> str:
    """Choose one of :data:`LANGUAGES` from an ``Accept-Language`` header value.

    Quality values are honoured; ``zh-TW``/``zh-HK``/``zh-MO`` map to zh-Hant, other ``zh`` to
    zh-Hans, ``pt-*`` to pt and ``en-*`` to en.
    """
    ranked: list[tuple[float, int, str]] = []
    for position, (tag, quality) in enumerate(weighted(accept_language)):
        language = _language_for_tag(tag)
        if language is not None and quality > 0:
            ranked.append((-quality, position, language))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE


def weighted(header: str | None) -> list[tuple[str, float]]:
    """The items of a list header with quality values (``Accept-Language``,
    ``Accept-Encoding``), in order, each with its weight: 1.0 without ``q``; 0.0 for a ``q`` that
    is not a number from 0 to 1 (RFC 9110 allows no other; inf and nan are not weights). Other
    parameters (``level=1``) are not weights; ``Q`` is ``q`` (parameter names are
    case-insensitive)."""
    items: list[tuple[str, float]] = []
    for part in (header or "").split(","):
        token, *params = part.strip().split(";")
        quality = 1.0
        for param in params:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() != "q":
                continue
            try:
                quality = float(value.strip())
            except ValueError:
                quality = 0.0
            if not 0.0 <= quality <= 1.0:
                quality = 0.0
        items.append((token.strip(), quality))
    return items


def _language_for_tag(tag: str) -> str | None:
    lowered = tag.lower()
    if lowered in {"zh-hant", "zh-tw", "zh-hk", "zh-mo"} or lowered.startswith("zh-hant"):
        return "zh-Hant"
    # Cantonese (yue), as Hong Kong and Macao readers write it, in Traditional characters.
    if lowered == "yue" or lowered.startswith("yue-"):
        return "zh-Hans" if lowered.startswith("yue-hans") else "zh-Hant"
    if lowered == "zh" or lowered.startswith("zh-"):
        return "zh-Hans"
    if lowered == "en" or lowered.startswith("en-"):
        return "en"
    if lowered == "pt" or lowered.startswith("pt-"):
        return "pt"
    return None
