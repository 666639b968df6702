"""Signing in process (cryptography) against signing through PKCS#11 (SoftHSM2), in one run.

    .venv/bin/python -m loadtests.bench_hsm [--seconds 2]

Prints signatures per second for ES256 and EdDSA, raw (``SigningKey.sign``) and as issuance
signs (``sign_health_code`` over a batch of 64 typical green codes, the work the issuance batch
does per code besides the database), with the token's rate as a share of the in-process rate.
Needs softhsm2 and python-pkcs11 (the test extra); not run by the suite.
"""

from __future__ import annotations

import argparse
import secrets
import time
from collections.abc import Callable, Iterator

from support.softhsm import make_token
from yuekang.codec.healthcode import HealthCodeClaims, sign_health_code
from yuekang.codec.keys import Algorithm, SigningKey
from yuekang.keyring.pkcs11 import Token

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
        print(f"{'alg':<6} {'path':<22} {'in process/s':>13} {'PKCS#11/s':>10} {'ratio':>6}")
        for alg, name, ours, theirs in rows:
            print(f"{alg:<6} {name:<22} {ours:>13,.0f} {theirs:>10,.0f} {theirs / ours:>6.2f}")
    finally:
        token.close()
        tokens.close()


if __name__ == "__main__":
    main()
