"""The ``MO1:`` Macao wire format: golden vector, round trips, refusals, check order, time, fuzz.

Inputs for the refusal tests are built by hand with ``base45``, ``cbor2`` and ``cryptography`` from
the module's design, not with :func:`sign_macao_code` (which refuses to sign most of them) and not
with cwt, so the reader is checked against the documented format rather than against itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import base45
import cbor2
import pytest
from cbor2 import CBORTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cwt import COSE, COSEKey

from codec.forge import Trust
from yuekang.codec.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    ExpiredCode,
    InvalidCode,
    KeyNotValid,
    MalformedCode,
    NotYetValid,
    UnknownKey,
    UnsupportedVersion,
    UntrustedIssuer,
)
from yuekang.codec.keys import SigningKey, VerificationKey, b64url_decode, b64url_encode
from yuekang.codec.macao import (
    COLOURS,
    DOC_TYPES,
    MAX_INPUT_CHARS,
    PREFIX,
    MacaoCodeClaims,
    VerifiedMacaoCode,
    is_macao_code,
    read_macao_code,
    sign_macao_code,
    source_digest,
)

ISSUER: Final = "MO"
IAT: Final = 1_764_100_000
EXP: Final = IAT + 3600
NOW: Final = IAT + 100
CTI_BYTES: Final = b"example-code-id1"
CTI: Final = "ZXhhbXBsZS1jb2RlLWlkMQ"
NAME: Final = "陳*文"
TAN: Final = "2025-11-25"
TYPICAL: Final = MacaoCodeClaims(
    iss=ISSUER, cti=CTI, iat=IAT, exp=EXP, cor="verde", nome=NAME, tdoc="BIR", tan=TAN
)

GOLDEN_KID_HEX: Final = "0fc1ef66af9fba6917a42c182298c03e"  # b64url: D8HvZq-fumkXpCwYIpjAPg
GOLDEN_PAYLOAD_HEX: Final = (
    "a5"  # map(5)
    "01624d4f"  # 1: "MO"
    "041a692615b0"  # 4: 1764103600
    "061a692607a0"  # 6: 1764100000
    "07506578616d706c652d636f64652d696431"  # 7: h'example-code-id1'
    "3a00010000a4"  # -65537: map(4)
    "63636f72657665726465"  # "cor": "verde"
    "6374616e6a323032352d31312d3235"  # "tan": "2025-11-25"
    "646e6f6d6567e999b32ae69687"  # "nome": "陳*文"
    "6474646f6363424952"  # "tdoc": "BIR"
)
TYPICAL_LENGTH: Final = 276
QR_ALPHANUMERIC: Final = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")

DROP: Final = object()
"""Pass as a claim, health member or header value to leave it out."""


@dataclass(frozen=True)
class Ring:
    """The keys of these tests: the Macao issuer's (fixed, trusted), an Ed25519 key the verifier
    also trusts (so an ES256 header naming it can be tested), and an attacker's."""

    es: SigningKey
    ed: SigningKey
    attacker: SigningKey

    def keys(self, **fields: Any) -> dict[str, VerificationKey]:
        return {
            k.kid: dataclasses.replace(k.public(), **({"issuer": ISSUER} | fields))
            for k in (self.es, self.ed)
        }


@pytest.fixture(scope="module")
def ring(fixed_es_key: SigningKey, fixed_ed_key: SigningKey, trust: Trust) -> Ring:
    return Ring(es=fixed_es_key, ed=fixed_ed_key, attacker=trust.attacker)


def read(
    text: Any, keys: Mapping[str, VerificationKey], now: int = NOW, leeway: int = 60
) -> VerifiedMacaoCode:
    return read_macao_code(text, keys, now=now, leeway=leeway)


# ---------------------------------------------------------------------------- hand-made codes


def health(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"cor": "verde", "tan": TAN, "nome": NAME, "tdoc": "BIR"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not DROP}


def claim_map(changes: Mapping[Any, Any] | None = None, **health_changes: Any) -> dict[Any, Any]:
    body: dict[Any, Any] = {1: ISSUER, 4: EXP, 6: IAT, 7: CTI_BYTES, -65537: health()}
    body[-65537] = health(**health_changes)
    body.update(changes or {})
    return {k: v for k, v in body.items() if v is not DROP}


def relabel(label: int, key: object) -> dict[Any, Any]:
    """The claims with ``label`` moved to ``key``, a value Python finds equal (``True``, ``1.0``).
    A dict literal cannot hold both, so the old label is removed first."""
    body = {k: v for k, v in claim_map().items() if k != label}
    body[key] = claim_map()[label]
    return body


