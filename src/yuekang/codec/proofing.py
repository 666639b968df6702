"""The identity-proofing wire format, version 1 (``YKP1``): how the service asks an identity
registry whether a person exists and whether a phone is registered to them.

The registry is the authority's service (population data, the carriers' real-name subscriber
registrations, see docs/IDENTITY.md); the service sends the minimum and gets back match / no
match, never a record. One call::

    POST /v1/checks
    Content-Type: application/json
    Yuekang-Client: yk-gd
    Yuekang-Date: 1764100000
    Yuekang-Nonce: 3q2-7wX0a1b2c3d4e5f6g7
    Yuekang-Signature: v1=<base64url HMAC-SHA256(client secret, request signing string)>

    {"check_id":"<uuid>","purpose":"bind","person":{"name":"张小三","doc_type":"prc_id",
     "doc_number":"11010519491231002X","birth_date":"1949-12-31"},"phone":"+8613800138000"}

    200 OK
    Yuekang-Signature: v1=<base64url HMAC-SHA256(client secret, response signing string)>

    {"check_id":"<uuid>","identity":"match","phone":"match","checked_at":1764100000}

Signing strings, UTF-8, lines joined by ``\\n``::

    request:  YKP1-REQ, method, path, client, date, nonce, base64url(SHA-256(body))
    response: YKP1-RES, status, nonce, base64url(SHA-256(body))

The response's signature covers the request's nonce, so a "match" recorded from one check cannot
answer another; the request's covers method, path, client, time and body, and the registry refuses
a date more than :data:`MAX_SKEW_SECONDS` away from its clock and a nonce it has seen.

``purpose`` says why the check is made (``bind``: a resident binds their own document;
``dependant``: a guardian adds a family member; ``recheck``: whether a phone is still registered
to a document's holder; ``counter``: staff check a document in person). ``phone`` is null when
no carrier check is asked for. Answers: ``identity`` is ``match`` when a record with exactly
this document, name and birth date exists; ``phone`` is ``match`` when the number is registered
to that person, ``no_match`` when it is registered to nobody or somebody else, ``unsupported``
when the registry cannot check numbers of that country, and ``not_requested`` without a phone.

Errors are ``{"error": {"code": ..., "message": ...}}`` with 400 (``malformed``), 401
(``unknown_client``, ``bad_signature``, ``stale_date``, ``replayed_nonce``), 413, 429 (with
``Retry-After``) and 503.

Pure: no network, no clock; callers pass times and secrets.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Final, Literal

PATH: Final = "/v1/checks"
CLIENT_HEADER: Final = "Yuekang-Client"
DATE_HEADER: Final = "Yuekang-Date"
NONCE_HEADER: Final = "Yuekang-Nonce"
SIGNATURE_HEADER: Final = "Yuekang-Signature"
MAX_SKEW_SECONDS: Final = 300
"""A request dated further than this from the registry's clock is refused (``stale_date``)."""
NONCE_TTL_SECONDS: Final = 2 * MAX_SKEW_SECONDS
"""How long a registry must remember a nonce: any request older than this is stale anyway."""
MAX_BODY_BYTES: Final = 4096

Purpose = Literal["bind", "dependant", "recheck", "counter"]
PURPOSES: Final[tuple[Purpose, ...]] = ("bind", "dependant", "recheck", "counter")
IdentityAnswer = Literal["match", "no_match"]
PhoneAnswer = Literal["match", "no_match", "unsupported", "not_requested"]
PHONE_ANSWERS: Final[tuple[PhoneAnswer, ...]] = (
    "match",
    "no_match",
    "unsupported",
    "not_requested",
)
DOC_TYPES: Final = frozenset(
    {"prc_id", "residence_permit", "hk_macao_permit", "macao_id", "hkid", "passport"}
)

_NONCE_RE: Final = re.compile(r"[A-Za-z0-9_-]{16,64}")
_CLIENT_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_PHONE_RE: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_DOC_NUMBER_RE: Final = re.compile(r"[A-Z0-9()]{1,32}")


