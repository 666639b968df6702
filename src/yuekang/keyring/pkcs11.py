"""Signing keys held in a PKCS#11 token (an HSM; SoftHSM2 in the tests): the adapter.

A key is generated inside the token -- ``CKA_TOKEN`` (it persists), ``CKA_SENSITIVE`` and not
``CKA_EXTRACTABLE`` (its private value never leaves) -- and found again by its label, which is
its key id (the RFC 7638 thumbprint, known only once the token has made the key, so the pair is
generated under a temporary label and renamed). The database stores its public JWK as for any
key and, where a file key keeps its encrypted PKCS#8, the key's RFC 7512 URI (:func:`uri`): that
is how the key ring tells the two apart, and why no schema change was needed.

The codec signs through the interface it already uses for keys in memory -- cryptography's
``EllipticCurvePrivateKey`` / ``Ed25519PrivateKey``, whose ``sign`` and ``public_key`` are all it
calls -- so :class:`TokenEcKey` and :class:`TokenEd25519Key` implement those two and refuse every
way of exporting the private value. ES256 is ``CKM_ECDSA`` over the SHA-256 digest, which the
token answers as the 64-byte ``r || s`` (handed to the codec as DER, which it turns back and
puts in low-S form); EdDSA is ``CKM_EDDSA`` over the message.

python-pkcs11 initialises the module with ``C_Initialize(NULL)``: by the standard that tells the
module the application makes no concurrent calls, and SoftHSM2 then takes no locks (two threads
signing at once crashed the process). So each :class:`Token` has one logged-in session and one
lock (:data:`_MODULE_LOCK`) around every call into the module, whichever thread makes it. An
ES256 signature in SoftHSM2 took 0.1 ms on a quiet machine (10,500/s, against 28,600/s in
process). Health codes are signed in a worker thread (``KeyRing.sign``): a token that hangs --
a network HSM waiting out its timeout -- must not hold the event loop and every request on it.
The anchor (a bundle every half lifetime) and the exchange key (one package per conversion) sign
where they are asked, rarely enough not to matter.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from yuekang.codec.errors import InvalidKey
from yuekang.codec.keys import Algorithm, PrivateKey, SigningKey, key_id
from yuekang.config import ConfigurationError, ResolvedSettings
from yuekang.exceptions import ServiceUnavailable

URI_PREFIX: Final = b"pkcs11:"
"""What a key held in a token stores where a file key keeps its PEM."""

_P256_OID: Final = bytes.fromhex("06082a8648ce3d030107")  # DER OID 1.2.840.10045.3.1.7
_ED25519_OID: Final = bytes.fromhex("06032b6570")  # DER OID 1.3.101.112

T = TypeVar("T")

_MODULE_LOCK: Final = threading.Lock()
"""Held around every call into a PKCS#11 module. One for the process rather than one per
:class:`Token`: two tokens (a server's and a command's in one test process) share the module,
and it is the module that takes no locks of its own."""


class TokenError(Exception):
    """The token cannot be used: module missing, token absent, wrong PIN, key not found."""


def is_token_key(stored: bytes) -> bool:
    """Whether a stored private half is a token key's URI rather than an encrypted PEM."""
    return stored.startswith(URI_PREFIX)


def uri(token_label: str, kid: str) -> bytes:
    """The RFC 7512 URI of a key's private object (labels are base64url or operator-chosen
    printable text; ``;``, ``/``, ``?`` and ``%`` are escaped as the RFC asks)."""

    def escape(text: str) -> str:
        return "".join(c if c.isalnum() or c in "-_.~ " else f"%{ord(c):02X}" for c in text)

    return f"pkcs11:token={escape(token_label)};object={escape(kid)};type=private".encode()


def label_of(stored: bytes) -> str:
    """The object label in a stored URI (the key id)."""
    for part in stored.decode("ascii", "replace").removeprefix("pkcs11:").split(";"):
        name, _, value = part.partition("=")
        if name == "object":
            return value
    raise InvalidKey("the stored PKCS#11 URI names no object")