def header(key: SigningKey, changes: Mapping[Any, Any] | None = None) -> dict[Any, Any]:
    body: dict[Any, Any] = {1: -7, 4: b64url_decode(key.kid)}
    body.update(changes or {})
    return {k: v for k, v in body.items() if v is not DROP}


def es256(key: SigningKey) -> Callable[[bytes], bytes]:
    private = key.private_key
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return lambda message: raw_ecdsa(private, message, hashes.SHA256(), 32)


def raw_ecdsa(
    private: ec.EllipticCurvePrivateKey, message: bytes, hash_: hashes.HashAlgorithm, size: int
) -> bytes:
    r, s = decode_dss_signature(private.sign(message, ec.ECDSA(hash_)))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def b45(data: bytes) -> str:
    encoded: bytes = base45.b45encode(data)
    return encoded.decode("ascii")


def encode(message: Any, prefix: str = PREFIX) -> str:
    return prefix + b45(cbor2.dumps(message))


def forge(
    head: Mapping[Any, Any] | bytes,
    payload: Mapping[Any, Any] | bytes,
    sign: Callable[[bytes], bytes] | None,
    *,
    unprotected: Any = None,
    tag: int | None = 18,
    prefix: str = PREFIX,
) -> str:
    """``prefix`` + base45 of a COSE_Sign1 over arbitrary header and payload, signed by ``sign``
    (or with 64 zero bytes when None); ``tag=None`` leaves the array untagged."""
    protected = head if isinstance(head, bytes) else cbor2.dumps(head)
    body = payload if isinstance(payload, bytes) else cbor2.dumps(payload)
    signature = sign(sig_structure(protected, body)) if sign else bytes(64)
    array = [protected, {} if unprotected is None else unprotected, body, signature]
    return encode(array if tag is None else CBORTag(tag, array), prefix)


def valid(key: SigningKey, changes: Mapping[Any, Any] | None = None, **health_changes: Any) -> str:
    return forge(header(key), claim_map(changes, **health_changes), es256(key))


def members(text: str) -> list[Any]:
    message = cbor2.loads(base45.b45decode(text.removeprefix(PREFIX)))
    assert isinstance(message, CBORTag)
    assert message.tag == 18
    return list(message.value)


def with_members(text: str, **changes: Any) -> str:
    names = ("protected", "unprotected", "payload", "signature")
    value = members(text)
    return encode(CBORTag(18, [changes.get(n, v) for n, v in zip(names, value, strict=True)]))


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def nested(depth: int) -> bytes:
    return b"\x81" * depth + b"\x00"


# ---------------------------------------------------------------------------- golden vector


def test_golden_format_checked_without_cwt(fixed_es_key: SigningKey) -> None:
    text = sign_macao_code(TYPICAL, fixed_es_key)

    assert text.startswith("MO1:")
    raw = base45.b45decode(text[4:])
    message = cbor2.loads(raw)
    assert isinstance(message, CBORTag)
    assert message.tag == 18
    protected, unprotected, payload, signature = message.value
    kid = bytes.fromhex(GOLDEN_KID_HEX)
    assert b64url_decode(fixed_es_key.kid) == kid
    assert protected == b"\xa2\x01\x26\x04\x50" + kid
    assert cbor2.loads(protected) == {1: -7, 4: kid}
    assert unprotected == {}
    assert payload == bytes.fromhex(GOLDEN_PAYLOAD_HEX)
    claims = cbor2.loads(payload)
    assert list(claims) == [1, 4, 6, 7, -65537]
    assert claims == {
        1: "MO",
        4: EXP,
        6: IAT,
        7: CTI_BYTES,
        -65537: {"cor": "verde", "tan": TAN, "nome": NAME, "tdoc": "BIR"},
    }
    # Tag 18, array(4), bstr(21), empty map, bstr(88), bstr(64): nothing else in the message.
    assert raw == b"\xd2\x84\x55" + protected + b"\xa0\x58\x58" + payload + b"\x58\x40" + signature
    assert len(text) == TYPICAL_LENGTH
    # RFC 9052 4.4, spelled out byte by byte: array(4), "Signature1", protected, h'', payload.
    to_be_signed = b"\x84\x6aSignature1\x55" + protected + b"\x40\x58\x58" + payload
    assert to_be_signed == sig_structure(protected, payload)
    assert len(signature) == 64
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public = fixed_es_key.private_key.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(der, to_be_signed, ec.ECDSA(hashes.SHA256()))


