"""OpenAPI helpers: document the error answers each endpoint can give."""

from __future__ import annotations

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


_NAMED = re.compile(r"`([a-z][a-z0-9_]*)`")


def document_codes(openapi: dict[str, Any]) -> dict[str, Any]:
    """List under each route's error responses the codes its description names (the docstrings
    say which refusals a route gives and why); each under the status it is answered with, adding
    that status when the route did not declare it. ``openapi`` is changed in place."""
    for methods in openapi.get("paths", {}).values():
        for operation in methods.values():
            _our_validation_body(operation)
            named = list(dict.fromkeys(_NAMED.findall(operation.get("description", ""))))
            responses = operation.setdefault("responses", {})
            by_status: dict[str, list[str]] = {}
            for code in named:
                statuses = ERROR_CODES.get(code)
                if statuses is None:
                    continue
                declared = [s for s in sorted(statuses) if str(s) in responses]
                for answered in declared or [min(statuses)]:
                    by_status.setdefault(str(answered), []).append(code)
            for status, codes in by_status.items():
                response = responses.setdefault(
                    status,
                    {
                        "description": _DESCRIPTIONS.get(int(status), "Error"),
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ErrorBody"}
                            }
                        },
                    },
                )
                listed = ", ".join(f"`{code}`" for code in codes)
                response["description"] = f"{response.get('description', '')}. Codes: {listed}"
    schemas = openapi.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return openapi


_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def _our_validation_body(operation: dict[str, Any]) -> None:
    """FastAPI documents a route with parameters as answering its own 422 body; ours answers
    ``{"error": ...}`` (``validation_error``) like every other refusal."""
    response = operation.get("responses", {}).get("422")
    schema = (response or {}).get("content", {}).get("application/json", {}).get("schema", {})
    if schema.get("$ref") == _FASTAPI_422:
        schema["$ref"] = "#/components/schemas/ErrorBody"
        assert response is not None
        response["description"] = _DESCRIPTIONS[422]
