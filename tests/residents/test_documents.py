import datetime
import itertools
import pickle
import random
from collections.abc import Callable

import pytest

from yuekang.residents.documents import (
    DocType,
    DocumentError,
    hkid_check,
    icao_check,
    local_date,
    mod11_2_check,
    normalize_doc_number,
    plainly_valid,
    validate_document,
)

# A fixed "today" keeps date-boundary cases deterministic.
TODAY = datetime.date(2024, 6, 15)


def gb11643(region6: str, yyyymmdd: str, sequence3: str = "123") -> str:
    body = region6 + yyyymmdd + sequence3
    return body + mod11_2_check(body)


VALID_PRC = gb11643("440305", "19900101")
VALID_PERMIT = gb11643("820000", "19900101")


def flip_check(number: str, alphabet: str) -> str:
    """The same number with a different (wrong) last character from ``alphabet``."""
    wrong = next(c for c in alphabet if c != number[-1])
    return number[:-1] + wrong


def assert_rejected(
    exc: pytest.ExceptionInfo[DocumentError], reason: str, field: str = "doc_number"
) -> None:
    assert (exc.value.field, exc.value.reason) == (field, reason)
    assert str(exc.value) == exc.value.message
    assert exc.value.message


# --- check helpers, anchored on independently published or hand-computed values ----------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("11010519491231002", "X"),  # GB 11643-1999 sample
        ("44052418800101001", "4"),  # GB 11643-1999 sample
    ],
)
def test_mod11_2_check_published_samples(body: str, expected: str) -> None:
    assert mod11_2_check(body) == expected


def test_mod11_2_check_is_the_weighted_sum_of_the_standard() -> None:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    rng = random.Random(11643)
    bodies = ["0" * 17, "9" * 17, "1" * 17, "0" * 16 + "1", "1" + "0" * 16]
    bodies += ["".join(rng.choices("0123456789", k=17)) for _ in range(20000)]
    for body in bodies:
        total = sum(int(d) * w for d, w in zip(body, weights, strict=True))
        assert mod11_2_check(body) == "10X98765432"[total % 11], body


def test_the_embedded_birth_date_is_the_calendar_date_its_digits_name() -> None:
    # Read with fromisoformat's basic form: the same answer as building the date from the
    # year, month and day, for every eight digits, including 29 February and impossible days.
    from yuekang.residents.documents import _embedded_birth_date

    def by_parts(digits: str) -> datetime.date | None:
        try:
            return datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
        except ValueError:
            return None

    rng = random.Random(19491231)
    edges = [
        f"{y:04d}{m:02d}{d:02d}"
        for y in (0, 1, 1899, 1900, 2000, 2023, 2024, 2100, 9999)
        for m in range(14)
        for d in range(33)
    ]
    samples = edges + ["".join(rng.choices("0123456789", k=8)) for _ in range(50000)]
    for digits in samples:
        assert _embedded_birth_date(digits) == by_parts(digits), digits
    assert _embedded_birth_date("20240229") == datetime.date(2024, 2, 29)
    assert _embedded_birth_date("20230229") is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("A123456", "3"),  # DOMAIN.md sample
        ("G123456", "A"),  # 324 + 128 + 77 = 529, r = 1
        ("AB987654", "3"),  # 90 + 88 + 193 = 371, r = 8
        ("A100009", "0"),  # 404 + 25 = 429, r = 0
        ("CA100002", "A"),  # 188 + 11 = 199, r = 1
    ],
)
def test_hkid_check_known_values(body: str, expected: str) -> None:
    assert hkid_check(body) == expected


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("L898902C3", "6"),  # ICAO 9303 TD3 specimen
        ("D23145890", "7"),  # ICAO 9303 TD1 specimen
        ("AB1234<<<", "1"),  # 70 + 33 + 1 + 14 + 9 + 4 = 131
    ],
)
def test_icao_check_known_values(field: str, expected: str) -> None:
    assert icao_check(field) == expected


@pytest.mark.parametrize(
    ("helper", "bad_input"),
    [
        (mod11_2_check, "1101051949123100"),
        (mod11_2_check, "1101051949123100X"),
        (mod11_2_check, "1101051949123100٢"),  # Arabic-Indic digit passes str.isdigit()
        (hkid_check, "A12345"),
        (hkid_check, "a123456"),
        (hkid_check, "ABC123456"),
        (icao_check, "l898902c3"),
        (icao_check, "L898902C-"),
    ],
)
def test_helpers_reject_malformed_input(helper: Callable[[str], str], bad_input: str) -> None:
    with pytest.raises(ValueError, match=r"must|may"):
        helper(bad_input)


