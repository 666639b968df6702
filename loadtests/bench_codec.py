"""Offline verification and signing throughput, each beside this machine's own limit.

    .venv/bin/python -m loadtests.bench_codec [--seconds 3] [--alg ES256|EdDSA]

The limit is raw signature verification (or signing) with ``cryptography`` on the same message,
measured in the same run on one core, in rounds interleaved with the contenders. The figures
measured are:

- yuekang ``read_health_code`` (parse, header checks, key lookup, verify, claims, times) and the
  whole offline ``Verifier.verify`` (which adds the verdict object and the revocation set);
- PyJWT, joserfc and jwcrypto doing the same verification of the same token, where installed;
- yuekang ``sign_health_code`` against raw signing.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import secrets
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from yuekang.codec.bundle import BundleKey, TrustBundle, bucket, sign_bundle
from yuekang.codec.healthcode import HealthCodeClaims, read_health_code, sign_health_code
from yuekang.codec.jwks import build_jwks
from yuekang.codec.keys import Algorithm, SigningKey, b64url_decode, b64url_encode
from yuekang.verifier import TrustStore, Verifier


def rates(contenders: dict[str, Callable[[], object]], seconds: float) -> dict[str, float]:
    """Best operations per second of each contender over about ``seconds`` each.

    The contenders take turns in short rounds, so a change in the machine's speed during the run
    (frequency scaling, a neighbour's load) falls on all of them alike instead of on whichever
    happened to run at that moment: the ratios stay honest even when the absolute figures drift.
    """
    rounds = 10
    best = dict.fromkeys(contenders, 0.0)
    for _ in range(rounds):
        for name, work in contenders.items():
            count, start = 0, time.perf_counter()
            deadline = start + seconds / rounds
            while True:
                for _ in range(50):
                    work()
                count += 50
                now = time.perf_counter()
                if now >= deadline:
                    break
            best[name] = max(best[name], count / (now - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--alg", choices=["ES256", "EdDSA"], default="ES256")
    args = parser.parse_args()
    alg: Algorithm = args.alg

    key = SigningKey.generate(alg)
    now = int(time.time())
    claims = HealthCodeClaims(
        iss="yk:gd", jti=secrets.token_urlsafe(16), iat=now, exp=now + 3600, st="green", nm="张*三"
    )
    qr_text = sign_health_code(claims, key)
    token = qr_text[4:]
    signing_input, _, signature_b64 = token.rpartition(".")
    message, signature = signing_input.encode(), b64url_decode(signature_b64)
    public = key.private_key.public_key()
    keys = {key.kid: key.public()}
    verifier = Verifier(keys)

    if alg == "ES256":
        assert isinstance(public, ec.EllipticCurvePublicKey)
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )

        def raw_verify() -> None:
            public.verify(der, message, ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr]

        def raw_sign() -> None:
            key.private_key.sign(message, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
    else:

        def raw_verify() -> None:
            public.verify(signature, message)  # type: ignore[call-arg]

        def raw_sign() -> None:
            key.private_key.sign(message)  # type: ignore[call-arg]

    def ours() -> None:
        read_health_code(qr_text, keys, now=now)

    def offline() -> None:
        verifier.verify(qr_text, now=now)

    # The checkpoint's whole offline path: a trust store holding a signed bundle with 100,000
    # revocations (freshness, key windows, the revocation set, the verdict).
    anchor = SigningKey.generate("ES256")
    revoked = {b64url_encode(secrets.token_bytes(16)) for _ in range(100_000)}
    bundle = TrustBundle(
        issuer="yk:gd",
        version=1,
        issued_at=now - 60,
        expires_at=now + 86_400,
        grace=259_200,
        keys=(BundleKey(key.public(), "active", now - 3600, now + 90 * 86_400),),
        revoked={bucket(now + 3600): frozenset(revoked)},
    )
    started = time.perf_counter()
    signed_bundle = sign_bundle(bundle, anchor)
    built = time.perf_counter() - started
    delta = dataclasses.replace(
        bundle, version=2, base=1, revoked={bucket(now + 3600): frozenset(list(revoked)[:1000])}
    )
    print(
        f"trust bundle with 100,000 revocations: {len(signed_bundle) / 1e6:.2f} MB, "
        f"signed in {built * 1000:.0f} ms; a delta of 1,000: "
        f"{len(sign_bundle(delta, anchor)) / 1000:.0f} kB"
    )
    store = TrustStore(anchor.public()).load(signed_bundle, now=now)
    assert store.verify(qr_text, now=now).valid

    def checkpoint() -> None:
        store.verify(qr_text, now=now)

    verifying: dict[str, Callable[[], object]] = {
        "raw verify (limit)": raw_verify,
        "yuekang read_health_code": ours,
        "yuekang Verifier.verify": offline,
        "yuekang TrustStore.verify (bundle, 100k revoked)": checkpoint,
    }
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if importlib.util.find_spec("jwt"):
        import jwt

        pyjwt_key = jwt.PyJWK(key.public().to_jwk())

        def pyjwt_verify() -> None:
            jwt.decode(token, pyjwt_key, algorithms=[alg])

        verifying["pyjwt decode (pre-parsed key)"] = pyjwt_verify
    if importlib.util.find_spec("joserfc"):
        from joserfc import jws
        from joserfc.jwk import KeySet

        key_set = KeySet.import_key_set(build_jwks("yk:gd", [key.public()]))  # type: ignore[arg-type]

        def joserfc_verify() -> None:
            jws.deserialize_compact(token, key_set, algorithms=[alg])

        verifying["joserfc deserialize_compact"] = joserfc_verify
    if importlib.util.find_spec("jwcrypto"):
        from jwcrypto import jwk as jwcrypto_jwk
        from jwcrypto import jws as jwcrypto_jws

        jwcrypto_key = jwcrypto_jwk.JWK.from_pem(pem)

        def jwcrypto_verify() -> None:
            obj = jwcrypto_jws.JWS()
            obj.deserialize(token)
            obj.verify(jwcrypto_key, alg=alg)

        verifying["jwcrypto verify"] = jwcrypto_verify

    def sign() -> None:
        sign_health_code(claims, key)

    rows: list[tuple[str, float, float]] = []
    for contenders in (verifying, {"raw sign (limit)": raw_sign, "yuekang sign_health_code": sign}):
        measured = rates(contenders, args.seconds)
        limit = next(iter(measured.values()))
        rows.extend((name, value, value / limit) for name, value in measured.items())

    width = max(len(name) for name, _, _ in rows)
    print(f"{alg}, one core, {len(qr_text)}-character code")
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:>10,.0f}/s  {ratio:6.1%}")
    print(json.dumps({name: round(value) for name, value, _ in rows}))


if __name__ == "__main__":
    main()
