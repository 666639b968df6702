"""The exchange's wire messages (docs/EXCHANGE.md, section 2), built and parsed in one place.

A conversion request is the same message in both directions and with every partner: Guangdong
builds it in the outbox, the reference partner systems build it when they send to us, both sides
parse it when it arrives, and the test kits build theirs with the same function. Pure: pydantic
and the standard library, no database, no clock.

What a message must look like is decided here once; what a side then requires of it (which
fields its consent must name, whether the test is recent enough) is that side's policy.

- ``subject.phone`` is required and E.164: the recipient gives the person an account with it,
  and a consent names all seven fields (``consent_gaps``).
- Dates are ``YYYY-MM-DD`` text and nothing else: pydantic alone would take ``20261124`` or a
  number of seconds for a date, which the other side would not.
- A name is one printable line; runs of blanks become one space (as :data:`PlainLine` does for
  names people type) and invisible characters are refused, since staff read it masked.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
)

from yuekang.schemas import PlainLine

TYP: Final = "conversion.request"
PURPOSE: Final = "health-code-conversion"
CONSENT_TEXT_VERSION: Final = "2020-05.1"
FIELDS: Final = ("name", "document", "birth_date", "phone", "status", "nat", "travel")
"""Everything a conversion request carries, named as a consent names it."""
E164: Final = r"^\+[1-9][0-9]{6,14}$"


class MessageMalformed(ValueError):
    """A message that is not what the protocol says; ``fields`` names what is wrong, in the shape
    of our error bodies (field, reason, message), and ``code`` is the error code to answer."""

    def __init__(
        self,
        message: str,
        fields: list[dict[str, str]] | None = None,
        *,
        code: str = "package_malformed",
    ) -> None:
        super().__init__(message)
        self.fields = fields or []
        self.code = code


def _iso_date(value: Any) -> Any:
    if not isinstance(value, str | dt.date) or (
        isinstance(value, str)
        and not (len(value) == 10 and value[4] == "-" and value[7] == "-" and value.isascii())
    ):
        raise ValueError("a date is written YYYY-MM-DD")
    return value


Date = Annotated[dt.date, BeforeValidator(_iso_date)]


class _Message(BaseModel):
    # Unknown members are ignored: a partner may add to a message before we read the addition.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Subject(_Message):
    name: PlainLine = Field(min_length=1, max_length=100)
    doc_type: str = Field(min_length=1, max_length=32)
    """In the exchange vocabulary (section 6), mapped to each side's own types by its table."""
    doc_number: str = Field(min_length=1, max_length=32)
    birth_date: Date
    phone: str = Field(pattern=E164)


class Source(_Message):
    code: str = Field(min_length=1, max_length=4096)


class Nat(_Message):
    sampled_on: Date
    result: Literal["negative", "positive"]


class Travel(_Message):
    outside_region_14d: StrictBool


class Consent(_Message):
    id: str = Field(min_length=1, max_length=64)
    granted_at: StrictInt = Field(ge=0)
    recipient: str = Field(min_length=1, max_length=64)
    purpose: str = Field(min_length=1, max_length=64)
    text_version: str = Field(min_length=1, max_length=32)
    fields: list[str] = Field(max_length=32)


class ConversionRequest(_Message):
    """The body of a conversion request; the package's own claims (iss, aud, iat, exp, jti) are
    checked by :func:`yuekang.codec.exchange.open_package`."""

    typ: Literal["conversion.request"] = TYP
    cid: str = Field(min_length=1, max_length=64)
    subject: Subject
    source: Source
    nat: Nat | None
    travel: Travel
    consent: Consent


def conversion_claims(
    request: ConversionRequest, *, iss: str, aud: str, iat: int, exp: int, jti: str
) -> dict[str, Any]:
    """The claims to seal for ``request``: the package's envelope and the request's members."""
    return {
        "iss": iss,
        "aud": aud,
        "iat": iat,
        "exp": exp,
        "jti": jti,
        **request.model_dump(mode="json"),
    }


def parse_request(claims: Any) -> ConversionRequest:
    """The conversion request in an opened package's claims; :class:`MessageMalformed` naming
    at most twenty problems when it is not one."""
    try:
        return ConversionRequest.model_validate(claims)
    except ValidationError as exc:
        raise MessageMalformed(
            "the package is not a conversion request",
            [
                {
                    "field": ".".join(str(p) for p in error["loc"]),
                    "reason": error["type"],
                    "message": error["msg"],
                }
                for error in exc.errors()[:20]
            ],
        ) from exc


def consent_gaps(*, named: str, purpose: str, fields: list[str], recipient: str) -> list[str]:
    """What a consent lacks for this transfer, either way: the right recipient (``named`` is the
    one it names), the purpose, or any of the fields a request carries."""
    missing = [] if named == recipient else ["recipient"]
    if purpose != PURPOSE:
        missing.append("purpose")
    return missing + [f for f in FIELDS if f not in fields]


def package_body(package: str) -> bytes:
    """The JSON body of a direct call carrying ``package``."""
    return json.dumps({"package": package}, separators=(",", ":")).encode()


def package_of(body: bytes) -> str:
    """The package in a direct call's JSON body."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MessageMalformed("the request body is not valid JSON", code="malformed_json") from exc
    package = document.get("package") if isinstance(document, dict) else None
    if not isinstance(package, str):
        raise MessageMalformed('the body must be {"package": "<JWE>"}')
    return package
