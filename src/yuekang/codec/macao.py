"""The Macao health-code wire format, version 1 (``MO1:``), as issued by the reference Macao system.

This is not our format (ours is ``YK1:`` + compact JWS, see :mod:`yuekang.codec.healthcode`): it is
the one we read when a Macao code is presented at a Guangdong gate, and the one we sign when we
stand in for the Macao issuer in tests and interop drills. The module is pure: no settings, no
database, no clock (``now`` is an argument), no network.

QR text
=======

::

    MO1:<base45 of one COSE_Sign1 message>

- ``MO1:`` is the literal prefix. ``MO`` followed by other digits (``MO2:``, ``MO10:``) is a later
  version: verifiers answer ``unsupported_version``. Anything else is ``malformed``.
- base45 is RFC 9285 (alphabet ``0-9A-Z $%*+-./:``), so the whole text, prefix included, stays in
  the QR alphanumeric mode. The bytes are not compressed. Only the canonical spelling is accepted:
  decoding and re-encoding must give the text back (no trailing newline, no over-range triplets).
- The bytes are exactly one CBOR data item (nothing after it): a COSE_Sign1 message (RFC 9052
  section 4.2) **with** its CBOR tag 18. The CWT tag 61 is not used, and an untagged array is
  refused::

    18([
        protected:   bstr .cbor {1: -7, 4: kid},   ; alg ES256, kid (16 bytes)
        unprotected: {},                           ; empty map
        payload:     bstr .cbor claims,            ; the CWT claims set (RFC 8392)
        signature:   bstr,                         ; ES256: 64 bytes r || s (RFC 9053 2.1)
    ])

Protected header
----------------

``{1: -7, 4: kid}`` encoded as ``A2 01 26 04 50 <16 bytes>``.

- ``1`` (alg): ``-7`` (ES256: ECDSA on P-256 with SHA-256). Any other value, a missing alg, or a
  text alg is refused with ``algorithm_not_allowed``; so is a code whose key, in the verifier's
  trust store, is not an ES256 key.
- ``4`` (kid): 16 bytes, the key id of :mod:`yuekang.codec.keys` before base64url encoding, i.e.
  the first 128 bits of the RFC 7638 thumbprint of the public JWK (``b64url_decode(key.kid)``).
  Any other type or length is ``malformed``; a kid the verifier does not hold is ``unknown_key``.
- ``2`` (crit) is refused as ``malformed``: we understand no extensions.
- Other protected labels are ignored. The unprotected map is written empty; a verifier ignores its
  contents, and in particular never takes ``alg`` or ``kid`` from it.

Signature
---------

ES256 over the RFC 9052 ``Sig_structure``::

    ["Signature1", protected (the bstr as received), h'' (no external AAD), payload (the bstr)]

The signature is the fixed-width ``r || s`` (32 + 32 bytes), never DER.

Claims (payload)
----------------

A CBOR map with integer labels. The signer writes core deterministic encoding (RFC 8949 4.2.1):
preferred integer widths, keys in bytewise order of their encodings (the order of the table, and
``cor``, ``tan``, ``nome``, ``tdoc`` in the health map). Verifiers only check the signature, so
they accept any valid encoding.

==========  ========  ============================================================================
label       name      value
==========  ========  ============================================================================
``1``       iss       text, the issuer (``"MO"`` for the Macao health bureau)
``4``       exp       unsigned integer, UTC seconds; must be greater than iat when signed
``6``       iat       unsigned integer, UTC seconds
``7``       cti       bstr of 16 random bytes: the code id (exposed in Python as base64url text)
``-65537``  health    a map with text keys, in Portuguese, below
==========  ========  ============================================================================

The health map (private claim ``-65537``, below -65536 as RFC 8392 reserves for private use)::

    {"cor": "verde", "tan": "2025-11-25", "nome": "陳*文", "tdoc": "BIR"}

- ``cor`` (colour): ``"verde"`` (green), ``"amarelo"`` (yellow) or ``"vermelho"`` (red).
- ``nome`` (name): the masked name for the human check at the gate, 1 to 64 characters.
- ``tdoc`` (document type): ``"BIR"`` (Macao resident identity card), ``"PTM"`` (Mainland travel
  permit for Hong Kong and Macao residents, 回乡证), ``"PASS"`` (passport) or ``"OUTRO"`` (other).
- ``tan`` (optional): the date of the latest negative nucleic-acid test, ``"YYYY-MM-DD"`` text (not
  the CBOR date tag). Absent when there is none; ``null`` is not accepted.

Times are integers (no floats, no date tags) between 0 and 2**63 - 1. CBOR booleans are never
accepted where an integer is expected; members keyed by anything but an integer or a text (``true``,
``1.0``) are ignored rather than read as label 1. Claims and health-map members this version
does not know are ignored, so the issuer can add some without breaking deployed gates; a change old
verifiers must not accept gets a new prefix.

Verification order
==================

:func:`read_macao_code` runs these checks in order and raises the first failure as a subclass of
:class:`~yuekang.codec.errors.InvalidCode`, and nothing else, whatever the input:

1. a ``str`` of at most :data:`MAX_INPUT_CHARS`, prefix ``MO1:`` (else ``unsupported_version`` for
   another ``MO<n>:``, ``malformed`` otherwise);
2. canonical base45; one CBOR item; tag 18; four members of the right types (``malformed``);
3. protected alg is ES256 (``algorithm_not_allowed``); no crit, a 16-byte kid (``malformed``);
4. kid in the trust store (``unknown_key``), bound there to an ES256 P-256 key
   (``algorithm_not_allowed``);
5. signature (``bad_signature``);
6. claim types and values as above (``malformed``);
7. ``iss`` equals the key's issuer when the trust store binds one (``untrusted_issuer``);
8. the key is not compromised, ``iat >= not_before - leeway`` and ``exp <= not_after + leeway``
   (``key_not_valid``);
9. ``now >= iat - leeway`` (``not_yet_valid``) and ``now < exp + leeway`` (``expired``).

Size
====

A typical code (iss ``"MO"``, a three-character Chinese masked name, ``"BIR"``, a NAT date) is 181
bytes of COSE -- 21 of protected header, 88 of claims, 64 of signature, 8 of framing -- and so
**276 characters** of QR text (base45 spends 3 characters per 2 bytes and 2 on an odd last byte:
4 + 270 + 2), all in the QR alphanumeric set.

Source digest
=============

:func:`source_digest` is the base64url of the first 16 bytes of SHA-256 over the QR text (UTF-8),
22 characters. A converted ``YK1:`` code quotes it to name the Macao code it came from. It names a
*text*, not a code: ECDSA signatures are malleable (``(r, n - s)`` verifies too) and the ignored
unprotected map can be refilled, so one Macao code can have several valid texts. Deduplicate on
``(iss, cti)``, never on the digest alone.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, Literal

import base45
import cbor2
from cryptography.hazmat.primitives.asymmetric import ec
from cwt import COSE, COSEKey, VerifyError
from cwt.cose_key_interface import COSEKeyInterface

from yuekang.codec.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    MalformedCode,
    UnknownKey,
    UnsupportedVersion,
)
from yuekang.codec.formats import PartnerCode
from yuekang.codec.keys import (
    KID_BYTES,
    PublicKey,
    SigningKey,
    VerificationKey,
    b64url_decode,
    b64url_encode,
    check_validity,
    public_jwk,
)

PREFIX: Final = "MO1:"
MAX_INPUT_CHARS: Final = 4096
"""Longer input is refused as malformed before any parsing, whatever it claims to be."""
MacaoColour = Literal["verde", "amarelo", "vermelho"]
COLOURS: Final[tuple[MacaoColour, ...]] = ("verde", "amarelo", "vermelho")
DOC_TYPES: Final[tuple[str, ...]] = ("BIR", "PTM", "PASS", "OUTRO")
MAX_NAME_CHARS: Final = 64
CTI_BYTES: Final = 16
DIGEST_BYTES: Final = 16

# COSE header labels (RFC 9052 3.1) and algorithm (RFC 9053 2.1).
_ALG: Final = 1
_CRIT: Final = 2
_KID: Final = 4
_ES256: Final = -7
_SIGN1_TAG: Final = 18
# CWT claim labels (RFC 8392 4) and our private claim.
_ISS: Final = 1
_EXP: Final = 4
_IAT: Final = 6
_CTI: Final = 7
_HEALTH: Final = -65537

_MAX_SECONDS: Final = 2**63 - 1
_VERSION_RE: Final = re.compile(r"MO[0-9]+:")
_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# The COSE object holds only configuration (all defaults: nothing is added to the headers behind
# our back), so one instance serves every call.
_COSE: Final = COSE.new()


@dataclass(frozen=True, slots=True)
class MacaoCodeClaims:
    """The signed claims of a Macao health code."""

    iss: str
    cti: str
    """The 16-byte code id, base64url without padding (22 characters)."""
    iat: int
    exp: int
    cor: MacaoColour
    nome: str
    tdoc: str
    tan: str | None = None
    """Date of the latest negative NAT, ``YYYY-MM-DD``, when there is one."""


@dataclass(frozen=True, slots=True)
class VerifiedMacaoCode:
    """A Macao code whose signature, key, issuer and validity window all checked out."""

    claims: MacaoCodeClaims
    kid: str
    """The COSE kid, base64url: the key id in :mod:`yuekang.codec.keys`."""
    digest: str
    """:func:`source_digest` of the QR text."""


def is_macao_code(qr_text: str) -> bool:
    """Whether ``qr_text`` claims to be a Macao code of any version: a cheap dispatch test."""
    return isinstance(qr_text, str) and _VERSION_RE.match(qr_text) is not None


def source_digest(qr_text: str) -> str:
    """The base64url of the first 16 bytes of SHA-256 over ``qr_text`` in UTF-8 (22 characters)."""
    return b64url_encode(hashlib.sha256(qr_text.encode("utf-8")).digest()[:DIGEST_BYTES])


def sign_macao_code(claims: MacaoCodeClaims, key: SigningKey) -> str:
    """Sign ``claims`` with ``key`` (ES256 only) and return the QR text.

    Raises ``ValueError`` for any other key, and for claims the format cannot carry or a code that
    does not expire after it is issued.
    """
    private_key = key.private_key
    if key.alg != "ES256" or not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise ValueError("Macao codes are signed with ES256 (P-256) keys only")
    _check_claims(claims)
    if claims.exp <= claims.iat:
        raise ValueError("a code must expire after it is issued")
    kid = b64url_decode(key.kid)
    message = _COSE.encode_and_sign(
        cbor2.dumps(_claims_map(claims), canonical=True),
        key=_cose_key(kid, private_key),
        protected={_ALG: _ES256, _KID: kid},
        unprotected={},
    )
    # encode_and_sign returns a CBORTag only when asked for one with out="cbor2/CBORTag".
    assert isinstance(message, bytes)
    encoded: bytes = base45.b45encode(message)
    return PREFIX + encoded.decode("ascii")


def read_macao_code(
    qr_text: str,
    keys: Mapping[str, VerificationKey],
    *,
    now: int,
    leeway: int = 60,
) -> VerifiedMacaoCode:
    """Verify a Macao health code and return its claims.

    ``keys`` maps key ids (base64url) to trusted keys; ``now`` is the verifier's clock in UTC
    seconds. The checks and their order are in the module documentation; the first failure is
    raised as a subclass of :class:`~yuekang.codec.errors.InvalidCode`.
    """
    if not isinstance(qr_text, str) or len(qr_text) > MAX_INPUT_CHARS:
        raise MalformedCode("not a Macao health code of a plausible size")
    if not qr_text.startswith(PREFIX):
        version = _VERSION_RE.match(qr_text)
        if version:
            raise UnsupportedVersion(
                f"unsupported Macao health-code version {version.group()[:-1][:16]!r}"
            )
        raise MalformedCode("does not start with the MO1: prefix")
    message = _cbor(_base45(qr_text[len(PREFIX) :]), "COSE message")
    protected, payload = _sign1_parts(message)
    kid_bytes = _header(protected)
    kid = b64url_encode(kid_bytes)
    key = keys.get(kid)
    if key is None:
        raise UnknownKey("the signing key is not trusted here")
    public_key = key.public_key
    if not (key.alg == "ES256" and _is_p256(public_key)):
        raise AlgorithmNotAllowed(f"key {kid} is bound to {key.alg}, not ES256")
    assert isinstance(public_key, ec.EllipticCurvePublicKey)  # _is_p256 narrowed it
    try:
        # The key carries the header's own kid bytes: cwt skips every key whose kid differs.
        _COSE.decode_with_headers(message, _cose_key(kid_bytes, public_key))
    except VerifyError as exc:
        raise BadSignature("the signature does not match") from exc
    except Exception as exc:
        # The structure was checked above, so this is cwt refusing something we let through;
        # whatever it is, the code is not acceptable and must not escape as a library error.
        raise MalformedCode("the COSE_Sign1 message cannot be verified") from exc

    claims = _claims(_cbor(payload, "payload"))
    check_validity(
        key, kid, issuer=claims.iss, iat=claims.iat, exp=claims.exp, now=now, leeway=leeway
    )
    return VerifiedMacaoCode(claims=claims, kid=kid, digest=source_digest(qr_text))


def _claims_map(claims: MacaoCodeClaims) -> dict[int, Any]:
    health: dict[str, str] = {"cor": claims.cor, "nome": claims.nome, "tdoc": claims.tdoc}
    if claims.tan is not None:
        health["tan"] = claims.tan
    return {
        _ISS: claims.iss,
        _EXP: claims.exp,
        _IAT: claims.iat,
        _CTI: b64url_decode(claims.cti),
        _HEALTH: health,
    }


def _cose_key(
    kid: bytes, key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey
) -> COSEKeyInterface:
    """The cwt COSE key for one of our P-256 keys.

    The kid goes in as bytes: cwt turns a text JWK ``kid`` into its UTF-8 bytes, not its base64url
    decoding, and would then look for a 22-byte kid in the header instead of our 16 bytes."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    jwk: dict[str, Any] = {**public_jwk(public), "alg": "ES256", "kid": kid}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        jwk["d"] = b64url_encode(key.private_numbers().private_value.to_bytes(32, "big"))
    return COSEKey.from_jwk(jwk)


