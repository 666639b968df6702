"""Shared pydantic pieces: a strict base for request bodies and the error body."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")
"""An ``Idempotency-Key``: 1-128 printable ASCII characters, no spaces (use with fullmatch)."""


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
