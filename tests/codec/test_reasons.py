"""The reason taxonomy: stable codes, a message for each in every language, language choice."""

from __future__ import annotations

import pytest

from yuekang.codec import errors
from yuekang.codec.reasons import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    MESSAGES,
    Reason,
    message,
    pick_language,
)

# Codes are public API: never renamed or reused. A change here must be deliberate.
STABLE_CODES = {
    "malformed",
    "unsupported_version",
    "unknown_key",
    "algorithm_not_allowed",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "revoked",
    "untrusted_issuer",
    "key_not_valid",
    "trust_stale",
    "trust_expired",
    "wrong_clock",
    "no_trust",
    "no_valid_code",
}


def test_reason_codes_are_stable() -> None:
    assert {r.value for r in Reason} == STABLE_CODES


def test_languages() -> None:
    assert LANGUAGES == ("zh-Hans", "zh-Hant", "en", "pt")
    assert DEFAULT_LANGUAGE == "zh-Hans"


@pytest.mark.parametrize("reason", list(Reason))
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_reason_has_a_message_in_every_language(reason: Reason, language: str) -> None:
    text = message(reason, language)

    assert text.strip()
    assert MESSAGES[reason][language] == text


@pytest.mark.parametrize("language", LANGUAGES)
def test_messages_are_distinct_within_a_language(language: str) -> None:
    # An operator must be able to tell the reasons apart on the scanner screen.
    texts = [message(r, language) for r in Reason]

    assert len(set(texts)) == len(texts)


@pytest.mark.parametrize("language", ["fr", "", "EN", "zh", "zh-Hant-TW"])
def test_unknown_language_falls_back_to_simplified_chinese(language: str) -> None:
    assert message(Reason.EXPIRED, language) == MESSAGES[Reason.EXPIRED]["zh-Hans"]


def test_message_defaults_to_simplified_chinese() -> None:
    assert message(Reason.BAD_SIGNATURE) == "签名无效，疑似伪造或篡改"


def test_english_and_portuguese_messages_are_not_chinese() -> None:
    for reason in Reason:
        for language in ("en", "pt"):
            assert all(ord(ch) < 0x3000 for ch in message(reason, language)), (reason, language)


def test_every_codec_error_maps_to_its_reason() -> None:
    assert {
        errors.MalformedCode: Reason.MALFORMED,
        errors.UnsupportedVersion: Reason.UNSUPPORTED_VERSION,
        errors.UnknownKey: Reason.UNKNOWN_KEY,
        errors.AlgorithmNotAllowed: Reason.ALGORITHM_NOT_ALLOWED,
        errors.BadSignature: Reason.BAD_SIGNATURE,
        errors.UntrustedIssuer: Reason.UNTRUSTED_ISSUER,
        errors.KeyNotValid: Reason.KEY_NOT_VALID,
        errors.ExpiredCode: Reason.EXPIRED,
        errors.NotYetValid: Reason.NOT_YET_VALID,
    } == {cls: cls.reason for cls in errors.InvalidCode.__subclasses__()}
    assert errors.ExpiredCode("x").reason == "expired"
    assert errors.ExpiredCode("the detail").detail == "the detail"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "zh-Hans"),
        ("", "zh-Hans"),
        ("en-US,en;q=0.9", "en"),
        ("en", "en"),
        ("zh-TW", "zh-Hant"),
        ("zh-HK", "zh-Hant"),
        ("zh-MO", "zh-Hant"),
        ("zh-Hant", "zh-Hant"),
        ("zh-Hant-MO", "zh-Hant"),
        ("zh-CN", "zh-Hans"),
        ("zh", "zh-Hans"),
        ("zh-Hans-HK", "zh-Hans"),
        ("ZH-tw", "zh-Hant"),
        ("pt-PT", "pt"),
        ("pt-BR", "pt"),
        ("pt", "pt"),
        ("fr", "zh-Hans"),
        ("fr-FR,de;q=0.8", "zh-Hans"),
        ("*", "zh-Hans"),
        ("en;q=0.1, pt;q=0.9", "pt"),
        ("en;q=0.5,zh-TW;q=0.5", "en"),  # equal quality: the first listed wins
        ("fr, pt-PT;q=0.2, en;q=0.1", "pt"),  # unknown languages are skipped, not defaulted
        ("en;q=0, pt;q=0.1", "pt"),  # q=0 means "not acceptable"
        ("en;q=0", "zh-Hans"),
        ("en;q=abc, pt;q=0.5", "pt"),  # an unparsable q counts as not acceptable
        ("en;q=, pt", "pt"),
        ("en;q=-1, zh-HK;q=0.3", "zh-Hant"),
        ("en; q=0.2 , pt ; q=0.8", "pt"),
        (",,;;q=", "zh-Hans"),
        ("en;q=0.9,pt", "pt"),  # no q means 1.0
        ("en-GB;q=0.8, en-US;q=0.9, zh-MO;q=0.7", "en"),
        # Other parameters before or after q, and Q in capitals (parameter names are
        # case-insensitive): found by a hostile review.
        ("zh-Hant;q=0.9;level=1", "zh-Hant"),
        ("en;level=1;q=0.1, pt;q=0.5", "pt"),
        ("en;Q=0.1, pt;q=0.2", "pt"),
        ("yue-Hant-HK", "zh-Hant"),
        ("yue", "zh-Hant"),
        ("yue-Hans", "zh-Hans"),
    ],
)
def test_pick_language(header: str | None, expected: str) -> None:
    assert pick_language(header) == expected


def test_pick_language_always_returns_a_supported_language() -> None:
    for header in ("q=1", ";", "en;q=1e999", "zh-;q=0.5", "x" * 10_000, "en;q=nan"):
        assert pick_language(header) in LANGUAGES
