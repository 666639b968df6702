"""One route table: the routes marked direct are answered before FastAPI's router and dependency
solver.

`POST /v1/verify`, `POST /v1/codes` and `GET /v1/codes/{id}.png|svg` do little work of their own:
a signature and a batched database visit (``checkpoints.online``, ``health_codes.batch``), or a
dictionary lookup. Measured with py-spy, the router (which asks each included router's routes in
turn: about 50 us to find `/v1/verify`), the dependency solver and the request objects around
them cost more than that work. So do the reads every phone and checkpoint repeats (issue 20):
the status page, a trust-bundle sync, and an empty list of one's appeals or family members
(``nothing_to_list``), each one statement. Such a route is marked where it is declared, with
the handler that answers it without them::

    @router.post("/v1/verify", ...)
    @direct(verify_directly)
    async def verify(...): ...

The table is built from the application's routes when its middleware is built: each marked
route's path pattern, parameters and methods as FastAPI resolved them (prefixes included), so
no path is written twice and a route renamed takes its direct dispatch with it. The table is
the innermost of the application's middleware (inside the body limits), and what a direct
handler raises is answered by the application's exception handlers, as the route's would be.

A direct handler calls what its route calls -- the same header reading (``yuekang.headers``),
the same callers (``deps.session_claims``, ``deps.parse_checkpoint_key``), the same one function
for the work (``checkpoints.endpoints.verdict``, ``health_codes.endpoints.issue``) -- and
returns the response. It returns None instead, before doing anything, for a request it does not
wholly own (a scan whose body is not JSON, or does not validate: the route gives its 400, 401
or 422 in FastAPI's order); the request goes on to the router then, its body replayed. A marked
route is matched before the routes declared ahead of it, so one of them that would take its
requests is refused when the table is built. ``YUEKANG_FAST_LANE=false`` leaves the table out;
the API tests of these routes run with it and without it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from re import Pattern
from typing import Any, TypeVar, cast

from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import Executable
from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.convertors import Convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from yuekang import headers, replicas
from yuekang.context import AppContext
from yuekang.deps import session_claims
from yuekang.metrics import ROUTE_KEY

DirectHandler = Callable[["Direct"], Awaitable[Response | None]]
"""Answers a request of its route, or returns None to hand it to the route."""

_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])

_MARKED: dict[Callable[..., Any], DirectHandler] = {}


def direct(handler: DirectHandler) -> Callable[[_Endpoint], _Endpoint]:
    """Marks a route's endpoint: ``handler`` answers the route's requests directly."""

    def mark(endpoint: _Endpoint) -> _Endpoint:
        _MARKED[endpoint] = handler
        return endpoint

    return mark


def nothing_to_list(statement: Executable) -> DirectHandler:
    """A direct handler for a resident's own list that is nearly always empty (their appeals,
    their family members: read by every page load, the appeals again by every poll). When
    ``statement``, given the resident's ``resident_id``, finds no row, it answers ``[]`` -- one
    statement in autocommit, or on a replica that holds what the resident wrote and saw (the
    read-your-writes cookie); no session, no router. A list with something in it is the
    route's to answer."""

    async def answer(request: Direct) -> Response | None:
        if request.scope["query_string"]:
            return None
        context = request.context
        now = context.clock.now()
        claims = await session_claims(request.bearer_token(), context, now)
        seen = replicas.seen(headers.cookies(request.scope))
        # A replica's "none" is the answer only when it holds what this resident wrote and saw
        # (the cookie); without one, the primary's, as the route reads it.
        found = await context.read_row(
            statement,
            {"resident_id": claims.resident_id},
            seen=seen,
            absent_is_answer=seen is not None,
        )
        return None if found is not None else Response(b"[]", media_type="application/json")

    return answer


class Ready(Response):
    """A response whose header fields are given as they are sent (lower-case names, encoded),
    for an answer repeated thousands of times a second: Starlette's ``Response`` encodes and
    checks them anew each time. The list is the response's own, as it would be."""

    def __init__(
        self, status_code: int, raw_headers: list[tuple[bytes, bytes]], body: bytes = b""
    ) -> None:
        self.status_code = status_code
        self.raw_headers = raw_headers
        self.body = body
        self.background = None


class Direct:
    """A request as a direct handler sees it."""

    __slots__ = ("_read", "_receive", "path_params", "scope")

    def __init__(self, scope: Scope, receive: Receive, path_params: dict[str, Any]) -> None:
        self.scope = scope
        self.path_params = path_params
        self._receive = receive
        self._read: list[Message] = []

    @property
    def context(self) -> AppContext:
        context: AppContext = self.scope["app"].state.context
        return context

    @property
    def base_url(self) -> str:
        return str(Request(self.scope).base_url)

    def header(self, name: bytes) -> str | None:
        return headers.header(self.scope, name)

    def bearer_token(self) -> str | None:
        return headers.bearer_token(self.scope)

    async def body(self) -> bytes | None:
        """The whole body; None when the client went away."""
        chunks = []
        while True:
            message = await self._receive()
            self._read.append(message)
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)

    def handed_over(self) -> Receive:
        """``receive`` for the route: what the handler read, then the rest."""
        pending = self._read

        async def replayed() -> Message:
            if pending:
                return pending.pop(0)
            return await self._receive()

        return replayed