class Token:
    """One token, opened once per process: the module loaded, the user logged in, one session,
    and one lock that every call into the module takes (see the module docstring)."""

    def __init__(self, module: Path, label: str, pin: str) -> None:
        self.label = label
        self._module = module
        self._pin = pin
        self._lock = _MODULE_LOCK
        self._session: Any = None
        self._keys: dict[str, Any] = {}
        self._refused: str | None = None
        """Why the token refused this process's PIN, once it has: no login is tried again."""
        with self._lock:
            self._open()

    def _open(self) -> None:
        try:
            import pkcs11
        except ImportError as exc:
            raise TokenError(
                "keys.backend=pkcs11 needs python-pkcs11: install yuekang[hsm]"
            ) from exc
        from pkcs11.exceptions import PKCS11Error

        if not self._module.is_file():
            raise TokenError(f"no PKCS#11 module at {self._module}")
        try:
            lib = pkcs11.lib(str(self._module))
            token = lib.get_token(token_label=self.label)
        except pkcs11.exceptions.NoSuchToken:
            raise TokenError(f"no PKCS#11 token labelled {self.label!r}") from None
        except (PKCS11Error, RuntimeError, OSError) as exc:
            raise TokenError(f"cannot load the PKCS#11 module {self._module}: {exc!r}") from None
        try:
            try:
                self._session = token.open(user_pin=self._pin, rw=True)
            except pkcs11.exceptions.UserAlreadyLoggedIn:
                # The login is per application: a session reopened after a failure finds the
                # module still logged in.
                self._session = token.open(rw=True)
        except (pkcs11.exceptions.PinIncorrect, pkcs11.exceptions.PinLenRange):
            # Never tried again by this process: an HSM locks its user PIN after a few wrong
            # ones, and a process left on an old PIN after a PIN change would lock out the
            # processes rolled out with the new one.
            self._refused = f"the PIN of token {self.label!r} is wrong"
            raise TokenError(self._refused) from None
        except pkcs11.exceptions.PinLocked:
            self._refused = f"the PIN of token {self.label!r} is locked"
            raise TokenError(self._refused) from None
        except PKCS11Error as exc:
            raise TokenError(f"cannot open token {self.label!r}: {exc!r}") from None
        self._keys.clear()

    def _call(self, work: Callable[[Any], T]) -> T:
        """``work(session)`` under the lock. A session lost (a token taken out and put back, a
        module restarted, a network HSM's connection dropped) is reopened and the work tried
        once more; anything the token refuses is a :class:`TokenError` naming it."""
        from pkcs11 import exceptions as errors

        lost = (
            errors.SessionHandleInvalid,
            errors.SessionClosed,
            errors.DeviceRemoved,
            errors.DeviceError,
            errors.TokenNotPresent,
            errors.UserNotLoggedIn,
        )
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._session is None:
                        if self._refused is not None:
                            raise TokenError(self._refused)
                        self._open()
                    return work(self._session)
                except lost as exc:
                    self._session = None
                    self._keys.clear()  # handles belonged to the lost session
                    if attempt == 2:
                        raise TokenError(f"token {self.label!r} is unavailable: {exc!r}") from None
                except errors.PKCS11Error as exc:
                    raise TokenError(f"token {self.label!r} refused: {exc!r}") from None
        raise AssertionError("unreachable")

    def generate(self, alg: Algorithm) -> PrivateKey:
        """A new key pair made inside the token, labelled with its key id; its private half."""
        import secrets

        from pkcs11 import Attribute, KeyType, Mechanism

        def make(session: Any) -> tuple[str, bytes]:
            temporary = "yk-new-" + secrets.token_hex(8)
            kind, oid, mechanism = (
                (KeyType.EC, _P256_OID, Mechanism.EC_KEY_PAIR_GEN)
                if alg == "ES256"
                else (KeyType.EC_EDWARDS, _ED25519_OID, Mechanism.EC_EDWARDS_KEY_PAIR_GEN)
            )
            params = session.create_domain_parameters(kind, {Attribute.EC_PARAMS: oid}, local=True)
            public, private = params.generate_keypair(
                store=True,
                label=temporary,
                mechanism=mechanism,
                public_template={Attribute.TOKEN: True, Attribute.VERIFY: True},
                private_template={
                    Attribute.TOKEN: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.SIGN: True,
                    Attribute.PRIVATE: True,
                },
            )
            point = bytes(public[Attribute.EC_POINT])
            kid = key_id(_public_from_point(alg, point))
            for obj in (public, private):
                obj[Attribute.LABEL] = kid
                obj[Attribute.ID] = kid.encode("ascii")
            return kid, point

        kid, _ = self._call(make)
        return self.private_key(kid, alg)

    def private_key(self, kid: str, alg: Algorithm) -> PrivateKey:
        """The token's key labelled ``kid``, as the codec's private-key interface."""
        from pkcs11 import Attribute, ObjectClass
        from pkcs11.exceptions import MultipleObjectsReturned, NoSuchKey

        def find(session: Any) -> bytes:
            try:
                public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=kid)
                session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=kid)
            except NoSuchKey:
                raise TokenError(f"token {self.label!r} holds no key {kid}") from None
            except MultipleObjectsReturned:
                raise TokenError(f"token {self.label!r} holds two keys labelled {kid}") from None
            return bytes(public[Attribute.EC_POINT])

        public_key = _public_from_point(alg, self._call(find))
        if key_id(public_key) != kid:
            raise TokenError(f"the key labelled {kid} in token {self.label!r} is another key")
        if alg == "ES256":
            assert isinstance(public_key, ec.EllipticCurvePublicKey)
            return TokenEcKey(self, kid, public_key)
        assert isinstance(public_key, ed25519.Ed25519PublicKey)
        return TokenEd25519Key(self, kid, public_key)

    def sign(self, kid: str, data: bytes, *, ecdsa: bool) -> bytes:
        """The token's signature with key ``kid``: raw ``r || s`` of ``data`` (a digest) for
        ECDSA, an Ed25519 signature of ``data`` otherwise."""
        from pkcs11 import Mechanism, ObjectClass

        def sign(session: Any) -> bytes:
            handle = self._keys.get(kid)
            if handle is None:
                handle = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=kid)
                self._keys[kid] = handle
            mechanism = Mechanism.ECDSA if ecdsa else Mechanism.EDDSA
            return bytes(handle.sign(data, mechanism=mechanism))

        return self._call(sign)

    def destroy(self, kid: str) -> bool:
        """Destroy the private object labelled ``kid``: it can never sign again, in any process
        sharing the token. False when the token holds none (destroyed before)."""
        from pkcs11 import Attribute, ObjectClass

        def destroy(session: Any) -> bool:
            query = {Attribute.LABEL: kid, Attribute.CLASS: ObjectClass.PRIVATE_KEY}
            found = list(session.get_objects(query))
            for obj in found:
                obj.destroy()
            return bool(found)

        self._keys.pop(kid, None)
        return self._call(destroy)

    def holds(self, kid: str) -> bool:
        """Whether the token holds a private key labelled ``kid``."""
        from pkcs11 import Attribute, ObjectClass

        def look(session: Any) -> bool:
            query = {Attribute.LABEL: kid, Attribute.CLASS: ObjectClass.PRIVATE_KEY}
            return any(True for _ in session.get_objects(query))

        return self._call(look)

    def exportable(self, kid: str) -> bytes:
        """Ask the token for the private value of ``kid`` -- which it must refuse. Kept for the
        test that shows it does (and for an operator's audit of a token)."""
        from pkcs11 import Attribute, ObjectClass

        def read(session: Any) -> bytes:
            key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=kid)
            return bytes(key[Attribute.VALUE])

        return self._call(read)

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                try:
                    self._session.close()
                finally:
                    self._session = None