def _is_p256(key: PublicKey) -> bool:
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)


def _base45(text: str) -> bytes:
    try:
        raw: bytes = base45.b45decode(text)
    except Exception as exc:
        # base45 promises ValueError, but a decoder of untrusted input must not leak anything.
        raise MalformedCode("the text after MO1: is not base45") from exc
    # The library tolerates a trailing newline; one spelling per code keeps source_digest stable.
    if base45.b45encode(raw).decode("ascii") != text:
        raise MalformedCode("the base45 text is not canonical")
    return raw


def _cbor(data: bytes, what: str) -> Any:
    """Exactly one CBOR item. Raises MalformedCode for anything cbor2 refuses, including what it
    refuses with other than its own errors: semantic tags are decoded eagerly, so a bigfloat can
    raise decimal.Overflow, and nesting beyond its depth limit raises before the signature is
    checked."""
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:
        raise MalformedCode(f"the {what} is not valid CBOR") from exc
    # cbor2 stops after the first item; trailing bytes would give one code many texts.
    if stream.tell() != len(data):
        raise MalformedCode(f"the {what} has trailing bytes")
    return value


def _sign1_parts(message: Any) -> tuple[bytes, bytes]:
    """``(protected, payload)`` of a tagged COSE_Sign1, after checking its shape."""
    if not isinstance(message, cbor2.CBORTag) or message.tag != _SIGN1_TAG:
        raise MalformedCode("not a tagged COSE_Sign1 message")
    value = message.value
    if not isinstance(value, list) or len(value) != 4:
        raise MalformedCode("a COSE_Sign1 message has four members")
    protected, unprotected, payload, signature = value
    if not (
        isinstance(protected, bytes)
        and isinstance(unprotected, dict)
        and isinstance(payload, bytes)
        and isinstance(signature, bytes)
    ):
        raise MalformedCode("the COSE_Sign1 members have the wrong types")
    return protected, payload