# --- valid documents --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc_type", "raw", "expected"),
    [
        (DocType.PRC_ID, "11010519491231002X", "11010519491231002X"),
        (DocType.PRC_ID, gb11643("440305", "19900101"), gb11643("440305", "19900101")),
        (DocType.PRC_ID, gb11643("650102", "20000229"), gb11643("650102", "20000229")),
        (DocType.PRC_ID, gb11643("310115", "19000101"), gb11643("310115", "19000101")),
        (DocType.PRC_ID, gb11643("130102", "20240615"), gb11643("130102", "20240615")),
        (DocType.PRC_ID, gb11643("540102", "19851130"), gb11643("540102", "19851130")),
        (DocType.RESIDENCE_PERMIT, gb11643("810000", "19800515"), gb11643("810000", "19800515")),
        (DocType.RESIDENCE_PERMIT, gb11643("820000", "20011231"), gb11643("820000", "20011231")),
        (DocType.RESIDENCE_PERMIT, gb11643("830000", "19700301"), gb11643("830000", "19700301")),
        (DocType.HK_MACAO_PERMIT, "H12345678", "H12345678"),
        (DocType.HK_MACAO_PERMIT, "M1234567801", "M1234567801"),
        (DocType.MACAO_ID, "12345678", "12345678"),
        (DocType.MACAO_ID, "51234567", "51234567"),
        (DocType.MACAO_ID, "71234567", "71234567"),
        (DocType.HKID, "A1234563", "A1234563"),
        (DocType.HKID, "G123456A", "G123456A"),
        (DocType.HKID, "AB9876543", "AB9876543"),
        (DocType.HKID, "A1000090", "A1000090"),
        (DocType.PASSPORT, "E12345678", "E12345678"),
        (DocType.PASSPORT, "K1234", "K1234"),
        (DocType.PASSPORT, "L898902C36", "L898902C3"),
        (DocType.PASSPORT, "D231458907", "D23145890"),
        (DocType.PASSPORT, "AB1234<<<1", "AB1234"),
    ],
)
def test_valid_documents(doc_type: DocType, raw: str, expected: str) -> None:
    assert validate_document(doc_type, raw, today=TODAY) == expected


def test_valid_without_explicit_today() -> None:
    assert validate_document(DocType.PRC_ID, "11010519491231002X") == "11010519491231002X"


@pytest.mark.parametrize(
    ("doc_type", "raw", "expected"),
    [
        ("hkid", "A123456(3)", "A1234563"),
        ("residence_permit", gb11643("810000", "19900101"), gb11643("810000", "19900101")),
    ],
)
def test_plain_string_doc_type_is_accepted(doc_type: str, raw: str, expected: str) -> None:
    # Values may arrive from JSON as plain strings rather than enum members.
    assert validate_document(doc_type, raw) == expected  # type: ignore[arg-type]


def test_plain_string_doc_type_error_path() -> None:
    with pytest.raises(DocumentError) as exc:
        validate_document("residence_permit", VALID_PRC)  # type: ignore[arg-type]
    assert_rejected(exc, "region")


def test_unknown_doc_type() -> None:
    with pytest.raises(ValueError, match="not a valid DocType"):
        validate_document("driving_licence", "12345678")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("doc_type", "raw"),
    [
        (DocType.PRC_ID, "11010519491231002X"),
        (DocType.HKID, "A123456(3)"),
        (DocType.MACAO_ID, "1234567(8)"),
        (DocType.PASSPORT, "L898902C36"),
        (DocType.PASSPORT, "AB1234<<<1"),
        (DocType.HK_MACAO_PERMIT, "h 1234 5678"),
    ],
)
def test_validation_is_idempotent(doc_type: DocType, raw: str) -> None:
    once = validate_document(doc_type, raw)
    assert validate_document(doc_type, once) == once