def _public_from_point(alg: Algorithm, point: bytes) -> ec.EllipticCurvePublicKey | Any:
    """The public key from ``CKA_EC_POINT``: a DER OCTET STRING around the point (as PKCS#11
    v2.40 says; some modules give the bare point, accepted too)."""
    size = 65 if alg == "ES256" else 32
    if len(point) == size + 2 and point[0] == 0x04 and point[1] == size:
        point = point[2:]
    if len(point) != size:
        raise TokenError(f"unexpected EC point of {len(point)} bytes from the token")
    if alg == "ES256":
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    return ed25519.Ed25519PublicKey.from_public_bytes(point)


def _not_exportable(*_: object, **__: object) -> NoReturn:
    raise InvalidKey("a key held in a PKCS#11 token cannot be exported")


def _unavailable(exc: TokenError) -> ServiceUnavailable:
    # An issuance that meets a token it cannot use is a 503 naming the cause, never a 500.
    return ServiceUnavailable(f"the signing token cannot sign now ({exc})", code="unavailable")


class TokenEcKey(ec.EllipticCurvePrivateKey):
    """A P-256 key in a token, as cryptography's private-key interface (sign, public key)."""

    def __init__(self, token: Token, kid: str, public: ec.EllipticCurvePublicKey) -> None:
        self._token, self.kid, self._public = token, kid, public

    def sign(self, data: Any, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not (
            isinstance(signature_algorithm, ec.ECDSA)
            and isinstance(signature_algorithm.algorithm, hashes.SHA256)
        ):
            raise InvalidKey("a token key signs ECDSA with SHA-256 only")
        try:
            raw = self._token.sign(self.kid, hashlib.sha256(data).digest(), ecdsa=True)
        except TokenError as exc:
            raise _unavailable(exc) from None
        return encode_dss_signature(
            int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        )

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, *args: Any, **kwargs: Any) -> bytes:
        raise InvalidKey("a token signing key does not agree keys")

    private_numbers = _not_exportable
    private_bytes = _not_exportable

    def __copy__(self) -> TokenEcKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> TokenEcKey:
        return self


