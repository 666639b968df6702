"""The one error family of the service, rendered by one handler as a stable JSON body::

    {"error": {"code": "otp_expired", "message": "...", "fields": [...]}}

``code`` is machine-readable and stable (see docs/API.md); ``message`` is for people. Pure
libraries (codec, verifier, documents) raise their own errors, which services translate.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from yuekang import metrics
from yuekang.db import database_unavailable

log = logging.getLogger("yuekang")


class YuekangError(Exception):
    status_code: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: Sequence[Mapping[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.fields = list(fields)
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        return {"error": error}

    def response(self) -> JSONResponse:
        """The error as it is answered: ``{"error": ...}`` with its status and headers."""
        return JSONResponse(self.body(), status_code=self.status_code, headers=self.headers)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refusal whose cause must be kept: a wrong sign-in code counted against its challenge,
    an attempted transfer audited, a replayed package remembered.

    Returned, never raised. Raising always means rollback (``db.transaction``), so whether a
    refusal is saved cannot depend on what catches it on the way up; the service returns this
    value instead, the request's transaction commits as for any answer (its after-commit
    actions run), and the endpoint answers :meth:`response`."""

    error: YuekangError

    def response(self) -> JSONResponse:
        return self.error.response()


class BadRequest(YuekangError):
    status_code = 400
    code = "bad_request"


class Unauthorized(YuekangError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class Forbidden(YuekangError):
    status_code = 403
    code = "forbidden"


class NotFound(YuekangError):
    status_code = 404
    code = "not_found"


class Conflict(YuekangError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(YuekangError):
    status_code = 413
    code = "payload_too_large"


class ValidationFailed(YuekangError):
    status_code = 422
    code = "validation_error"


class UnsupportedMediaType(YuekangError):
    status_code = 415
    code = "unsupported_media_type"


class TooManyRequests(YuekangError):
    status_code = 429
    code = "rate_limited"


class ServiceUnavailable(YuekangError):
    status_code = 503
    code = "unavailable"


# Deadlock, serialization failure, lock not available: the transaction was rolled back whole and
# the same request can simply be sent again.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001", "55P03"})


def _retryable(exc: BaseException) -> bool:
    original = getattr(exc, "orig", None) or exc
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    # SQLite past its busy timeout.
    return "database is locked" in str(original)


def _send_again(code: str, message: str) -> JSONResponse:
    return ServiceUnavailable(message, code=code, headers={"Retry-After": "1"}).response()


def database_error_response(exc: BaseException) -> JSONResponse:
    """The answer to an exception no route turned into a documented error: 503
    ``database_unavailable`` when the database cannot serve now (down, starting, frozen past
    its timeouts, read-only, full: docs/RELIABILITY.md), 503 ``busy_retry`` when the request met
    a concurrent one and was undone, else a 500 ``internal_error`` -- all JSON, none closing the
    connection."""
    if database_unavailable(exc):
        metrics.db_errors("unavailable").inc()
        log.warning("database unavailable: %s", exc.__class__.__name__)
        return ServiceUnavailable(
            "the database cannot be reached now; nothing was applied: send the request again "
            "shortly (with the same Idempotency-Key where the route takes one)",
            code="database_unavailable",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        ).response()
    if _retryable(exc):
        metrics.db_errors("conflict").inc()
        return _send_again(
            "busy_retry",
            "the request met a concurrent one in the database and was undone; nothing was "
            "applied: send it again",
        )
    metrics.db_errors("unexpected").inc()
    log.error("unexpected error", exc_info=exc)
    return JSONResponse(
        {"error": {"code": "internal_error", "message": "an unexpected error; it is logged"}},
        status_code=500,
    )


DATABASE_RETRY_AFTER_SECONDS = 2
