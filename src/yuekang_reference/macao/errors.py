"""The reference Macao system's refusals: a :class:`PartnerError` carries the status and error
code of EXCHANGE.md section 7, and ``app.py`` renders it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from yuekang.residents.documents import DocumentError


class PartnerError(Exception):
    """A refusal, rendered as ``{"error": {"code", "message", ...}}`` plus ``extra`` members."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: Sequence[Mapping[str, str]] = (),
        detail: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)
        self.detail = dict(detail) if detail else None
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        if self.detail:
            error["detail"] = self.detail
        return {**self.extra, "error": error}


def document_error(exc: DocumentError) -> PartnerError:
    """A document number refused, naming the field (a declaration's, or a transfer's)."""
    return PartnerError(
        422,
        "invalid_document",
        exc.message,
        fields=[{"field": exc.field, "reason": exc.reason, "message": exc.message}],
    )
