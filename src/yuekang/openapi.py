"""OpenAPI helpers: document the error answers each endpoint can give."""

from __future__ import annotations

import json
import re
from typing import Any

from yuekang.errorcodes import ERROR_CODES
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


_STATUS_OR_CODE = re.compile(r"\b(?P<status>[1-5]\d\d)\b|`(?P<code>[a-z][a-z0-9_]*)`")
_ERROR_BODY = "#/components/schemas/ErrorBody"
_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def document_codes(openapi: dict[str, Any]) -> dict[str, Any]:
    """List under each route's error responses the codes its description names (the docstrings
    say which refusals a route gives and why); each under the status it is answered with, adding
    that status when the route did not declare it. And where FastAPI documents its own 422 body,
    document ours: every refusal is ``{"error": ...}``. ``openapi`` is changed in place."""
    for methods in openapi.get("paths", {}).values():
        for operation in methods.values():
            responses = operation.setdefault("responses", {})
            _our_validation_body(responses)
            for status, codes in _codes_by_status(operation.get("description", ""), responses):
                response = responses.setdefault(status, _error_response(int(status)))
                listed = ", ".join(f"`{code}`" for code in codes)
                response["description"] = f"{response.get('description', '')}. Codes: {listed}"
    if _FASTAPI_422 not in json.dumps(openapi.get("paths", {})):
        schemas = openapi.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
    return openapi


def _codes_by_status(description: str, responses: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The error codes ``description`` names (and ``validation_error`` where the route declares
    422), grouped by the status each is answered with: the
    status written before it ("422 `identity_mismatch`") when that is one of the code's, else
    one the route declares, else the code's first. A code answered with different statuses on
    different routes (``identity_mismatch``: 422 when binding, 409 in the exchange) is listed
    under the one this route gives it."""
    # Whatever a route's description says, a body or parameter that does not validate is this.
    by_status: dict[str, list[str]] = {"422": ["validation_error"]} if "422" in responses else {}
    written: int | None = None
    for match in _STATUS_OR_CODE.finditer(description):
        if match.group("status"):
            written = int(match.group("status"))
            continue
        code = match.group("code")
        statuses = ERROR_CODES.get(code)
        if statuses is None:
            continue
        declared = [s for s in sorted(statuses) if str(s) in responses]
        status = written if written in statuses else (declared or sorted(statuses))[0]
        codes = by_status.setdefault(str(status), [])
        if code not in codes:
            codes.append(code)
    return list(by_status.items())


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": _DESCRIPTIONS.get(status, "Error"),
        "content": {"application/json": {"schema": {"$ref": _ERROR_BODY}}},
    }


def _our_validation_body(responses: dict[str, Any]) -> None:
    response = responses.get("422", {})
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    if schema.get("$ref") == _FASTAPI_422:
        responses["422"] = _error_response(422)