# --- normalisation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc_type", "raw", "expected"),
    [
        (DocType.HKID, "A123456(3)", "A1234563"),
        (DocType.HKID, " a123456(3) ", "A1234563"),
        (DocType.HKID, "AB987654(3)", "AB9876543"),
        (DocType.HKID, "G123456(a)", "G123456A"),
        (DocType.HKID, "A 123 456 (3)", "A1234563"),
        (DocType.HKID, "Ａ１２３４５６（３）", "A1234563"),  # full-width input method
        (DocType.MACAO_ID, "1234567(8)", "12345678"),
        (DocType.MACAO_ID, "1234567 (8)", "12345678"),
        (DocType.PRC_ID, "11010519491231002x", "11010519491231002X"),
        (DocType.PRC_ID, "110105 19491231 002X", "11010519491231002X"),
        (DocType.PRC_ID, "\t110105\u300019491231002X\n", "11010519491231002X"),
        (DocType.HK_MACAO_PERMIT, "h12345678", "H12345678"),
        (DocType.PASSPORT, "l898902c3<", "L898902C3<"),
        # Parentheses are only a printed convention on HKID and BIR cards.
        (DocType.PRC_ID, "1101051949123100(2)", "1101051949123100(2)"),
    ],
)
def test_normalize_doc_number(doc_type: DocType, raw: str, expected: str) -> None:
    assert normalize_doc_number(doc_type, raw) == expected


@pytest.mark.parametrize(
    ("doc_type", "printed", "expected"),
    [
        (DocType.HKID, "A123456(3)", "A1234563"),
        (DocType.HKID, "CA100002(A)", "CA100002A"),
        (DocType.MACAO_ID, "1234567(8)", "12345678"),
        (DocType.PRC_ID, "11010519491231002x", "11010519491231002X"),
    ],
)
def test_printed_forms_validate(doc_type: DocType, printed: str, expected: str) -> None:
    assert validate_document(doc_type, printed) == expected


def test_printed_and_mrz_passport_forms_agree() -> None:
    printed = validate_document(DocType.PASSPORT, "L898902C3")
    mrz = validate_document(DocType.PASSPORT, "L898902C36")
    assert printed == mrz == "L898902C3"