@dataclass(frozen=True, slots=True)
class Entry:
    """A marked route, as the router would match it."""

    path: str
    """The route's path format, e.g. ``/v1/codes/{code_id}.png``."""
    methods: frozenset[str]
    handler: DirectHandler
    pattern: Pattern[str]
    convertors: dict[str, Convertor[Any]]


def entries(routes: Sequence[BaseRoute]) -> list[Entry]:
    """The marked routes among ``routes`` (an application's, included routers and all), in the
    router's order. A marked route that a route declared ahead of it would take from the router
    (the same method, a path that matches both) is refused here, at start-up: the table would
    answer requests the router gives to the other."""
    found = []
    earlier: list[tuple[str, Pattern[str], frozenset[str] | None]] = []
    for context in iter_route_contexts(routes):
        route = context.original_route
        handler = _MARKED.get(route.endpoint) if isinstance(route, APIRoute) else None
        methods = None if context.methods is None else frozenset(context.methods)
        path = str(context.path_format or getattr(route, "path_format", ""))
        if handler is not None:
            entry = Entry(
                path=path,
                methods=methods or frozenset(),
                handler=handler,
                pattern=context.path_regex,
                convertors=dict(context.param_convertors),
            )
            sample = _sample_path(entry)
            for other_path, other_pattern, other_methods in earlier:
                shared = entry.methods if other_methods is None else entry.methods & other_methods
                if shared and other_pattern.match(sample):
                    raise RuntimeError(
                        f"{other_path} ({', '.join(sorted(shared))}) is declared before the "
                        f"direct route {entry.path} and takes its requests from the router"
                    )
            found.append(entry)
        if context.path_regex is not None:
            earlier.append((path, context.path_regex, methods))
    return found


_SAMPLES = {"int": "1", "float": "1.5", "uuid": "00000000-0000-4000-8000-000000000000"}


def _sample_path(entry: Entry) -> str:
    """A path the entry matches: each parameter given a value its convertor takes."""
    path = entry.path
    for name, convertor in entry.convertors.items():
        kind = type(convertor).__name__.removesuffix("Convertor").lower()
        path = path.replace("{" + name + "}", _SAMPLES.get(kind, "x"))
    return path


class DirectTable:
    """The ASGI middleware that answers the marked routes of ``application``; anything else goes
    on to ``app``. Added as the innermost of the application's middleware."""

    def __init__(self, app: ASGIApp, *, application: Starlette) -> None:
        self.app = app
        # Built with the middleware, when the application starts: every route is declared.
        self.entries = entries(application.routes)
        # A path without parameters is a dictionary lookup; the others are matched in order.
        self._fixed = {
            (method, entry.path): entry
            for entry in reversed(self.entries)
            if not entry.convertors
            for method in entry.methods
        }
        self._patterned = [entry for entry in self.entries if entry.convertors]
        # As ExceptionMiddleware takes them: Exception's own handler is ServerErrorMiddleware's.
        self._handlers = {
            kind: handler
            for kind, handler in application.exception_handlers.items()
            if isinstance(kind, type) and kind is not Exception
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method: str = scope["method"]
            # As the router reads it: without the root path, if the server was given one.
            path = get_route_path(scope) if scope.get("root_path") else scope["path"]
            entry = self._fixed.get((method, path))
            params: dict[str, Any] = {}
            if entry is None:
                for candidate in self._patterned:
                    match = candidate.pattern.match(path)
                    if match is not None and method in candidate.methods:
                        entry = candidate
                        params = {
                            name: candidate.convertors[name].convert(value)
                            for name, value in match.groupdict().items()
                        }
                        break
            if entry is not None:
                scope[ROUTE_KEY] = entry.path  # for the request metrics: no router names it
                request = Direct(scope, receive, params)
                try:
                    response = await entry.handler(request)
                except Exception as exc:
                    response = await self._handled(exc, scope, receive)
                if response is not None:
                    await response(scope, receive, send)
                    return
                receive = request.handed_over()
        await self.app(scope, receive, send)

    async def _handled(self, exc: Exception, scope: Scope, receive: Receive) -> Response:
        """The application's answer to what a direct handler raised: its exception handlers',
        looked up as ExceptionMiddleware looks them up, but only when something was raised
        (wrapping every request in ExceptionMiddleware cost a quarter of a cached image). What
        none of them takes goes on to ServerErrorMiddleware, as a route's would."""
        for kind in type(exc).__mro__:
            handler = self._handlers.get(kind)
            if handler is not None:
                answer = handler(Request(scope, receive), exc)
                response = await answer if inspect.isawaitable(answer) else answer
                return cast(Response, response)
        raise exc
