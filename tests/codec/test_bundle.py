"""The trust bundle's wire format: what the anchor signed is what a checkpoint reads, and
nothing else is."""

from __future__ import annotations

import dataclasses
import json
import secrets

import pytest

from codec.forge import b64, flip_char, unb64
from yuekang.codec.bundle import (
    BadBundleSignature,
    BundleKey,
    MalformedBundle,
    TrustBundle,
    bucket,
    decode_ids,
    encode_ids,
    read_bundle,
    sign_bundle,
)
from yuekang.codec.keys import SigningKey, b64url_encode

NOW = 1_764_100_000


def _ids(n: int) -> list[str]:
    return [b64url_encode(secrets.token_bytes(16)) for _ in range(n)]


@pytest.fixture(scope="module")
def anchor() -> SigningKey:
    return SigningKey.generate("ES256")


@pytest.fixture(scope="module")
def bundle() -> TrustBundle:
    signer, next_key = SigningKey.generate("ES256"), SigningKey.generate("EdDSA")
    return TrustBundle(
        issuer="yk:gd",
        version=7,
        issued_at=NOW,
        expires_at=NOW + 86_400,
        grace=3 * 86_400,
        keys=(
            BundleKey(signer.public(), "active", NOW - 3600, NOW + 90 * 86_400),
            BundleKey(next_key.public(), "pending", NOW + 3600, NOW + 120 * 86_400),
        ),
        revoked={bucket(NOW + 10): frozenset(_ids(3)), bucket(NOW + 4000): frozenset(_ids(2))},
        policies={"venue": {"rules": []}},
    )


def test_what_the_anchor_signed_comes_back(anchor: SigningKey, bundle: TrustBundle) -> None:
    read = read_bundle(sign_bundle(bundle, anchor), anchor.public())

    assert (read.issuer, read.version, read.issued_at, read.expires_at, read.grace) == (
        "yk:gd", 7, NOW, NOW + 86_400, 3 * 86_400,
    )  # fmt: skip
    assert [(k.key.kid, k.state, k.not_before) for k in read.keys] == [
        (k.key.kid, k.state, k.not_before) for k in bundle.keys
    ]
    assert all(k.key.issuer == "yk:gd" and k.key.not_after == k.not_after for k in read.keys)
    assert dict(read.revoked) == dict(bundle.revoked)
    assert read.policies == {"venue": {"rules": []}}
    assert read.base is None


def test_a_changed_byte_anywhere_is_refused(anchor: SigningKey, bundle: TrustBundle) -> None:
    text = sign_bundle(bundle, anchor)
    head, payload, _ = text.split(".")
    for index in (len(head) + 5, len(head) + len(payload) // 2, len(text) - 3):
        with pytest.raises((BadBundleSignature, MalformedBundle)):
            read_bundle(flip_char(text, index), anchor.public())


def test_a_bundle_re_signed_by_anyone_else_is_refused(bundle: TrustBundle) -> None:
    pinned, impostor = SigningKey.generate("ES256"), SigningKey.generate("ES256")
    with pytest.raises(BadBundleSignature):
        read_bundle(sign_bundle(bundle, impostor), pinned.public())


def test_a_revocation_added_by_hand_breaks_the_signature(
    anchor: SigningKey, bundle: TrustBundle
) -> None:
    head, payload, signature = sign_bundle(bundle, anchor).split(".")
    document = json.loads(unb64(payload))
    document["revoked"] = []  # "un-revoke" everything
    forged = ".".join([head, b64(json.dumps(document).encode()), signature])
    with pytest.raises(BadBundleSignature):
        read_bundle(forged, anchor.public())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"typ": "yk.bundle.v2"}, "yk.bundle.v1"),
        ({"version": -1}, "version"),
        ({"expires_at": NOW - 1}, "expires before"),
        ({"base": 9}, "base"),
        ({"revoked": [{"until": NOW, "ids": "AAAA"}]}, "16-byte"),
        ({"keys": [{"kty": "EC", "state": "active", "nbf": 0, "exp": 1}]}, "not usable"),
        ({"keys": [{"state": "compromised", "nbf": 0, "exp": 1}]}, "state"),
        ({"policies": []}, "policies"),
    ],
)
def test_a_malformed_payload_signed_by_the_anchor_is_still_refused(
    anchor: SigningKey, bundle: TrustBundle, change: dict[str, object], message: str
) -> None:
    head, payload, _ = sign_bundle(bundle, anchor).split(".")
    document = {**json.loads(unb64(payload)), **change}
    signing_input = head + "." + b64(json.dumps(document).encode())
    text = signing_input + "." + b64(anchor.sign(signing_input.encode()))
    with pytest.raises(MalformedBundle, match=message):
        read_bundle(text, anchor.public())


def test_a_delta_names_its_base(anchor: SigningKey, bundle: TrustBundle) -> None:
    delta = dataclasses.replace(bundle, version=8, base=7)
    assert read_bundle(sign_bundle(delta, anchor), anchor.public()).base == 7


def test_ids_are_packed_sorted_and_unpacked_exactly() -> None:
    ids = _ids(50)
    packed = encode_ids(ids + ids[:5])
    assert decode_ids(packed) == frozenset(ids)
    assert len(packed) == -(-50 * 16 * 4 // 3)
    with pytest.raises(ValueError, match="16 bytes"):
        encode_ids([b64url_encode(b"short")])


@pytest.mark.parametrize(("expires", "until"), [(3600, 3600), (3601, 7200), (7199, 7200)])
def test_revocations_are_grouped_by_the_hour_their_codes_expire(expires: int, until: int) -> None:
    assert bucket(expires) == until


def test_a_hundred_thousand_revocations_fit_well_under_four_megabytes(
    anchor: SigningKey, bundle: TrustBundle
) -> None:
    ids = _ids(100_000)
    big = dataclasses.replace(
        bundle, revoked={bucket(NOW + i * 3600): frozenset(ids[i::100]) for i in range(100)}
    )
    text = sign_bundle(big, anchor)
    assert len(text) < 4 * 1024 * 1024
    read = read_bundle(text, anchor.public())
    assert sum(len(group) for group in read.revoked.values()) == 100_000