# --- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc_type", "raw", "reason"),
    [
        # PRC ID
        (DocType.PRC_ID, VALID_PRC[:-1], "format"),
        (DocType.PRC_ID, VALID_PRC + "1", "format"),
        (DocType.PRC_ID, VALID_PRC[:-1] + "Y", "format"),
        (DocType.PRC_ID, "X" + VALID_PRC[1:], "format"),
        (DocType.PRC_ID, "4403051990010112٣", "format"),  # non-ASCII digit
        (DocType.PRC_ID, "", "format"),
        (DocType.PRC_ID, flip_check(VALID_PRC, "0123456789X"), "check_digit"),
        (DocType.PRC_ID, flip_check("11010519491231002X", "0123456789X"), "check_digit"),
        (DocType.PRC_ID, gb11643("100105", "19900101"), "region"),
        (DocType.PRC_ID, gb11643("160105", "19900101"), "region"),
        (DocType.PRC_ID, gb11643("550105", "19900101"), "region"),
        (DocType.PRC_ID, gb11643("990105", "19900101"), "region"),
        (DocType.PRC_ID, gb11643("710000", "19900101"), "region"),
        (DocType.PRC_ID, gb11643("810000", "19900101"), "region"),
        (DocType.PRC_ID, gb11643("820000", "19900101"), "region"),
        (DocType.PRC_ID, gb11643("830000", "19900101"), "region"),
        (DocType.PRC_ID, gb11643("440305", "19990229"), "date"),  # not a leap year
        (DocType.PRC_ID, gb11643("440305", "19000229"), "date"),  # century, not a leap year
        (DocType.PRC_ID, gb11643("440305", "19901301"), "date"),
        (DocType.PRC_ID, gb11643("440305", "19900431"), "date"),
        (DocType.PRC_ID, gb11643("440305", "19900100"), "date"),
        (DocType.PRC_ID, gb11643("440305", "00000101"), "date"),
        (DocType.PRC_ID, gb11643("440305", "18991231"), "date"),
        (DocType.PRC_ID, "440524188001010014", "date"),  # GB 11643 sample, born before 1900
        (DocType.PRC_ID, gb11643("440305", "20240616"), "date"),  # the day after TODAY
        # Residence permit
        (DocType.RESIDENCE_PERMIT, VALID_PERMIT[:-1], "format"),
        (DocType.RESIDENCE_PERMIT, flip_check(VALID_PERMIT, "0123456789X"), "check_digit"),
        (DocType.RESIDENCE_PERMIT, VALID_PRC, "region"),
        (DocType.RESIDENCE_PERMIT, gb11643("810001", "19900101"), "region"),
        (DocType.RESIDENCE_PERMIT, gb11643("840000", "19900101"), "region"),
        (DocType.RESIDENCE_PERMIT, gb11643("710000", "19900101"), "region"),
        (DocType.RESIDENCE_PERMIT, gb11643("810000", "20230229"), "date"),
        (DocType.RESIDENCE_PERMIT, gb11643("810000", "20240616"), "date"),
        # Mainland Travel Permit for HK and Macao residents
        (DocType.HK_MACAO_PERMIT, "H1234567", "format"),
        (DocType.HK_MACAO_PERMIT, "H123456789", "format"),  # renewal count has two digits
        (DocType.HK_MACAO_PERMIT, "H123456789012", "format"),
        (DocType.HK_MACAO_PERMIT, "T12345678", "format"),
        (DocType.HK_MACAO_PERMIT, "12345678", "format"),
        (DocType.HK_MACAO_PERMIT, "H1234567A", "format"),
        # Macao BIR
        (DocType.MACAO_ID, "22345678", "format"),
        (DocType.MACAO_ID, "1234567", "format"),
        (DocType.MACAO_ID, "123456789", "format"),
        (DocType.MACAO_ID, "1234567A", "format"),
        (DocType.MACAO_ID, "123456(78)", "format"),
        # HKID
        (DocType.HKID, "A123456", "format"),
        (DocType.HKID, "ABC1234563", "format"),
        (DocType.HKID, "A12345B3", "format"),
        (DocType.HKID, "A123456B", "format"),
        (DocType.HKID, "1234563", "format"),
        (DocType.HKID, "A123456(3", "format"),
        (DocType.HKID, flip_check("A1234563", "0123456789A"), "check_digit"),
        (DocType.HKID, "A123456(4)", "check_digit"),
        (DocType.HKID, flip_check("G123456A", "0123456789A"), "check_digit"),
        (DocType.HKID, flip_check("AB9876543", "0123456789A"), "check_digit"),
        (DocType.HKID, flip_check("A1000090", "0123456789A"), "check_digit"),
        # Passport
        (DocType.PASSPORT, "K123", "format"),
        (DocType.PASSPORT, "E1234-678", "format"),
        (DocType.PASSPORT, "L898902C3<6", "format"),  # 11 characters
        (DocType.PASSPORT, "L898902C3<", "format"),  # filler where the check digit belongs
        (DocType.PASSPORT, "L898902C3X", "format"),  # check digit must be a digit
        (DocType.PASSPORT, "<<<<<<<<<0", "format"),
        (DocType.PASSPORT, "AB<1234<<1", "format"),  # filler inside the number
        (DocType.PASSPORT, "AB12<<<<<6", "format"),  # shorter than a printed number can be
        (DocType.PASSPORT, "AB1234<<<", "format"),  # MRZ field without its check digit
        (DocType.PASSPORT, "L898902C35", "check_digit"),
        (DocType.PASSPORT, flip_check("D231458907", "0123456789"), "check_digit"),
        (DocType.PASSPORT, flip_check("AB1234<<<1", "0123456789"), "check_digit"),
    ],
)
def test_rejections(doc_type: DocType, raw: str, reason: str) -> None:
    with pytest.raises(DocumentError) as exc:
        validate_document(doc_type, raw, today=TODAY)
    assert_rejected(exc, reason)


@pytest.mark.parametrize("region", ["710000", "810000", "820000", "830000"])
def test_permit_region_on_prc_id_points_to_residence_permit(region: str) -> None:
    with pytest.raises(DocumentError) as exc:
        validate_document(DocType.PRC_ID, gb11643(region, "19900101"), today=TODAY)
    assert_rejected(exc, "region")
    assert "residence permit" in exc.value.message


def test_future_date_with_default_today() -> None:
    with pytest.raises(DocumentError) as exc:
        validate_document(DocType.PRC_ID, gb11643("440305", "29990101"))
    assert_rejected(exc, "date")


@pytest.mark.parametrize(
    ("doc_type", "number", "birth_date"),
    [
        (DocType.PRC_ID, "11010519491231002X", datetime.date(1949, 12, 31)),
        (DocType.RESIDENCE_PERMIT, VALID_PERMIT, datetime.date(1990, 1, 1)),
        # Documents without an embedded date cannot contradict the birth date given.
        (DocType.HKID, "A1234563", datetime.date(1990, 1, 1)),
        (DocType.PASSPORT, "L898902C3", datetime.date(1990, 1, 1)),
    ],
)
def test_birth_date_match(doc_type: DocType, number: str, birth_date: datetime.date) -> None:
    assert validate_document(doc_type, number, birth_date) == number