def test_hand_built_code_reads_back(ring: Ring) -> None:
    # Built from the design with cbor2 and cryptography only: reader and design agree.
    code = read(valid(ring.es), ring.keys())

    assert code.claims == TYPICAL
    assert code.kid == ring.es.kid


def test_cwt_verifies_our_codes(fixed_es_key: SigningKey) -> None:
    public = fixed_es_key.public().to_jwk()
    cose_key = COSEKey.from_jwk({**public, "kid": b64url_decode(fixed_es_key.kid)})

    payload = COSE.new().decode(
        base45.b45decode(sign_macao_code(TYPICAL, fixed_es_key)[4:]), cose_key
    )

    assert payload == bytes.fromhex(GOLDEN_PAYLOAD_HEX)


# ---------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("cor", COLOURS)
@pytest.mark.parametrize("tdoc", DOC_TYPES)
@pytest.mark.parametrize("tan", [TAN, None])
def test_round_trip(fixed_es_key: SigningKey, cor: Any, tdoc: str, tan: str | None) -> None:
    original = dataclasses.replace(TYPICAL, cor=cor, tdoc=tdoc, tan=tan)
    text = sign_macao_code(original, fixed_es_key)

    code = read(text, {fixed_es_key.kid: fixed_es_key.public()})

    assert code.claims == original
    assert code.kid == fixed_es_key.kid == "D8HvZq-fumkXpCwYIpjAPg"
    assert code.digest == source_digest(text)
    assert len(code.digest) == 22


def test_round_trip_with_a_generated_key_and_long_name() -> None:
    key = SigningKey.generate("ES256")
    original = dataclasses.replace(TYPICAL, nome="𠀀" * 64, iss="MO-DSAL")

    assert read(sign_macao_code(original, key), {key.kid: key.public()}).claims == original


def test_tan_is_absent_not_null_when_there_is_none(fixed_es_key: SigningKey) -> None:
    text = sign_macao_code(dataclasses.replace(TYPICAL, tan=None), fixed_es_key)

    assert cbor2.loads(members(text)[2])[-65537] == {"cor": "verde", "nome": NAME, "tdoc": "BIR"}


def test_unknown_claims_and_health_members_are_ignored(ring: Ring) -> None:
    text = valid(ring.es, {5: IAT, 99: "x", -65538: [1, 2]}, vacina=3, nome=NAME)

    assert read(text, ring.keys()).claims == TYPICAL


def test_unprotected_contents_are_ignored(ring: Ring) -> None:
    # An alg or kid in the unprotected map must neither help nor hurt: the protected ones decide.
    unprotected = {1: -8, 4: b64url_decode(ring.attacker.kid), 33: b"cert"}
    text = forge(header(ring.es), claim_map(), es256(ring.es), unprotected=unprotected)

    assert read(text, ring.keys()).kid == ring.es.kid


def test_any_valid_cbor_encoding_of_the_signed_claims_is_accepted(ring: Ring) -> None:
    # Signers write deterministic CBOR; verifiers only need the signature to hold.
    claims = dict(reversed(list(claim_map().items())))

    assert read(forge(header(ring.es), claims, es256(ring.es)), ring.keys()).claims == TYPICAL


