"""The conversion request as both sides build and read it (yuekang.exchange.messages): what a
message may look like is decided once, so Guangdong and a partner cannot disagree about it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from yuekang.exchange import messages


def _request(**subject: Any) -> dict[str, Any]:
    request = messages.ConversionRequest(
        cid="c-1",
        subject=messages.Subject(
            name="陳大文",
            doc_type="macao_id",
            doc_number="12345678",
            birth_date=dt.date(1990, 1, 2),
            phone="+85366123456",
        ),
        source=messages.Source(code="MO1:ABC"),
        nat=messages.Nat(sampled_on=dt.date(2026, 11, 24), result="negative"),
        travel=messages.Travel(outside_region_14d=False),
        consent=messages.Consent(
            id="k-1",
            granted_at=1_764_099_990,
            recipient="yk:gd",
            purpose=messages.PURPOSE,
            text_version=messages.CONSENT_TEXT_VERSION,
            fields=list(messages.FIELDS),
        ),
    )
    claims = messages.conversion_claims(
        request, iss="MO", aud="yk:gd", iat=1_764_100_000, exp=1_764_100_300, jti="j"
    )
    claims["subject"].update(subject)
    return claims


def _problems(claims: dict[str, Any]) -> list[str]:
    with pytest.raises(messages.MessageMalformed) as caught:
        messages.parse_request(claims)
    assert caught.value.code == "package_malformed"
    return [f["field"] for f in caught.value.fields]


def test_what_one_side_builds_the_other_reads_back() -> None:
    claims = _request()

    parsed = messages.parse_request(claims)

    assert claims["typ"] == "conversion.request"
    assert claims["subject"]["birth_date"] == "1990-01-02"
    assert claims["nat"] == {"sampled_on": "2026-11-24", "result": "negative"}
    assert (
        messages.conversion_claims(
            parsed, iss="MO", aud="yk:gd", iat=1_764_100_000, exp=1_764_100_300, jti="j"
        )
        == claims
    )


@pytest.mark.parametrize("spelling", ["19900102", "1990-1-2", "1990-01-02T00:00:00", 631238400])
def test_a_date_has_one_spelling(spelling: Any) -> None:
    assert _problems(_request(birth_date=spelling)) == ["subject.birth_date"]


@pytest.mark.parametrize("phone", [None, "66123456", "+0853661234", ""])
def test_the_phone_is_required_and_e164(phone: Any) -> None:
    claims = _request(phone=phone)
    if phone is None:
        del claims["subject"]["phone"]

    assert _problems(claims) == ["subject.phone"]


def test_a_name_is_one_plain_line() -> None:
    assert messages.parse_request(_request(name=" 陳  大文\t")).subject.name == "陳 大文"
    assert _problems(_request(name="陳\u200b大文")) == ["subject.name"]
    assert _problems(_request(name="陳\u202e大文")) == ["subject.name"]


def test_every_problem_is_named_not_only_the_first() -> None:
    claims = _request(birth_date="x", phone="1")
    claims["travel"] = {"outside_region_14d": "no"}
    claims["consent"]["granted_at"] = "1764099990"

    assert sorted(_problems(claims)) == [
        "consent.granted_at",
        "subject.birth_date",
        "subject.phone",
        "travel.outside_region_14d",
    ]


def test_another_message_type_is_not_a_conversion_request() -> None:
    assert _problems({**_request(), "typ": "conversion.result"}) == ["typ"]


def test_unknown_members_are_ignored_so_a_partner_can_add_before_we_read_them() -> None:
    parsed = messages.parse_request({**_request(), "channel": "kiosk"})

    assert parsed.cid == "c-1"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"package": "a.b.c.d.e"}', None),
        (b"{", "malformed_json"),
        (b"[" * 100_000, "malformed_json"),
        (b'{"package": 1}', "package_malformed"),
        (b'["a.b.c.d.e"]', "package_malformed"),
    ],
)
def test_a_direct_call_body_carries_one_package(body: bytes, code: str | None) -> None:
    if code is None:
        assert messages.package_of(body) == "a.b.c.d.e"
        assert messages.package_of(messages.package_body("a.b.c.d.e")) == "a.b.c.d.e"
        return
    with pytest.raises(messages.MessageMalformed) as caught:
        messages.package_of(body)
    assert caught.value.code == code


def test_a_consent_must_name_the_recipient_the_purpose_and_all_seven_fields() -> None:
    assert (
        messages.consent_gaps(
            named="yk:gd",
            purpose=messages.PURPOSE,
            fields=list(messages.FIELDS),
            recipient="yk:gd",
        )
        == []
    )
    assert messages.consent_gaps(
        named="MO", purpose="marketing", fields=["name", "status"], recipient="yk:gd"
    ) == ["recipient", "purpose", "document", "birth_date", "phone", "nat", "travel"]