@pytest.mark.parametrize(
    ("doc_type", "number", "birth_date"),
    [
        (DocType.PRC_ID, "11010519491231002X", datetime.date(1949, 12, 30)),
        (DocType.PRC_ID, "11010519491231002X", datetime.date(1950, 12, 31)),
        (DocType.RESIDENCE_PERMIT, VALID_PERMIT, datetime.date(1990, 1, 2)),
    ],
)
def test_birth_date_mismatch(doc_type: DocType, number: str, birth_date: datetime.date) -> None:
    with pytest.raises(DocumentError) as exc:
        validate_document(doc_type, number, birth_date)
    assert_rejected(exc, "birth_date_mismatch", field="birth_date")


def test_number_errors_win_over_birth_date_mismatch() -> None:
    # A wrong check digit means the embedded date cannot be trusted, so it is reported first.
    wrong = flip_check("11010519491231002X", "0123456789X")
    with pytest.raises(DocumentError) as exc:
        validate_document(DocType.PRC_ID, wrong, datetime.date(2000, 1, 1))
    assert_rejected(exc, "check_digit")


def test_error_message_does_not_echo_the_number() -> None:
    wrong = flip_check("11010519491231002X", "0123456789X")
    with pytest.raises(DocumentError) as exc:
        validate_document(DocType.PRC_ID, wrong)
    assert "1101051949" not in str(exc.value)
    assert "PRC resident ID" in str(exc.value)


def test_document_error_survives_pickling() -> None:
    error = DocumentError("birth_date", "birth_date_mismatch", "The birth date does not match.")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert isinstance(copy, DocumentError)
    assert (copy.field, copy.reason, copy.message) == (error.field, error.reason, error.message)
    assert str(copy) == "The birth date does not match."


def test_doc_type_values() -> None:
    assert [t.value for t in DocType] == [
        "prc_id",
        "residence_permit",
        "hk_macao_permit",
        "macao_id",
        "hkid",
        "passport",
    ]


def _plain_candidates() -> list[str]:
    """Valid PRC IDs and every one-character change of them, plus other shapes and documents."""
    valid = [
        VALID_PRC,
        "11010519491231002X",  # GB 11643-1999 sample
        gb11643("110105", "19000101"),
        gb11643("110105", TODAY.strftime("%Y%m%d")),
        gb11643("110105", (TODAY + datetime.timedelta(days=1)).strftime("%Y%m%d")),
        gb11643("110105", "18991231"),
        gb11643("110105", "20000229"),
        gb11643("110105", "19000229"),
        gb11643("650105", "19800101"),
        VALID_PERMIT,
    ]
    candidates = [*valid, VALID_PRC + "0", VALID_PRC[:17], "", " " + VALID_PRC, "A1234563"]
    for number in valid:
        candidates.append(number.lower())
        for i, replacement in itertools.product(range(18), "0139Xx A９"):
            candidates.append(number[:i] + replacement + number[i + 1 :])
    return candidates


@pytest.mark.parametrize("doc_type", list(DocType))
def test_plainly_valid_agrees_with_validate_document(doc_type: DocType) -> None:
    taken = 0
    for raw in _plain_candidates():
        plain = plainly_valid(doc_type, raw, TODAY)
        try:
            expected: str | None = validate_document(doc_type, raw, today=TODAY)
        except DocumentError:
            expected = None
        if plain is not None:
            taken += 1
            assert plain == expected, raw
    if doc_type is DocType.PRC_ID:
        assert taken > 10
    else:
        assert taken == 0  # only PRC IDs have a plain path


def test_plainly_valid_takes_canonical_prc_ids() -> None:
    assert plainly_valid(DocType.PRC_ID, VALID_PRC, TODAY) == VALID_PRC
    assert plainly_valid(DocType.PRC_ID, "11010519491231002X", TODAY) == "11010519491231002X"
    assert plainly_valid(DocType.PRC_ID, "11010519491231002x", TODAY) == "11010519491231002X"


# Every province of GB/T 2260 issues resident IDs, and no other two-digit code does: a typo in
# the table (Tianjin 12 written 13) would refuse a whole province.
PROVINCES = {
    "11": "110101", "12": "120101", "13": "130102", "14": "140105", "15": "150102",
    "21": "210102", "22": "220102", "23": "230102", "31": "310101", "32": "320102",
    "33": "330102", "34": "340102", "35": "350102", "36": "360102", "37": "370102",
    "41": "410102", "42": "420102", "43": "430102", "44": "440103", "45": "450102",
    "46": "460105", "50": "500101", "51": "510104", "52": "520102", "53": "530102",
    "54": "540102", "61": "610102", "62": "620102", "63": "630102", "64": "640104",
    "65": "650102",
}  # fmt: skip