# ---------------------------------------------------------------------------- signing


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exp": IAT}, "expire"),
        ({"exp": IAT - 1}, "expire"),
        ({"cor": "green"}, "cor"),
        ({"tdoc": "ID"}, "tdoc"),
        ({"cti": "short"}, "cti"),
        ({"cti": CTI + "A"}, "cti"),
        ({"tan": "2025-2-1"}, "tan"),
        ({"tan": "20251125"}, "tan"),
        ({"nome": ""}, "nome"),
        ({"nome": "x" * 65}, "nome"),
        ({"iat": True}, "iat"),
        ({"iat": -1}, "iat"),
        ({"iss": ""}, "iss"),
    ],
)
def test_sign_refuses_invalid_claims(
    fixed_es_key: SigningKey, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sign_macao_code(dataclasses.replace(TYPICAL, **changes), fixed_es_key)


def test_sign_refuses_eddsa_keys(fixed_ed_key: SigningKey) -> None:
    with pytest.raises(ValueError, match="ES256"):
        sign_macao_code(TYPICAL, fixed_ed_key)


# ---------------------------------------------------------------------------- size


def test_typical_code_is_small_and_alphanumeric(fixed_es_key: SigningKey) -> None:
    text = sign_macao_code(dataclasses.replace(TYPICAL, cti=b64url_encode(bytes(16))), fixed_es_key)

    assert len(text) <= 400
    assert len(text) == TYPICAL_LENGTH  # the length the design documents
    assert set(text) <= QR_ALPHANUMERIC


# ---------------------------------------------------------------------------- refusals


def _ed_cose_key(key: SigningKey) -> Any:
    private = key.private_key
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    d = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    jwk = key.public().to_jwk() | {"d": b64url_encode(d), "kid": b64url_decode(key.kid)}
    return COSEKey.from_jwk(jwk)


def _eddsa_via_cwt(r: Ring) -> str:
    message = COSE.new().encode_and_sign(
        cbor2.dumps(claim_map()),
        key=_ed_cose_key(r.ed),
        protected={1: -8, 4: b64url_decode(r.ed.kid)},
        unprotected={},
    )
    assert isinstance(message, bytes)
    return PREFIX + b45(message)


def _es384_by_hand(r: Ring) -> str:
    p384 = ec.generate_private_key(ec.SECP384R1())
    return forge(
        header(r.es, {1: -35}),
        claim_map(),
        lambda message: raw_ecdsa(p384, message, hashes.SHA384(), 48),
    )


def _tampered_payload(r: Ring) -> str:
    text = valid(r.es)
    payload = members(text)[2]
    return with_members(text, payload=flip(payload, payload.index(b"verde")))


def _tampered_signature(r: Ring) -> str:
    text = valid(r.es)
    return with_members(text, signature=flip(members(text)[3], 10))


def _body(r: Ring) -> str:
    return valid(r.es).removeprefix(PREFIX)


Build = Callable[[Ring], str]
REFUSALS: Final[list[Any]] = [
    # prefix and size
    pytest.param(lambda r: "MO2:" + _body(r), UnsupportedVersion, id="prefix-MO2"),
    pytest.param(lambda r: "MO10:" + _body(r), UnsupportedVersion, id="prefix-MO10"),
    pytest.param(lambda r: "YK1:" + _body(r), MalformedCode, id="prefix-YK1"),
    pytest.param(lambda r: "mo1:" + _body(r), MalformedCode, id="prefix-lowercase"),
    pytest.param(lambda r: " " + valid(r.es), MalformedCode, id="prefix-leading-space"),
    pytest.param(lambda r: "", MalformedCode, id="empty"),
    pytest.param(lambda r: "MO1:" + "0" * (MAX_INPUT_CHARS - 3), MalformedCode, id="too-long"),
    # base45
    pytest.param(lambda r: "MO1:", MalformedCode, id="no-body"),
    pytest.param(lambda r: "MO1:%69 VD92EX0", MalformedCode, id="base45-not-cbor"),
    pytest.param(lambda r: "MO1:" + _body(r).lower(), MalformedCode, id="base45-lowercase"),
    pytest.param(lambda r: "MO1:GGW", MalformedCode, id="base45-over-range"),
    pytest.param(lambda r: "MO1:一二三", MalformedCode, id="base45-non-ascii"),
    pytest.param(lambda r: valid(r.es)[:-1], MalformedCode, id="truncated-1"),
    pytest.param(lambda r: valid(r.es)[:-2], MalformedCode, id="truncated-2"),
    pytest.param(lambda r: valid(r.es)[:-3], MalformedCode, id="truncated-3"),
    pytest.param(lambda r: valid(r.es)[:40], MalformedCode, id="truncated-half"),
    pytest.param(lambda r: valid(r.es) + "\n", MalformedCode, id="trailing-newline"),
    pytest.param(
        lambda r: PREFIX + b45(base45.b45decode(_body(r)) + b"\x00"),
        MalformedCode,
        id="trailing-cbor-byte",
    ),
    # COSE structure
    pytest.param(lambda r: encode(members(valid(r.es))), MalformedCode, id="untagged"),
    pytest.param(lambda r: encode(CBORTag(17, members(valid(r.es)))), MalformedCode, id="tag-17"),
    pytest.param(lambda r: encode(CBORTag(98, members(valid(r.es)))), MalformedCode, id="tag-98"),
    pytest.param(
        lambda r: encode(CBORTag(61, CBORTag(18, members(valid(r.es))))),
        MalformedCode,
        id="cwt-tag-61",
    ),
    pytest.param(
        lambda r: encode(CBORTag(18, members(valid(r.es))[:3])), MalformedCode, id="three-members"
    ),
    pytest.param(
        lambda r: with_members(valid(r.es), protected={1: -7}), MalformedCode, id="protected-map"
    ),
    pytest.param(
        lambda r: with_members(valid(r.es), unprotected=b""), MalformedCode, id="unprotected-bstr"
    ),
    pytest.param(
        lambda r: with_members(valid(r.es), payload=None), MalformedCode, id="payload-detached"
    ),
    pytest.param(
        lambda r: with_members(valid(r.es), signature="sig"), MalformedCode, id="signature-text"
    ),
    pytest.param(
        lambda r: with_members(valid(r.es), protected=b"\xa2\x01\x26"),
        MalformedCode,
        id="header-cut",
    ),
    pytest.param(
        lambda r: with_members(valid(r.es), protected=cbor2.dumps([1, -7])),
        MalformedCode,
        id="header-array",
    ),
    pytest.param(lambda r: "MO1:" + b45(nested(2000)), MalformedCode, id="nested-2000"),
    pytest.param(
        lambda r: "MO1:" + b45(b"\xd2\x84" + nested(500)),
        MalformedCode,
        id="nested-in-sign1",
    ),
    pytest.param(
        lambda r: "MO1:" + b45(b"\x9b" + b"\xff" * 8),
        MalformedCode,
        id="huge-array-length",
    ),
    pytest.param(
        lambda r: "MO1:" + b45(b"\x5b\x00\x00\x00\x01\x00\x00\x00\x00"),
        MalformedCode,
        id="huge-bstr-length",
    ),
    pytest.param(
        # A bigfloat that cbor2 evaluates eagerly into decimal.Overflow, in the unsigned part.
        lambda r: with_members(valid(r.es), unprotected={9: CBORTag(5, [2**63 - 1, 1])}),
        MalformedCode,
        id="decimal-overflow-unprotected",
    ),
    pytest.param(
        lambda r: with_members(
            valid(r.es), protected=b"\xc4\x82\x1b" + b"\x7f" + b"\xff" * 7 + b"\x01"
        ),
        MalformedCode,
        id="decimal-invalid-protected",
    ),
    # algorithm
    pytest.param(_eddsa_via_cwt, AlgorithmNotAllowed, id="alg-eddsa-cwt"),
    pytest.param(_es384_by_hand, AlgorithmNotAllowed, id="alg-es384"),
    pytest.param(
        lambda r: forge(header(r.es, {1: DROP}), claim_map(), None),
        AlgorithmNotAllowed,
        id="alg-missing",
    ),
    pytest.param(
        lambda r: forge(header(r.es, {1: "ES256"}), claim_map(), None),
        AlgorithmNotAllowed,
        id="alg-text",
    ),
    pytest.param(
        lambda r: forge(header(r.es, {1: -7.0}), claim_map(), None),
        AlgorithmNotAllowed,
        id="alg-float",
    ),
    pytest.param(
        lambda r: forge(header(r.es, {1: 2**16000}), claim_map(), None),
        AlgorithmNotAllowed,
        id="alg-bignum",
    ),
    pytest.param(
        lambda r: forge(header(r.es, {1: DROP}), claim_map(), es256(r.es), unprotected={1: -7}),
        AlgorithmNotAllowed,
        id="alg-only-unprotected",
    ),
    pytest.param(
        lambda r: forge(
            b"", claim_map(), es256(r.es), unprotected={1: -7, 4: b64url_decode(r.es.kid)}
        ),
        AlgorithmNotAllowed,
        id="protected-empty",
    ),
    pytest.param(
        lambda r: forge(header(r.ed), claim_map(), es256(r.es)),
        AlgorithmNotAllowed,
        id="kid-of-an-eddsa-key",
    ),
    # kid and crit
    pytest.param(
        lambda r: forge(header(r.es, {4: DROP}), claim_map(), es256(r.es)),
        MalformedCode,
        id="kid-missing",
    ),
    pytest.param(
        lambda r: forge(header(r.es, {4: r.es.kid}), claim_map(), es256(r.es)),
        MalformedCode,
        id="kid-text",
    ),
    pytest.param(
        lambda r: forge(header(r.es, {4: bytes(15)}), claim_map(), es256(r.es)),
        MalformedCode,
        id="kid-15-bytes",
    ),
    pytest.param(
        lambda r: forge(header(r.es, {2: [-65537]}), claim_map(), es256(r.es)),
        MalformedCode,
        id="crit",
    ),
    pytest.param(lambda r: sign_macao_code(TYPICAL, r.attacker), UnknownKey, id="unknown-kid"),
    pytest.param(
        lambda r: forge(header(r.es, {4: bytes(16)}), claim_map(), es256(r.es)),
        UnknownKey,
        id="unknown-kid-zeros",
    ),
    # signature
    pytest.param(_tampered_payload, BadSignature, id="tampered-payload"),
    pytest.param(_tampered_signature, BadSignature, id="tampered-signature"),
    pytest.param(
        lambda r: forge(header(r.es), claim_map(), es256(r.attacker)), BadSignature, id="wrong-key"
    ),
    pytest.param(
        lambda r: forge(header(r.es), claim_map(), None), BadSignature, id="zero-signature"
    ),
    pytest.param(
        lambda r: forge(header(r.es), claim_map(), lambda m: b""),
        BadSignature,
        id="empty-signature",
    ),
    pytest.param(
        lambda r: forge(header(r.es), claim_map(), lambda m: es256(r.es)(m) + b"\x00"),
        BadSignature,
        id="long-signature",
    ),
    pytest.param(
        lambda r: with_members(
            valid(r.es), unprotected={}, payload=cbor2.dumps(claim_map(cor="vermelho"))
        ),
        BadSignature,
        id="swapped-claims",
    ),
]
CLAIM_REFUSALS: Final[list[Any]] = [
    pytest.param(claim_map(cor="azul"), id="colour-azul"),
    pytest.param(claim_map(cor="green"), id="colour-english"),
    pytest.param(claim_map(cor=1), id="colour-int"),
    pytest.param(claim_map(cor=DROP), id="colour-missing"),
    pytest.param(claim_map({-65537: DROP}), id="private-claim-missing"),
    pytest.param(claim_map({-65537: [health()]}), id="private-claim-array"),
    pytest.param(claim_map({-65536: health(), -65537: DROP}), id="private-claim-wrong-label"),
    pytest.param(claim_map(nome=DROP), id="nome-missing"),
    pytest.param(claim_map(nome=""), id="nome-empty"),
    pytest.param(claim_map(nome="x" * 65), id="nome-too-long"),
    pytest.param(claim_map(nome=b"name"), id="nome-bytes"),
    pytest.param(claim_map(tdoc=DROP), id="tdoc-missing"),
    pytest.param(claim_map(tdoc="ID"), id="tdoc-unknown"),
    pytest.param(claim_map(tdoc="bir"), id="tdoc-lowercase"),
    pytest.param(claim_map(tan="2025-13-01"), id="tan-month-13"),
    pytest.param(claim_map(tan="20251125"), id="tan-basic-format"),
    pytest.param(claim_map(tan="2025-W48-2"), id="tan-week-date"),
    pytest.param(claim_map(tan=date(2025, 11, 25)), id="tan-date-tag"),
    pytest.param(claim_map(tan=None), id="tan-null"),
    pytest.param(claim_map({7: CTI_BYTES[:15]}), id="cti-15-bytes"),
    pytest.param(claim_map({7: CTI}), id="cti-text"),
    pytest.param(claim_map({7: DROP}), id="cti-missing"),
    pytest.param(claim_map({6: True}), id="iat-bool"),
    pytest.param(claim_map({6: DROP}), id="iat-missing"),
    pytest.param(claim_map({4: EXP + 0.5}), id="exp-float"),
    pytest.param(claim_map({4: -1}), id="exp-negative"),
    pytest.param(claim_map({4: 2**64}), id="exp-bignum"),
    pytest.param(claim_map({4: CBORTag(1, EXP)}), id="exp-datetime-tag"),
    pytest.param(claim_map({1: DROP}), id="iss-missing"),
    pytest.param(claim_map({1: ""}), id="iss-empty"),
    pytest.param(relabel(1, True), id="iss-under-bool-key"),
    pytest.param(relabel(6, 6.0), id="iat-under-float-key"),
    pytest.param([claim_map()], id="payload-array"),
    pytest.param(b"", id="payload-empty"),
    pytest.param(cbor2.dumps(claim_map()) + b"\x00", id="payload-trailing-byte"),
    pytest.param(nested(1000), id="payload-nested"),
    pytest.param(CBORTag(61, claim_map()), id="payload-cwt-tag"),
]


@pytest.mark.parametrize(("build", "error"), REFUSALS)
def test_refusal(build: Build, error: type[InvalidCode], ring: Ring) -> None:
    text = build(ring)

    with pytest.raises(InvalidCode) as raised:
        read(text, ring.keys())

    assert type(raised.value) is error


@pytest.mark.parametrize("payload", CLAIM_REFUSALS)
def test_signed_claims_of_the_wrong_shape_are_malformed(payload: Any, ring: Ring) -> None:
    body = payload if isinstance(payload, bytes) else cbor2.dumps(payload)
    text = forge(header(ring.es), body, es256(ring.es))

    with pytest.raises(MalformedCode) as raised:
        read(text, ring.keys(), now=EXP + 10_000)  # malformed claims outrank the clock

    assert raised.value.reason == "malformed"


@pytest.mark.parametrize("junk", [None, 42, b"MO1:", ["MO1:"], {"qr": "MO1:"}])
def test_non_text_input_is_malformed(junk: Any, ring: Ring) -> None:
    with pytest.raises(MalformedCode):
        read(junk, ring.keys())


def test_bytes_of_a_valid_code_are_not_accepted(ring: Ring) -> None:
    with pytest.raises(MalformedCode):
        read(valid(ring.es).encode(), ring.keys())


def test_input_at_the_size_limit_is_parsed(ring: Ring) -> None:
    # Padding the ignored unprotected map keeps the code valid and grows the text to the limit.
    code = valid(ring.es)
    filler = MAX_INPUT_CHARS // 3 * 2
    while len(text := with_members(code, unprotected={99: bytes(filler)})) > MAX_INPUT_CHARS:
        filler -= 1
    assert len(text) > MAX_INPUT_CHARS - 3

    assert read(text, ring.keys()).claims == TYPICAL


# ---------------------------------------------------------------------------- check order


@pytest.mark.parametrize(
    ("build", "keys_change", "now", "error"),
    [
        pytest.param(
            lambda r: forge(header(r.attacker, {1: -8}), claim_map(), None),
            {},
            NOW,
            AlgorithmNotAllowed,
            id="alg-before-kid",
        ),
        pytest.param(
            lambda r: forge(header(r.attacker), claim_map(cor="azul"), es256(r.attacker)),
            {},
            EXP + 10_000,
            UnknownKey,
            id="key-before-claims-and-time",
        ),
        pytest.param(
            lambda r: forge(header(r.es), claim_map({1: "XX"}, cor="azul"), es256(r.attacker)),
            {"compromised": True},
            EXP + 10_000,
            BadSignature,
            id="signature-before-claims-issuer-key-and-time",
        ),
        pytest.param(
            lambda r: valid(r.es, {1: "XX"}, cor="azul"),
            {"compromised": True},
            EXP + 10_000,
            MalformedCode,
            id="claims-before-issuer",
        ),
        pytest.param(
            lambda r: valid(r.es, {1: "XX"}),
            {"compromised": True},
            EXP + 10_000,
            UntrustedIssuer,
            id="issuer-before-key-validity-and-time",
        ),
        pytest.param(
            lambda r: valid(r.es),
            {"compromised": True},
            EXP + 10_000,
            KeyNotValid,
            id="key-validity-before-time",
        ),
        pytest.param(
            lambda r: valid(r.es), {}, IAT - 10_000, NotYetValid, id="not-yet-valid-before-expired"
        ),
    ],
)
def test_first_failing_check_decides(
    build: Build, keys_change: dict[str, Any], now: int, error: type[InvalidCode], ring: Ring
) -> None:
    with pytest.raises(InvalidCode) as raised:
        read(build(ring), ring.keys(**keys_change), now=now)

    assert type(raised.value) is error


# ---------------------------------------------------------------------------- time


@pytest.mark.parametrize("leeway", [0, 60, 300])
def test_expiry_boundary(ring: Ring, leeway: int) -> None:
    text = valid(ring.es)

    assert read(text, ring.keys(), now=EXP + leeway - 1, leeway=leeway).claims.exp == EXP
    with pytest.raises(ExpiredCode) as raised:
        read(text, ring.keys(), now=EXP + leeway, leeway=leeway)
    assert raised.value.reason == "expired"


@pytest.mark.parametrize("leeway", [0, 60, 300])
def test_not_yet_valid_boundary(ring: Ring, leeway: int) -> None:
    text = valid(ring.es)

    assert read(text, ring.keys(), now=IAT - leeway, leeway=leeway).claims.iat == IAT
    with pytest.raises(NotYetValid) as raised:
        read(text, ring.keys(), now=IAT - leeway - 1, leeway=leeway)
    assert raised.value.reason == "not_yet_valid"


def test_default_leeway_is_60_seconds(ring: Ring) -> None:
    text = valid(ring.es)

    read_macao_code(text, ring.keys(), now=EXP + 59)
    with pytest.raises(ExpiredCode):
        read_macao_code(text, ring.keys(), now=EXP + 60)


def test_time_is_never_read_from_the_system_clock(ring: Ring) -> None:
    # Issued in 1970: a library that checked exp against the real clock would refuse it.
    text = valid(ring.es, {6: 1_000, 4: 4_600})

    assert read(text, ring.keys(), now=2_000).claims.iat == 1_000


# ---------------------------------------------------------------------------- issuer and key


def test_issuer_mismatch(ring: Ring) -> None:
    with pytest.raises(UntrustedIssuer) as raised:
        read(valid(ring.es, {1: "HK"}), ring.keys())

    assert raised.value.reason == "untrusted_issuer"


def test_key_without_issuer_accepts_any_issuer(ring: Ring) -> None:
    assert read(valid(ring.es, {1: "HK"}), ring.keys(issuer=None)).claims.iss == "HK"


def test_compromised_key(ring: Ring) -> None:
    with pytest.raises(KeyNotValid) as raised:
        read(valid(ring.es), ring.keys(compromised=True))

    assert raised.value.reason == "key_not_valid"


@pytest.mark.parametrize("leeway", [0, 60])
def test_key_not_before_boundary(ring: Ring, leeway: int) -> None:
    text = valid(ring.es)

    read(text, ring.keys(not_before=IAT + leeway), leeway=leeway)
    with pytest.raises(KeyNotValid):
        read(text, ring.keys(not_before=IAT + leeway + 1), leeway=leeway)


@pytest.mark.parametrize("leeway", [0, 60])
def test_key_not_after_boundary(ring: Ring, leeway: int) -> None:
    text = valid(ring.es)

    read(text, ring.keys(not_after=EXP - leeway), leeway=leeway)
    with pytest.raises(KeyNotValid):
        read(text, ring.keys(not_after=EXP - leeway - 1), leeway=leeway)


# ---------------------------------------------------------------------------- dispatch, digest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MO1:", True),
        ("MO2:RRQ", True),
        ("MO10:", True),
        ("YK1:abc", False),
        ("mo1:", False),
        ("MO:", False),
        ("MOX:", False),
        ("MO١:", False),  # an Arabic-Indic digit is not a version number
        ("", False),
        (None, False),
    ],
)
def test_is_macao_code(text: Any, expected: bool) -> None:
    assert is_macao_code(text) is expected


