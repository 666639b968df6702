"""``GET /metrics``: who may scrape, and the state figures a scrape reads (yuekang.metrics).

The exposition is answered to ``Authorization: Bearer <metrics token>``
(``YUEKANG_METRICS__TOKEN``) or, with no token configured, to a client on the same machine that
did not come through a proxy (no ``X-Forwarded-For`` or ``Forwarded``: a proxy on this machine
would otherwise make every client look local). Anything else gets the 404 of a path that does
not exist, so the path is not advertised; it is not in the OpenAPI document either.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hmac

from fastapi import Request
from fastapi.responses import Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.exceptions import HTTPException as StarletteHTTPException

from yuekang import __version__, headers, metrics
from yuekang.context import AppContext
from yuekang.exchange import keys as exchange_keys
from yuekang.exchange import partners
from yuekang.exchange import repository as exchange_repository
from yuekang.keyring import service as keyring_service
from yuekang.trust import service as trust_service

_LOOPBACK = frozenset({"127.0.0.1", "::1"})


def allowed(request: Request, token: str | None) -> bool:
    """Whether ``request`` may read the exposition."""
    if token is not None:
        given = headers.bearer_token(request.scope)
        return given is not None and hmac.compare_digest(given.encode(), token.encode())
    client = request.scope.get("client")
    if client is None or client[0] not in _LOOPBACK:
        return False
    forwarded = request.headers
    return "x-forwarded-for" not in forwarded and "forwarded" not in forwarded


EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def missing(request: Request) -> Response:
    raise StarletteHTTPException(status_code=404, detail="Not Found")


async def scrape(request: Request) -> Response:
    """The Prometheus text exposition: every worker's counts, and the state read now."""
    context: AppContext = request.app.state.context
    settings = context.settings.metrics
    secret = settings.token
    if not allowed(request, None if secret is None else secret.get_secret_value()):
        raise StarletteHTTPException(status_code=404, detail="Not Found")
    if request.method not in ("GET", "HEAD"):
        raise StarletteHTTPException(status_code=405, headers={"Allow": "GET, HEAD"})
    now = context.clock.now()
    # As the readiness check does: past the budget the scrape goes without the figures, and the
    # reads finish (or time out on their own) with nobody waiting for them.
    reading = asyncio.ensure_future(read_state(context, now))
    reading.add_done_callback(_observed)
    done, _ = await asyncio.wait({reading}, timeout=settings.state_timeout_seconds)
    if done and reading.exception() is None:
        state = reading.result()
    else:
        state = metrics.State(database_up=False)
    if context.replicas is not None:
        lags, serving = context.replicas.figures()
        state = dataclasses.replace(state, replica_lag=lags, replica_serving=serving)
    body = generate_latest(metrics.scrape_registry(state, version=__version__))
    # The text format every Prometheus 2 reads (Debian's is 2.42); our names need nothing newer.
    return Response(body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def _observed(task: asyncio.Future[metrics.State]) -> None:
    if not task.cancelled():
        task.exception()  # read, so that a late failure is not reported as never retrieved


async def read_state(context: AppContext, now: dt.datetime) -> metrics.State:
    """The state gauges' figures, read in one transaction that writes nothing (closing the
    session ends it)."""
    async with context.sessionmaker() as session:
        backlog = await exchange_repository.outbox_backlog(session)
        bundle = await trust_service.latest(session)
        signing = await keyring_service.active_record(session)
        exchange_since = await exchange_keys.active_since(session, "sig")
    key_age: dict[str, float] = {}
    key_expires_in: dict[str, float] = {}
    if signing is not None:
        key_age["health_code"] = _seconds(now - (signing.activated_at or signing.created_at))
        key_expires_in["health_code"] = _seconds(signing.not_after - now)
    if exchange_since is not None:
        key_age["exchange"] = _seconds(now - exchange_since)
    return metrics.State(
        database_up=True,
        outbox_depth={partner: depth for partner, depth, _, _ in backlog},
        outbox_oldest_age={
            partner: 0.0 if oldest is None else max(0.0, _seconds(now - oldest))
            for partner, _, oldest, _ in backlog
        },
        circuit_open={
            partner: partners.circuit_open_until(until, now) is not None
            for partner, _, _, until in backlog
        },
        bundle_version=None if bundle is None else bundle.version,
        bundle_age=None if bundle is None else _seconds(now - bundle.issued_at),
        bundle_expires_in=None if bundle is None else _seconds(bundle.expires_at - now),
        key_age=key_age,
        key_expires_in=key_expires_in,
    )


def _seconds(delta: dt.timedelta) -> float:
    return round(delta.total_seconds(), 3)
