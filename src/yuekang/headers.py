"""A request's headers, read one way for the routes' dependencies (``deps``) and the direct
handlers (``fastlane``), so that a request means the same thing on both paths."""

from __future__ import annotations

from starlette.types import Scope


def header(scope: Scope, name: bytes) -> str | None:
    """The value of the header ``name`` (lower case), as Starlette's ``Headers.get`` and FastAPI's
    header parameters read it: a repeated header is read by its first value, everywhere."""
    key: bytes
    value: bytes
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def joined(scope: Scope, name: bytes) -> str | None:
    """A list-valued header (``Accept-Language``) sent more than once, read as the one list it
    is (RFC 9110, 5.3); None when it was not sent."""
    values = [value.decode("latin-1") for key, value in scope["headers"] if key == name]
    return ",".join(values) if values else None


def bearer_token(scope: Scope) -> str | None:
    """The token of ``Authorization: Bearer <token>``, as FastAPI's ``HTTPBearer`` reads it (the
    scheme in any case, the token stripped); None when there is none."""
    authorization = header(scope, b"authorization")
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if not token or scheme.lower() != "bearer":
        return None
    return token


def media_type(scope: Scope) -> str:
    """The Content-Type without its parameters, lower case; empty when there is none."""
    return (header(scope, b"content-type") or "").partition(";")[0].strip().lower()


def cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies as Starlette's ``Request.cookies`` reads them: every ``Cookie``
    header, joined (a client may send them in several, as HTTP/2 clients do)."""
    from starlette.requests import cookie_parser

    values = [value.decode("latin-1") for key, value in scope["headers"] if key == b"cookie"]
    return cookie_parser("; ".join(values))