class ProofingProtocolError(Exception):
    """A message that does not follow this format. ``code`` is the wire error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def body_digest(body: bytes) -> str:
    return _b64(hashlib.sha256(body).digest())


def _mac(secret: bytes, lines: list[str]) -> str:
    return "v1=" + _b64(hmac.new(secret, "\n".join(lines).encode("utf-8"), "sha256").digest())


def request_signature(
    secret: bytes, *, method: str, path: str, client: str, date: int, nonce: str, body: bytes
) -> str:
    """The ``Yuekang-Signature`` of a request."""
    return _mac(
        secret,
        ["YKP1-REQ", method.upper(), path, client, str(date), nonce, body_digest(body)],
    )


def response_signature(secret: bytes, *, status: int, nonce: str, body: bytes) -> str:
    """The ``Yuekang-Signature`` of a response to the request that carried ``nonce``."""
    return _mac(secret, ["YKP1-RES", str(status), nonce, body_digest(body)])


def signature_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def check_headers(
    *, client: str | None, date: str | None, nonce: str | None, now: int
) -> tuple[str, int, str]:
    """The request's client, date and nonce, well formed and the date within the skew; raises
    :class:`ProofingProtocolError` otherwise. The signature is checked by the caller, who knows
    the client's secret."""
    if client is None or not _CLIENT_RE.fullmatch(client):
        raise ProofingProtocolError("unknown_client", f"{CLIENT_HEADER} is missing or malformed")
    if nonce is None or not _NONCE_RE.fullmatch(nonce):
        raise ProofingProtocolError("malformed", f"{NONCE_HEADER} must be 16-64 base64url chars")
    if date is None or not date.isascii() or not date.isdigit() or len(date) > 12:
        raise ProofingProtocolError("malformed", f"{DATE_HEADER} must be integer UTC seconds")
    when = int(date)
    if abs(when - now) > MAX_SKEW_SECONDS:
        raise ProofingProtocolError("stale_date", "the request's date is too far from ours")
    return client, when, nonce


@dataclass(frozen=True, slots=True)
class Person:
    """What is compared with the population register: nothing more is ever sent."""

    name: str
    doc_type: str
    doc_number: str
    birth_date: dt.date


@dataclass(frozen=True, slots=True)
class CheckRequest:
    check_id: str
    purpose: Purpose
    person: Person
    phone: str | None

    def to_json(self) -> bytes:
        body = {
            "check_id": self.check_id,
            "purpose": self.purpose,
            "person": {
                "name": self.person.name,
                "doc_type": self.person.doc_type,
                "doc_number": self.person.doc_number,
                "birth_date": self.person.birth_date.isoformat(),
            },
            "phone": self.phone,
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True, slots=True)
class CheckAnswer:
    check_id: str
    identity: IdentityAnswer
    phone: PhoneAnswer
    checked_at: int

    def to_json(self) -> bytes:
        body = {
            "check_id": self.check_id,
            "identity": self.identity,
            "phone": self.phone,
            "checked_at": self.checked_at,
        }
        return json.dumps(body, separators=(",", ":")).encode("ascii")