class TokenEd25519Key(ed25519.Ed25519PrivateKey):
    """An Ed25519 key in a token, as cryptography's private-key interface."""

    def __init__(self, token: Token, kid: str, public: ed25519.Ed25519PublicKey) -> None:
        self._token, self.kid, self._public = token, kid, public

    def sign(self, data: bytes | bytearray | memoryview) -> bytes:
        try:
            return self._token.sign(self.kid, bytes(data), ecdsa=False)
        except TokenError as exc:
            raise _unavailable(exc) from None

    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._public

    private_bytes = _not_exportable
    private_bytes_raw = _not_exportable

    def __copy__(self) -> TokenEd25519Key:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> TokenEd25519Key:
        return self


def held_in_token(key: SigningKey) -> bool:
    """Whether ``key`` signs in a token (each signature a call into the module)."""
    return isinstance(key.private_key, TokenEcKey | TokenEd25519Key)


def open_token(resolved: ResolvedSettings) -> Token | None:
    """The process's token when ``keys.backend=pkcs11`` (None otherwise). Anything that keeps it
    from being used -- python-pkcs11 not installed, the module, token or PIN wrong -- is a
    :class:`ConfigurationError` in one line, at start rather than at the first issuance."""
    keys = resolved.settings.keys
    if keys.backend != "pkcs11":
        return None
    pin = resolved.secrets.pkcs11_pin
    missing = keys.pkcs11_missing(resolved.secrets)
    if missing or keys.pkcs11_module is None or keys.pkcs11_token_label is None or pin is None:
        raise ConfigurationError(
            "keys.backend=pkcs11 needs its token named and its PIN: set " + ", ".join(missing)
        )
    try:
        return Token(keys.pkcs11_module, keys.pkcs11_token_label, pin)
    except TokenError as exc:
        raise ConfigurationError(str(exc)) from None
