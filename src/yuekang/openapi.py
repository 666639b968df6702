"""OpenAPI helpers: document the error answers each endpoint can give."""

from __future__ import annotations

from typing import Any

from yuekang.schemas import ErrorBody

_DESCRIPTIONS = {
    400: "Malformed request (unparseable JSON, bad header)",
    401: "Missing or invalid credentials",
    403: "Authenticated but not allowed",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "Request body too large",
    415: "Unsupported Content-Type",
    422: "Validation failed; `fields` names each bad field and why",
    429: "Rate limited; see `Retry-After`",
    503: "A dependency is unavailable",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    every = sorted({400, 413, *codes})
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in every}
