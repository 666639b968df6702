"""Signing in process (cryptography) against signing through PKCS#11 (SoftHSM2), in one run.

    .venv/bin/python -m loadtests.bench_hsm [--seconds 2]

Prints signatures per second for ES256 and EdDSA, raw (``SigningKey.sign``) and as issuance
signs (``sign_health_code`` over a batch of 64 typical green codes, the work the issuance batch
does per code besides the database), with the token's rate as a share of the in-process rate;
then codes per second through the whole issuance path in process (``POST /v1/codes`` over ASGI,
64 residents asking at once so the issuance batch groups them, code reuse off, a SQLite database
of its own), with the signing key in the database and in the token.
Needs softhsm2 and python-pkcs11 (the test extra); not run by the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import TEST_SECRETS, RunningApp, make_settings, start_app
from support.softhsm import SoftToken, make_token
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.codec.healthcode import HealthCodeClaims, sign_health_code
from yuekang.codec.keys import Algorithm, SigningKey
from yuekang.config import CodeSettings, KeySettings
from yuekang.db import migrate
from yuekang.keyring import ring
from yuekang.keyring.pkcs11 import Token, held_in_token

BATCH = 64
MESSAGE = b"x" * 300
"""About the signing input of a typical code."""


def per_second(work: Callable[[], int], seconds: float) -> float:
    """Units of ``work`` per second over at least ``seconds`` (work returns its units)."""
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += work()
    return done / elapsed


def claims(now: int) -> Iterator[HealthCodeClaims]:
    while True:
        yield HealthCodeClaims(
            iss="yk:gd",
            jti=secrets.token_urlsafe(16),
            iat=now,
            exp=now + 3600,
            st="green",
            nm="*小明",
            nt=48,
            vx=3,
            ia=1,
        )


@dataclass
class Variant:
    name: str
    soft: SoftToken | None
    latency: float = 0.0
    """Seconds added to every call into the token, as a network HSM's round trip would."""
    inline: bool = False
    """Token signatures on the event loop, as a key in memory is signed, rather than in a
    worker thread (``KeyRing.sign``)."""
    best: float = 0.0


async def started(
    variant: Variant, residents: int
) -> tuple[AsyncIterator[RunningApp], Any, list[Any]]:
    """An app on a SQLite database of its own, code reuse off, with ``residents`` bound."""
    directory = Path(tempfile.mkdtemp(prefix="bench-hsm-"))
    url = f"sqlite+aiosqlite:///{directory / 'yuekang.db'}"
    # Alembic runs its own event loop: in a thread of its own, not inside this one.
    await asyncio.to_thread(migrate, url)
    keys: dict[str, object] = {"ring_refresh_seconds": 5}
    secrets_ = TEST_SECRETS
    if variant.soft is not None:
        soft = variant.soft
        keys.update(backend="pkcs11", pkcs11_module=soft.module, pkcs11_token_label=soft.label)
        secrets_ = TEST_SECRETS.model_copy(update={"pkcs11_pin": soft.pin})
    settings = make_settings(
        url,
        directory / "keys",
        keys=KeySettings.model_validate(keys),
        codes=CodeSettings(reuse=False),
        secrets=secrets_,
    )
    clock = ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    running = start_app(settings, clock, MemorySmsSender())
    app = await anext(running)
    token = app.context.keyring.token
    if token is not None and variant.latency:

        def slow(
            kid: str,
            data: bytes,
            *,
            ecdsa: bool,
            signing: Callable[..., bytes] = token.sign,
            latency: float = variant.latency,
        ) -> bytes:
            time.sleep(latency)
            return signing(kid, data, ecdsa=ecdsa)

        token.sign = slow  # type: ignore[method-assign]
    people = [await app.api.registered() for _ in range(residents)]
    await asyncio.gather(*(app.api.code(p) for p in people))  # warm: keys, caches
    return running, app, people


async def issuance_rates(
    variants: list[Variant], seconds: float, rounds: int = 3, residents: int = 64
) -> None:
    """Codes per second through ``POST /v1/codes`` for each variant, best of ``rounds`` windows
    taken in turn (a shared machine's load moves between them)."""
    apps = [await started(v, residents) for v in variants]
    try:
        for _ in range(rounds):
            for variant, (_, app, people) in zip(variants, apps, strict=True):
                ring.held_in_token = (lambda key: False) if variant.inline else held_in_token
                issued, start = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - start) < seconds:
                    answers = await asyncio.gather(*(app.api.issue(p) for p in people))
                    assert all(a.status_code == 201 for a in answers), answers[0].text
                    issued += len(answers)
                variant.best = max(variant.best, issued / elapsed)
    finally:
        ring.held_in_token = held_in_token
        for running, _, _ in apps:
            await running.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    seconds = parser.parse_args().seconds
    source = claims(int(time.time()))
    tokens = make_token("yuekang-bench")
    soft = next(tokens)
    token = Token(soft.module, soft.label, soft.pin)
    try:
        rows = []
        for alg in ("ES256", "EdDSA"):
            typed: Algorithm = alg  # type: ignore[assignment]
            local = SigningKey.generate(typed)
            held = SigningKey.from_private_key(token.generate(typed))

            def raw(key: SigningKey) -> Callable[[], int]:
                return lambda: (key.sign(MESSAGE), 1)[1]

            def batch(key: SigningKey) -> Callable[[], int]:
                def work() -> int:
                    for _ in range(BATCH):
                        sign_health_code(next(source), key)
                    return BATCH

                return work

            for name, make in (("raw signature", raw), ("issuance batch of 64", batch)):
                ours = per_second(make(local), seconds)
                theirs = per_second(make(held), seconds)
                rows.append((alg, name, ours, theirs))
        variants = [
            Variant("codes, key in database", None),
            Variant("codes, token in thread", soft),
            Variant("codes, token in line", soft, inline=True),
            Variant("codes, +1 ms, thread", soft, latency=0.001),
            Variant("codes, +1 ms, in line", soft, latency=0.001, inline=True),
        ]
        asyncio.run(issuance_rates(variants, seconds))
        ours = variants[0].best
        rows.extend(("ES256", v.name, ours, v.best) for v in variants[1:])
        print(f"{'alg':<6} {'path':<22} {'in process/s':>13} {'PKCS#11/s':>10} {'ratio':>6}")
        for alg, name, ours, theirs in rows:
            print(f"{alg:<6} {name:<22} {ours:>13,.0f} {theirs:>10,.0f} {theirs / ours:>6.2f}")
    finally:
        token.close()
        tokens.close()


if __name__ == "__main__":
    main()