def _prc(region: str, birth: datetime.date, serial: str = "123") -> str:
    body = region + birth.strftime("%Y%m%d") + serial
    return body + mod11_2_check(body)


@pytest.mark.parametrize(("province", "region"), sorted(PROVINCES.items()))
def test_every_province_issues_resident_ids(province: str, region: str) -> None:
    birth = datetime.date(1990, 5, 6)
    assert validate_document(DocType.PRC_ID, _prc(region, birth), birth, today=TODAY)


@pytest.mark.parametrize("province", [f"{p:02d}" for p in range(100)])
def test_no_other_two_digits_start_a_resident_id(province: str) -> None:
    if province in PROVINCES:
        return
    with pytest.raises(DocumentError) as refused:
        validate_document(DocType.PRC_ID, _prc(province + "0101", datetime.date(1990, 5, 6)), None,
                          today=TODAY)  # fmt: skip
    assert refused.value.reason in ("region", "format")


@pytest.mark.parametrize(
    ("doc_type", "number"),
    [
        (DocType.HKID, "A1234563"),
        (DocType.PASSPORT, "E12345678"),
        (DocType.HK_MACAO_PERMIT, "H12345678"),
        (DocType.MACAO_ID, "12345678"),
    ],
)
def test_no_document_holder_is_born_tomorrow(doc_type: DocType, number: str) -> None:
    with pytest.raises(DocumentError) as refused:
        validate_document(doc_type, number, TODAY + datetime.timedelta(days=1), today=TODAY)
    assert (refused.value.field, refused.value.reason) == ("birth_date", "date")
    assert validate_document(doc_type, number, TODAY, today=TODAY)


def test_today_is_guangdong_s_day() -> None:
    # 16:00 UTC is midnight in Guangdong: the local day changes then, not at 00:00 UTC.
    before = datetime.datetime(2026, 12, 7, 15, 59, 59, tzinfo=datetime.UTC)
    after = datetime.datetime(2026, 12, 7, 16, 0, 0, tzinfo=datetime.UTC)
    assert (local_date(before), local_date(after)) == (
        datetime.date(2026, 12, 7),
        datetime.date(2026, 12, 8),
    )


@pytest.mark.parametrize(
    ("doc_type", "number", "message"),
    [
        (DocType.RESIDENCE_PERMIT, gb11643("440305", "19900101"),
         "A residence permit number must start with 810000, 820000 or 830000."),
        (DocType.PRC_ID, gb11643("810000", "19900101"),
         "This region code is used by residence permits, not PRC resident IDs."),
        (DocType.PRC_ID, gb11643("990101", "19900101"),
         "The PRC resident ID number has an unknown region code."),
    ],
)  # fmt: skip
def test_what_a_resident_reads_about_a_region_code(
    doc_type: DocType, number: str, message: str
) -> None:
    with pytest.raises(DocumentError) as refused:
        validate_document(doc_type, number, today=TODAY)
    assert (refused.value.field, refused.value.reason, refused.value.message) == (
        "doc_number", "region", message
    )  # fmt: skip
    assert str(refused.value) == message


def test_what_a_resident_reads_about_a_birth_date_in_the_future() -> None:
    with pytest.raises(DocumentError) as refused:
        validate_document(DocType.HKID, "A1234563", TODAY + datetime.timedelta(days=1), today=TODAY)
    assert refused.value.message == "in the future"


@pytest.mark.parametrize(
    "birth", [datetime.date(1900, 1, 1), TODAY], ids=["first-day-of-1900", "born-today"]
)
def test_the_oldest_and_the_newest_resident_ids_are_plainly_valid(birth: datetime.date) -> None:
    number = _prc("440305", birth)

    assert plainly_valid(DocType.PRC_ID, number, TODAY) == number
    assert validate_document(DocType.PRC_ID, number, today=TODAY) == number


def test_a_passport_number_ending_in_x_keeps_it_when_read_from_the_mrz() -> None:
    # Only the '<' filler is stripped from the MRZ field, never a final letter of the number.
    field = "G1234567X"
    assert validate_document(DocType.PASSPORT, field + icao_check(field), today=TODAY) == field


def test_normalize_takes_a_document_type_given_as_text() -> None:
    assert normalize_doc_number("hkid", "a123456(3)") == "A1234563"  # type: ignore[arg-type]