def test_source_digest_is_a_truncated_sha256() -> None:
    text = "MO1:" + "0" * 30

    digest = source_digest(text)

    assert digest == b64url_encode(hashlib.sha256(text.encode()).digest()[:16])
    assert len(digest) == 22
    assert source_digest(text + "0") != digest
    assert source_digest("陳") == b64url_encode(hashlib.sha256("陳".encode()).digest()[:16])


# ---------------------------------------------------------------------------- fuzz


def _mutate_text(rng: random.Random, text: str) -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:a\n\x00é"
    i = rng.randrange(len(text))
    match rng.randrange(4):
        case 0:
            return text[:i] + rng.choice(alphabet) + text[i + 1 :]
        case 1:
            return text[:i] + text[i + 1 :]
        case 2:
            return text[:i] + rng.choice(alphabet) + text[i:]
        case _:
            return text[:i]


def _mutate_bytes(rng: random.Random, raw: bytes) -> bytes:
    i = rng.randrange(len(raw))
    match rng.randrange(5):
        case 0:
            return raw[:i] + bytes([raw[i] ^ (1 << rng.randrange(8))]) + raw[i + 1 :]
        case 1:
            return raw[:i] + bytes([rng.randrange(256)]) + raw[i + 1 :]
        case 2:
            return raw[:i] + bytes([rng.randrange(256)]) + raw[i:]
        case 3:
            return raw[:i] + raw[i + 1 :]
        case _:
            return raw[:i]


def test_fuzz_only_invalid_code_escapes(ring: Ring) -> None:
    rng = random.Random(20251125)
    text = valid(ring.es)
    raw = base45.b45decode(text[4:])
    keys = ring.keys()
    outcomes: set[type[InvalidCode] | None] = set()
    for round_ in range(600):
        kind = round_ % 3
        if kind == 0:
            candidate = _mutate_text(rng, text)
        elif kind == 1:
            mutated = _mutate_bytes(rng, raw)
            for _ in range(rng.randrange(3)):
                mutated = _mutate_bytes(rng, mutated) if mutated else mutated
            candidate = PREFIX + b45(mutated)
        else:
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
            candidate = PREFIX + b45(rng.choice([b"\xd2\x84", b""]) + junk)
        try:
            code = read(candidate, keys)
        except InvalidCode as exc:
            outcomes.add(type(exc))
        else:
            # A mutation can only succeed by not changing anything signed.
            assert code.claims == TYPICAL
            outcomes.add(None)
    # The loop reached past the parser, not just its first line of defence.
    assert {MalformedCode, BadSignature} <= outcomes