def _object(body: bytes, what: str) -> dict[str, Any]:
    if len(body) > MAX_BODY_BYTES:
        raise ProofingProtocolError(
            "malformed", f"the {what} is larger than {MAX_BODY_BYTES} bytes"
        )
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ProofingProtocolError("malformed", f"the {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise ProofingProtocolError("malformed", f"the {what} is not a JSON object")
    return value


def _text(value: object, name: str, *, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ProofingProtocolError("malformed", f"{name} must be a string of 1-{limit} chars")
    if any(not ch.isprintable() for ch in value):
        raise ProofingProtocolError("malformed", f"{name} holds control characters")
    return value


def _check_id(value: object) -> str:
    text = _text(value, "check_id", limit=36)
    try:
        canonical = str(uuid.UUID(text))
    except ValueError as exc:
        raise ProofingProtocolError("malformed", "check_id must be a UUID") from exc
    # Only the canonical spelling: the answer must carry exactly the id the client sent.
    if canonical != text:
        raise ProofingProtocolError("malformed", "check_id must be a lowercase hyphenated UUID")
    return text


def parse_check_request(body: bytes) -> CheckRequest:
    """A request body, checked; raises :class:`ProofingProtocolError` (``malformed``)."""
    raw = _object(body, "request")
    person = raw.get("person")
    if not isinstance(person, dict):
        raise ProofingProtocolError("malformed", "person must be an object")
    purpose = raw.get("purpose")
    if purpose not in PURPOSES:
        raise ProofingProtocolError("malformed", f"purpose must be one of {', '.join(PURPOSES)}")
    doc_type = person.get("doc_type")
    if not isinstance(doc_type, str) or doc_type not in DOC_TYPES:
        raise ProofingProtocolError("malformed", "person.doc_type is not a known document type")
    doc_number = _text(person.get("doc_number"), "person.doc_number", limit=32)
    if not _DOC_NUMBER_RE.fullmatch(doc_number):
        raise ProofingProtocolError("malformed", "person.doc_number is not a normalised number")
    try:
        birth_date = dt.date.fromisoformat(_text(person.get("birth_date"), "birth_date", limit=10))
    except ValueError as exc:
        raise ProofingProtocolError("malformed", "person.birth_date must be YYYY-MM-DD") from exc
    phone = raw.get("phone")
    if phone is not None and (not isinstance(phone, str) or not _PHONE_RE.fullmatch(phone)):
        raise ProofingProtocolError("malformed", "phone must be an E.164 number or null")
    return CheckRequest(
        check_id=_check_id(raw.get("check_id")),
        purpose=purpose,
        person=Person(
            name=_text(person.get("name"), "person.name", limit=64),
            doc_type=doc_type,
            doc_number=doc_number,
            birth_date=birth_date,
        ),
        phone=phone,
    )


def parse_check_answer(body: bytes, *, check_id: str) -> CheckAnswer:
    """An answer body for the check ``check_id``; raises :class:`ProofingProtocolError`."""
    raw = _object(body, "answer")
    if raw.get("check_id") != check_id:
        raise ProofingProtocolError("malformed", "the answer is for another check")
    identity, phone, checked_at = raw.get("identity"), raw.get("phone"), raw.get("checked_at")
    if identity not in ("match", "no_match"):
        raise ProofingProtocolError("malformed", "identity must be match or no_match")
    if phone not in PHONE_ANSWERS:
        raise ProofingProtocolError("malformed", f"phone must be one of {', '.join(PHONE_ANSWERS)}")
    if not isinstance(checked_at, int) or isinstance(checked_at, bool) or checked_at < 0:
        raise ProofingProtocolError("malformed", "checked_at must be integer UTC seconds")
    return CheckAnswer(check_id=check_id, identity=identity, phone=phone, checked_at=checked_at)


@dataclass(frozen=True, slots=True)
class Subscription:
    """A carrier's real-name registration: this number belongs to the holder of this document."""

    phone: str
    doc_type: str
    doc_number: str
    name: str


CARRIER_COUNTRY_CODES: Final = ("+86",)
"""The carriers' real-name registrations cover mainland numbers only (docs/IDENTITY.md)."""


def same_name(a: str, b: str) -> bool:
    """Names compare after collapsing whitespace and folding case (``Chan Tai Man`` written
    ``CHAN  TAI MAN`` is the same name); nothing fuzzier, or a near miss would pass."""
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def judge(
    request: CheckRequest, record: Person | None, subscription: Subscription | None
) -> tuple[IdentityAnswer, PhoneAnswer]:
    """A registry's answer to ``request``, given the register's record for the document (or
    None) and the carrier's registration of the phone (or None). The rule a registry implements;
    the reference registry and the in-memory fake both answer with it."""
    person = request.person
    identity: IdentityAnswer = (
        "match"
        if record is not None
        and record.doc_type == person.doc_type
        and record.doc_number == person.doc_number
        and record.birth_date == person.birth_date
        and same_name(record.name, person.name)
        else "no_match"
    )
    if request.phone is None:
        return identity, "not_requested"
    if not request.phone.startswith(CARRIER_COUNTRY_CODES):
        return identity, "unsupported"
    phone: PhoneAnswer = (
        "match"
        if subscription is not None
        and subscription.phone == request.phone
        and subscription.doc_type == person.doc_type
        and subscription.doc_number == person.doc_number
        and same_name(subscription.name, person.name)
        else "no_match"
    )
    return identity, phone


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()
