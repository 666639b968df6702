"""Offline verification and signing throughput, each beside this machine's own limit.

    .venv/bin/python -m loadtests.bench_codec [--seconds 2] [--alg ES256]

The limit is raw signature verification (or signing) with ``cryptography`` on the same message,
measured in the same run on one core. The figures measured are:

- yuekang ``read_health_code`` (parse, header checks, key lookup, verify, claims, times) and the
  whole offline ``Verifier.verify`` (which adds the verdict object and the revocation set);
- PyJWT, joserfc and jwcrypto doing the same verification of the same token, where installed;
- yuekang ``sign_health_code`` against raw signing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import secrets
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from yuekang.codec.healthcode import HealthCodeClaims, read_health_code, sign_health_code
from yuekang.codec.jwks import build_jwks
from yuekang.codec.keys import Algorithm, SigningKey, b64url_decode
from yuekang.verifier import Verifier


def rate(work: Callable[[], object], seconds: float) -> float:
    """Operations per second over about ``seconds``, best of three rounds."""
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(100):
                work()
            count += 100
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
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

    rows: list[tuple[str, float, float]] = []
    limit_verify = rate(raw_verify, args.seconds)
    rows.append(("raw verify (limit)", limit_verify, 1.0))

    def ours() -> None:
        read_health_code(qr_text, keys, now=now)

    def offline() -> None:
        verifier.verify(qr_text, now=now)

    for name, work in (("yuekang read_health_code", ours), ("yuekang Verifier.verify", offline)):
        value = rate(work, args.seconds)
        rows.append((name, value, value / limit_verify))

    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if importlib.util.find_spec("jwt"):
        import jwt

        pyjwt_key = jwt.PyJWK(key.public().to_jwk())

        def pyjwt_verify() -> None:
            jwt.decode(token, pyjwt_key, algorithms=[alg])

        value = rate(pyjwt_verify, args.seconds)
        rows.append(("pyjwt decode (pre-parsed key)", value, value / limit_verify))
    if importlib.util.find_spec("joserfc"):
        from joserfc import jws
        from joserfc.jwk import KeySet

        key_set = KeySet.import_key_set(build_jwks("yk:gd", [key.public()]))  # type: ignore[arg-type]

        def joserfc_verify() -> None:
            jws.deserialize_compact(token, key_set, algorithms=[alg])

        value = rate(joserfc_verify, args.seconds)
        rows.append(("joserfc deserialize_compact", value, value / limit_verify))
    if importlib.util.find_spec("jwcrypto"):
        from jwcrypto import jwk as jwcrypto_jwk
        from jwcrypto import jws as jwcrypto_jws

        jwcrypto_key = jwcrypto_jwk.JWK.from_pem(pem)

        def jwcrypto_verify() -> None:
            obj = jwcrypto_jws.JWS()
            obj.deserialize(token)
            obj.verify(jwcrypto_key, alg=alg)

        value = rate(jwcrypto_verify, args.seconds)
        rows.append(("jwcrypto verify", value, value / limit_verify))

    limit_sign = rate(raw_sign, args.seconds)
    rows.append(("raw sign (limit)", limit_sign, 1.0))

    def sign() -> None:
        sign_health_code(claims, key)

    value = rate(sign, args.seconds)
    rows.append(("yuekang sign_health_code", value, value / limit_sign))

    width = max(len(name) for name, _, _ in rows)
    print(f"{alg}, one core, {len(qr_text)}-character code")
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:>10,.0f}/s  {ratio:6.1%}")
    print(json.dumps({name: round(value) for name, value, _ in rows}))


if __name__ == "__main__":
    main()
