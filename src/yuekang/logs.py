"""Logs an operator can search: one JSON object per line, each carrying the request it was
written in.

Every line is ``{"time", "level", "logger", "message"}`` plus ``request_id`` when it was
written while a request (or an outbox delivery begun by one) was being handled, and whatever
the caller passed as ``extra={...}``. The service logs through the standard library; uvicorn's
loggers get the same formatter through the ``log_config`` that ``yuekang serve`` hands it
(:func:`uvicorn_config`).

The request id is taken from ``X-Request-ID`` when it is short and made of safe characters
(anything else is replaced, never echoed: a header is not allowed to write into the log), or
made; it is answered in ``X-Request-ID`` on every response, kept in a context variable for the
request's task, stored on the outbox message a request queues and sent to partner systems.

What never goes into a line -- names, document numbers, phones, codes, tokens, secrets -- is
the callers' discipline, held by ``tests/api/test_log_privacy.py``, which drives every route
with every logger at DEBUG and searches the lines for them. Paths name health codes, so the
access log (``YUEKANG_ACCESS_LOG``) writes the route's template, never the path or the query.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import logging
import re
import secrets
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal

from starlette.types import Message, Scope, Send

from yuekang.metrics import route_of

if TYPE_CHECKING:
    import httpx

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = b"x-request-id"
_SANE = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")
"""What a client's or a proxy's request id may look like (UUIDs, hex, base64, AWS' ``1-…``)."""

_request_id: ContextVar[str | None] = ContextVar("yuekang_request_id", default=None)

access = logging.getLogger("yuekang.access")


def request_id() -> str | None:
    """The id of the request (or the delivery) being handled, if any."""
    return _request_id.get()


_PROCESS = secrets.token_hex(8)
_COUNT = itertools.count(1)


def new_request_id() -> str:
    """An id unique across processes: this process's random prefix and a counter. A uuid4 per
    request read the system's random source each time (2 us; 12 us on a loaded machine)."""
    return f"{_PROCESS}{next(_COUNT):016x}"


def sane(value: str | None) -> str | None:
    """``value`` if it may be used as a request id as it is, else None."""
    if value is not None and _SANE.fullmatch(value):
        return value
    return None


@contextlib.contextmanager
def bound(request: str | None) -> Iterator[None]:
    """Lines written inside carry ``request`` as their request id (None: no request)."""
    token = _request_id.set(request)
    try:
        yield
    finally:
        _request_id.reset(token)


class handling:
    """``with handling(scope) as request_id``: the client's id if sane, or a new one, bound for
    the request's lines. A class rather than a generator: it runs on every request."""

    __slots__ = ("_token", "request_id")

    def __init__(self, scope: Scope) -> None:
        given = None
        for key, value in scope["headers"]:
            if key == _HEADER_KEY:
                given = value.decode("latin-1")
                break
        self.request_id = sane(given) or new_request_id()

    def __enter__(self) -> str:
        self._token = _request_id.set(self.request_id)
        return self.request_id

    def __exit__(self, *_: object) -> None:
        _request_id.reset(self._token)


def echoing(send: Send, request: str) -> Send:
    """``send`` that adds ``X-Request-ID: request`` to the response's headers."""
    value = request.encode("latin-1")

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {
                **message,
                "headers": [*message.get("headers", ()), (_HEADER_KEY, value)],
            }
        await send(message)

    return sending


async def send_request_id(request: httpx.Request) -> None:
    """An httpx request hook: a call to another system made while a request is handled names
    that request (``X-Request-ID``), unless the caller named one already."""
    current = _request_id.get()
    if current is not None and REQUEST_ID_HEADER not in request.headers:
        request.headers[REQUEST_ID_HEADER] = current


class AccessLog:
    """Times a request and writes one ``yuekang.access`` line when its answer has started: the
    method, the route's template, the status and the milliseconds taken."""

    __slots__ = ("_started", "_status")

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self._status = 0

    def watching(self, send: Send) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._status = message["status"]
            await send(message)

        return sending

    def write(self, scope: Scope) -> None:
        # The route's template, as the request metrics are labelled: never the path.
        route = route_of(scope)
        access.info(
            "%s %s %s",
            scope["method"],
            route,
            self._status,
            extra={
                "method": scope["method"],
                "route": route,
                "status": self._status,
                "duration_ms": round((time.perf_counter() - self._started) * 1000, 3),
            },
        )


# --- formatting ------------------------------------------------------------------------------

_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message"}
)
"""Attributes every record has (and uvicorn's copy of its message with terminal colours); the
others are the caller's ``extra``."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = _request_id.get()
        if request is not None:
            line["request_id"] = request
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """A line a person reads in a terminal, with the request id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request = _request_id.get()
        return text if request is None else f"{text} [{request}]"


Format = Literal["json", "text"]

FORMATTERS = {"json": JsonFormatter, "text": TextFormatter}

NOISY = {
    # Statements (INFO) are shown at DEBUG, their parameters hidden by the engines
    # (db.create_engine: hide_parameters); rows (DEBUG) hold stored health codes and ciphertext.
    "sqlalchemy.engine": logging.INFO,
    "sqlalchemy.pool": logging.INFO,
    # Its DEBUG lines repeat every statement with its parameters.
    "aiosqlite": logging.INFO,
    # "HTTP Request: POST <url>" at INFO for every call: a gateway's URL may carry its user,
    # password or API key (hostile review); httpcore's DEBUG lines hold whole headers. The
    # service logs its own outside calls by name.
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
}
"""Loggers that write only warnings, and at ``YUEKANG_LOG__LEVEL=DEBUG`` no lower than the level
given here: below it they would write personal data and codes."""


def _noisy_level(name: str, level: str) -> str:
    chosen = logging.getLevelName(level)
    floor = NOISY[name] if chosen == logging.DEBUG else logging.WARNING
    return str(logging.getLevelName(max(floor, chosen)))


def dict_config(fmt: Format, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the service and uvicorn: one handler on stderr with
    the chosen formatter; uvicorn's own access log is replaced by ``yuekang.access``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": FORMATTERS[fmt]}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            # uvicorn's loggers hand their lines to the root's handler.
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": True},
            # One line per migration at INFO is noise in a service's log.
            "alembic.runtime.plugins": {"level": "WARNING"},
            **{name: {"level": _noisy_level(name, level)} for name in NOISY},
        },
    }


def configure(fmt: Format, level: str) -> dict[str, Any]:
    """Configure this process's logging; the configuration, for uvicorn's workers to repeat."""
    import logging.config

    config = dict_config(fmt, level)
    logging.config.dictConfig(config)
    return config
