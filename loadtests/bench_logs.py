"""What request ids, the access log and tracing (off) add to every request, beside one ES256
verification measured in the same run (an online verification does one, and more).

    .venv/bin/python -m loadtests.bench_logs [--rounds 200000]

In process, one core, no server: the ASGI wrapping ``YuekangAPI`` does per request (read or make
the id, bind it, add the header to the answer) around an app that answers at once; the same with
the access log writing its JSON line (to a handler that drops it); ``tracing.span`` with tracing
off, as the signature and the partner call meet it. Figures are microseconds per call (median
of five runs).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from yuekang import logs, tracing


async def _answer(scope: dict[str, object], receive: object, send: object) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]


async def _sent(message: object) -> None:
    return None


def _scope() -> dict[str, object]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/verify",
        "headers": [(b"content-type", b"application/json"), (b"authorization", b"Bearer x")],
    }


async def _bare(rounds: int) -> float:
    scope = _scope()
    started = time.perf_counter()
    for _ in range(rounds):
        await _answer(scope, None, _sent)
    return (time.perf_counter() - started) / rounds


async def _with_ids(rounds: int, access_log: bool) -> float:
    scope = _scope()
    started = time.perf_counter()
    for _ in range(rounds):
        with logs.handling(scope) as request:
            send = logs.echoing(_sent, request)
            if access_log:
                timer = logs.AccessLog()
                await _answer(scope, None, timer.watching(send))
                timer.write(scope)
            else:
                await _answer(scope, None, send)
    return (time.perf_counter() - started) / rounds


def _timed(run: Callable[[], float]) -> float:
    return statistics.median(run() for _ in range(5)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200_000)
    rounds = parser.parse_args().rounds
    # The access line is formatted as in production and dropped.
    handler = logging.NullHandler()
    handler.handle = lambda record: bool(logs.JsonFormatter().format(record))  # type: ignore[method-assign]
    logs.access.addHandler(handler)
    logs.access.setLevel(logging.INFO)
    logs.access.propagate = False

    bare = _timed(lambda: asyncio.run(_bare(rounds)))
    ids = _timed(lambda: asyncio.run(_with_ids(rounds, access_log=False)))
    access = _timed(lambda: asyncio.run(_with_ids(rounds, access_log=True)))

    def spans() -> float:
        started = time.perf_counter()
        for _ in range(rounds):
            with tracing.span("yuekang.sign", kid="k", alg="ES256"):
                pass
        return (time.perf_counter() - started) / rounds

    span_off = _timed(spans)

    key = ec.generate_private_key(ec.SECP256R1())
    signature = key.sign(b"x" * 300, ec.ECDSA(hashes.SHA256()))
    public = key.public_key()

    def verify() -> float:
        n = max(rounds // 50, 1000)
        started = time.perf_counter()
        for _ in range(n):
            public.verify(signature, b"x" * 300, ec.ECDSA(hashes.SHA256()))
        return (time.perf_counter() - started) / n

    es256 = _timed(verify)
    print(f"one ES256 verification             {es256:8.2f} us")
    print(f"request id per request (added)     {ids - bare:8.2f} us  ({(ids - bare) / es256:.1%})")
    print(
        f"+ access log line (added)          {access - ids:8.2f} us  ({(access - ids) / es256:.1%})"
    )
    print(f"tracing.span, tracing off          {span_off:8.2f} us  ({span_off / es256:.1%})")


if __name__ == "__main__":
    main()
