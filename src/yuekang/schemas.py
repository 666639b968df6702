"""Shared pydantic pieces: a strict base for request bodies and the error body."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator

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
    code: str
    message: str
    fields: list[ErrorField] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
