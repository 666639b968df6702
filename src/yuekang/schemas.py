"""Shared pydantic pieces: a strict base for request bodies and the error body."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, field_validator

from yuekang.errorcodes import ERROR_CODES

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")
"""An ``Idempotency-Key``: 1-128 printable ASCII characters, no spaces (use with fullmatch)."""


def _storable_instant(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("a time needs a UTC offset (Z or +08:00)")
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+01:00 is in year 0 once in UTC, which Python cannot hold.
        raise ValueError("a time between the years 1900 and 9998") from None
    if not 1900 <= utc.year <= 9998:
        raise ValueError("a time between the years 1900 and 9998")
    return utc


Instant = Annotated[dt.datetime, AfterValidator(_storable_instant)]
"""A time from a request: with its UTC offset, converted to UTC, and within the years a column
and the arithmetic around it can hold (a time near year 1 or 9999 overflows once moved)."""


# Printable by Unicode's categories, yet drawn as nothing: Hangul fillers, the combining
# grapheme joiner, the braille blank, Mongolian and ordinary variation selectors (in a name; an
# emoji in free text may carry VS16).
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u034f\u2800\u180b\u180c\u180d\u180f")
_SELECTORS = frozenset(chr(c) for c in range(0xFE00, 0xFE10))


def _invisible(line: str, spacing: str = "", allowed: frozenset[str] = frozenset()) -> str | None:
    """The first character of ``line`` that is not printable: controls, formatting marks such as
    U+202E (RIGHT-TO-LEFT OVERRIDE, which turns "gpj.exe" around on screen) or U+200B (ZERO
    WIDTH SPACE, which makes two equal-looking names differ), and printable blanks."""
    return next(
        (
            ch
            for ch in line
            if ch not in spacing
            and ch not in allowed
            and (not ch.isprintable() or ch in _BLANK or ch in _SELECTORS)
        ),
        None,
    )


def _refuse(ch: str) -> None:
    raise ValueError(
        f"text must not contain control or invisible formatting characters (U+{ord(ch):04X})"
    )


def _plain_line(value: str) -> str:
    if (ch := _invisible(value, spacing="\t\r\n")) is not None:
        _refuse(ch)
    return " ".join(value.split())


def _plain_text(value: str) -> str:
    lines = value.replace("\r\n", "\n").replace("\t", " ").split("\n")
    for line in lines:
        if (ch := _invisible(line, allowed=_SELECTORS)) is not None:
            _refuse(ch)
    return "\n".join(line.rstrip() for line in lines).strip()


PlainLine = Annotated[str, AfterValidator(_plain_line)]
"""One line of text people will read (a name, a place): printable characters only, runs of
spaces, tabs and line breaks made one space. Staff read these; a bidirectional override or a
zero-width character would make them show something other than what is stored."""

PlainText = Annotated[str, AfterValidator(_plain_text)]
"""Free text people will read (an appeal, a reason): lines of printable characters (a tab is a
space, CRLF a line break), for the same reason as :data:`PlainLine`."""


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped, and no string may carry
    what a database cannot store (NUL, lone surrogates from ``"\\ud800"`` escapes)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError("text must not contain NUL characters")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError("text must be valid Unicode (no lone surrogates)") from exc
        return value


class ErrorField(BaseModel):
    field: str
    reason: str
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(
        description="Stable and machine-readable (docs/API.md, docs/EXCHANGE.md): one of the list",
        json_schema_extra={"enum": cast("list[JsonValue]", sorted(ERROR_CODES))},
    )
    message: str
    fields: list[ErrorField] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