@functools.lru_cache(maxsize=256)
def _header(protected: bytes) -> bytes:
    """The kid of a protected header whose alg is ES256. Every code a key signs has the same
    protected header, so the parse is cached; failures raise and are not cached."""
    # RFC 9052 3: a zero-length protected bstr is an empty map, so it fails on the alg.
    header = _cbor(protected, "protected header") if protected else {}
    if not isinstance(header, dict):
        raise MalformedCode("the protected header is not a CBOR map")
    labels = _labels(header)
    alg = labels.get(_ALG)
    if type(alg) is not int or alg != _ES256:
        raise AlgorithmNotAllowed(f"algorithm {_describe(alg)} is not allowed; only ES256 (-7)")
    if _CRIT in labels:
        raise MalformedCode("critical header parameters are not supported")
    kid = labels.get(_KID)
    if not isinstance(kid, bytes) or len(kid) != KID_BYTES:
        raise MalformedCode(f"the protected header must carry a {KID_BYTES}-byte kid")
    return kid


def _claims(payload: Any) -> MacaoCodeClaims:
    if not isinstance(payload, dict):
        raise MalformedCode("the payload is not a CBOR map of claims")
    claims = _labels(payload)
    cti = claims.get(_CTI)
    if not isinstance(cti, bytes) or len(cti) != CTI_BYTES:
        raise MalformedCode(f"claim 'cti' (7) must be {CTI_BYTES} bytes")
    health = claims.get(_HEALTH)
    if not isinstance(health, dict):
        raise MalformedCode("the health claim (-65537) must be a map")
    members = _labels(health)
    if "tan" in members and members["tan"] is None:
        # MacaoCodeClaims spells "no test" as None, which would let a null through unnoticed.
        raise MalformedCode("claim 'tan' must be left out, not null, when there is no test")
    result = MacaoCodeClaims(
        iss=_member(claims, _ISS),
        cti=b64url_encode(cti),
        iat=_member(claims, _IAT),
        exp=_member(claims, _EXP),
        cor=_member(members, "cor"),
        nome=_member(members, "nome"),
        tdoc=_member(members, "tdoc"),
        tan=_member(members, "tan"),
    )
    try:
        _check_claims(result)
    except ValueError as exc:
        raise MalformedCode(str(exc)) from exc
    return result


