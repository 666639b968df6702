"""JWK Sets: what we publish and what an offline verifier loads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from codec.forge import Trust, b64
from yuekang.codec.errors import InvalidKey
from yuekang.codec.jwks import MAX_KEYS, build_jwks, parse_jwks
from yuekang.codec.keys import SigningKey, VerificationKey

RSA_JWK = {
    "kty": "RSA",
    "use": "sig",
    "alg": "RS256",
    "kid": "r1",
    "n": b64(b"\xc1" * 256),
    "e": "AQAB",
}


def _jwks(trust: Trust, issuer: str = "yk:gd") -> dict[str, Any]:
    return build_jwks(issuer, [trust.es.public(), trust.ed.public()])


def test_build_jwks_document(trust: Trust) -> None:
    document = _jwks(trust)

    assert json.loads(json.dumps(document)) == document
    assert document["issuer"] == "yk:gd"
    es, ed = document["keys"]
    assert set(es) == {"crv", "kty", "x", "y", "kid", "alg", "use"}
    assert set(ed) == {"crv", "kty", "x", "kid", "alg", "use"}
    assert (es["kty"], es["crv"], es["alg"], es["use"]) == ("EC", "P-256", "ES256", "sig")
    assert (ed["kty"], ed["crv"], ed["alg"], ed["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert (es["kid"], ed["kid"]) == (trust.es.kid, trust.ed.kid)


def test_round_trip(trust: Trust) -> None:
    keys = parse_jwks(json.loads(json.dumps(_jwks(trust))))

    assert set(keys) == {trust.es.kid, trust.ed.kid}
    for signing in (trust.es, trust.ed):
        loaded = keys[signing.kid]
        assert (loaded.kid, loaded.alg, loaded.issuer) == (signing.kid, signing.alg, "yk:gd")
        assert loaded.verify(signing.sign(b"m"), b"m")
        assert loaded.compromised is False


def test_issuer_comes_from_the_document(trust: Trust) -> None:
    keys = parse_jwks(_jwks(trust, issuer="yk:mo"))

    assert {k.issuer for k in keys.values()} == {"yk:mo"}


def test_issuer_argument_overrides_the_document(trust: Trust) -> None:
    keys = parse_jwks(_jwks(trust, issuer="yk:mo"), issuer="yk:gd")

    assert {k.issuer for k in keys.values()} == {"yk:gd"}


def test_document_without_issuer_binds_no_issuer(trust: Trust) -> None:
    document = {"keys": _jwks(trust)["keys"]}

    assert {k.issuer for k in parse_jwks(document).values()} == {None}


@pytest.mark.parametrize("issuer", [42, ["yk:gd"], {"id": "yk:gd"}, True])
def test_non_string_issuer_is_refused(trust: Trust, issuer: Any) -> None:
    with pytest.raises(InvalidKey):
        parse_jwks({**_jwks(trust), "issuer": issuer})


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(RSA_JWK, id="rsa"),
        pytest.param({"kty": "oct", "k": b64(b"secret")}, id="oct"),
        pytest.param(
            {"kty": "OKP", "crv": "X25519", "use": "enc", "x": b64(bytes(32))}, id="x25519-enc"
        ),
        pytest.param(
            {**SigningKey.generate("ES256").public().to_jwk(), "use": "enc"}, id="p256-use-enc"
        ),
        pytest.param({"kty": "EC", "use": "enc", "crv": "P-256", "x": "garbage"}, id="broken-enc"),
        pytest.param(
            {**SigningKey.generate("ES256").public().to_jwk(), "purpose": "exchange"},
            id="exchange-signing-key-of-a-key-document",
        ),
    ],
)
def test_other_keys_are_skipped(trust: Trust, other: dict[str, Any]) -> None:
    document = _jwks(trust)
    document["keys"].insert(1, other)

    assert set(parse_jwks(document)) == {trust.es.kid, trust.ed.kid}


def test_key_without_use_is_loaded(trust: Trust) -> None:
    jwk = {k: v for k, v in trust.es.public().to_jwk().items() if k != "use"}

    assert set(parse_jwks({"keys": [jwk]})) == {trust.es.kid}


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda j: {**j, "x": b64(b"\x01" * 31)}, id="short-coordinate"),
        pytest.param(lambda j: {**j, "alg": "EdDSA"}, id="alg-mismatch"),
        pytest.param(lambda j: {**j, "kid": "not-the-thumbprint"}, id="kid-mismatch"),
        pytest.param(lambda j: {k: v for k, v in j.items() if k != "y"}, id="missing-y"),
        pytest.param(lambda j: {**j, "x": 1}, id="numeric-coordinate"),
    ],
)
def test_malformed_key_fails_the_whole_load(trust: Trust, broken: Any) -> None:
    document = _jwks(trust)
    document["keys"][0] = broken(document["keys"][0])

    with pytest.raises(InvalidKey):
        parse_jwks(document)


@pytest.mark.parametrize("entry", ["a string", 42, None, ["kty", "EC"]])
def test_non_object_entry_fails_the_load(trust: Trust, entry: Any) -> None:
    document = _jwks(trust)
    document["keys"].append(entry)

    with pytest.raises(InvalidKey):
        parse_jwks(document)


def test_at_most_64_keys() -> None:
    assert MAX_KEYS == 64
    assert parse_jwks({"keys": [RSA_JWK] * 64}) == {}
    with pytest.raises(InvalidKey):
        parse_jwks({"keys": [RSA_JWK] * 65})


def test_64_of_our_keys_load() -> None:
    publics = [SigningKey.generate("EdDSA").public() for _ in range(64)]

    keys = parse_jwks(build_jwks("yk:gd", publics))

    assert set(keys) == {k.kid for k in publics}


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({}, id="missing"),
        pytest.param({"keys": None}, id="null"),
        pytest.param({"keys": {"k1": RSA_JWK}}, id="object"),
        pytest.param({"keys": "[]"}, id="string"),
        pytest.param({"keys": (RSA_JWK,)}, id="tuple"),
    ],
)
def test_keys_must_be_a_list(document: dict[str, Any]) -> None:
    with pytest.raises(InvalidKey):
        parse_jwks(document)


def test_empty_key_list_loads_nothing() -> None:
    assert parse_jwks({"issuer": "yk:gd", "keys": []}) == {}


def test_duplicate_key_is_loaded_once(trust: Trust) -> None:
    jwk = trust.es.public().to_jwk()

    assert list(parse_jwks({"keys": [jwk, dict(jwk)]})) == [trust.es.kid]


def test_private_member_in_a_published_jwk_is_ignored(trust: Trust) -> None:
    # A private "d" member in a published JWK must never turn into signing power.
    jwk = {**trust.ed.public().to_jwk(), "d": b64(bytes(32))}

    (key,) = parse_jwks({"keys": [jwk]}).values()

    assert isinstance(key, VerificationKey)
    assert not hasattr(key, "private_key")


@pytest.mark.parametrize("kty", [["EC"], {"EC": 1}])
def test_unhashable_kty_is_invalid_key(kty: Any) -> None:
    with pytest.raises(InvalidKey):
        parse_jwks({"keys": [{"kty": kty, "use": "sig"}]})


def test_ec_key_of_another_curve_is_skipped(trust: Trust) -> None:
    numbers = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
    p384 = {
        "kty": "EC",
        "crv": "P-384",
        "alg": "ES384",
        "use": "sig",
        "x": b64(numbers.x.to_bytes(48, "big")),
        "y": b64(numbers.y.to_bytes(48, "big")),
    }
    document = _jwks(trust)
    document["keys"].append(p384)

    assert set(parse_jwks(document)) == {trust.es.kid, trust.ed.kid}