def _labels(mapping: dict[Any, Any]) -> dict[int | str, Any]:
    """The members of a decoded CBOR map whose keys are exactly ints or texts. Python would
    otherwise find a ``true`` or ``1.0`` key under the label 1."""
    return {k: v for k, v in mapping.items() if type(k) is int or type(k) is str}


def _member(members: Mapping[int | str, Any], label: int | str) -> Any:
    """A member, or None when it is absent; untyped until :func:`_check_claims` has seen it."""
    return members.get(label)


def _check_claims(claims: MacaoCodeClaims) -> None:
    """Raise ValueError unless ``claims`` is something the format can carry. Shared by the signer
    and the reader, so what one writes the other accepts; the messages quote no values, since a
    huge CBOR bignum cannot even be turned into text."""
    if not isinstance(claims.iss, str) or not claims.iss:
        raise ValueError("claim 'iss' (1) must be non-empty text")
    for name, label, value in (("iat", _IAT, claims.iat), ("exp", _EXP, claims.exp)):
        # type() rather than isinstance(): a bool is an int in Python, not a time.
        if type(value) is not int or not 0 <= value <= _MAX_SECONDS:
            raise ValueError(f"claim {name!r} ({label}) must be integer UTC seconds")
    if not isinstance(claims.cti, str) or not _is_cti(claims.cti):
        raise ValueError(f"claim 'cti' (7) must be {CTI_BYTES} bytes in base64url")
    if not isinstance(claims.cor, str) or claims.cor not in COLOURS:
        raise ValueError("claim 'cor' must be verde, amarelo or vermelho")
    if not isinstance(claims.nome, str) or not 1 <= len(claims.nome) <= MAX_NAME_CHARS:
        raise ValueError(f"claim 'nome' must be text of 1 to {MAX_NAME_CHARS} characters")
    if not isinstance(claims.tdoc, str) or claims.tdoc not in DOC_TYPES:
        raise ValueError(f"claim 'tdoc' must be one of {', '.join(DOC_TYPES)}")
    if claims.tan is not None and not _is_date(claims.tan):
        raise ValueError("claim 'tan' must be a YYYY-MM-DD date")


def _is_cti(text: str) -> bool:
    try:
        return len(b64url_decode(text)) == CTI_BYTES
    except ValueError:
        return False


def _is_date(value: object) -> bool:
    # fromisoformat alone also takes "20251125" and week dates: the format has one spelling.
    if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _describe(value: object) -> str:
    """A safe short description of an untrusted value for an error message."""
    if value is None:
        return "(none)"
    if type(value) is int and -(2**64) <= value < 2**64:
        return str(value)
    if isinstance(value, str) and len(value) <= 16:
        return repr(value)
    return f"of type {type(value).__name__}"


@dataclass(frozen=True, slots=True)
class MacaoFormat:
    """``MO1:`` as a registered partner code format (:mod:`yuekang.codec.formats`)."""

    name: str = "MO1"
    system: str = "Macao"

    def claims(self, qr_text: str) -> bool:
        return is_macao_code(qr_text)

    def read(
        self, qr_text: str, keys: Mapping[str, VerificationKey], *, now: int, leeway: int
    ) -> PartnerCode:
        code = read_macao_code(qr_text, keys, now=now, leeway=leeway)
        claims = code.claims
        return PartnerCode(
            issuer=claims.iss,
            code_id=claims.cti,
            kid=code.kid,
            digest=code.digest,
            issued_at=claims.iat,
            expires_at=claims.exp,
            colour=claims.cor,
            masked_name=claims.nome,
            doc_type=claims.tdoc,
            tested_on=None if claims.tan is None else date.fromisoformat(claims.tan),
            # A Macao code's test date is a day in Macao.
            utc_offset_hours=8,
        )


FORMAT: Final = MacaoFormat()
