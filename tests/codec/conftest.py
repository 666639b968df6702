"""Keys for the codec tests: two fixed keys (golden vectors), generated ones for the rest."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from codec.forge import Trust
from yuekang.codec.keys import SigningKey, VerificationKey, b64url_decode

RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
"""The Ed25519 private key of RFC 8037 appendix A.1 (the RFC 8032 section 7.1 test 1 key)."""
FIXED_P256_SCALAR = 0x1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF


@pytest.fixture(scope="session")
def fixed_ed_key() -> SigningKey:
    private = ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(RFC8037_D))
    return SigningKey.from_private_key(private)


@pytest.fixture(scope="session")
def fixed_es_key() -> SigningKey:
    return SigningKey.from_private_key(ec.derive_private_key(FIXED_P256_SCALAR, ec.SECP256R1()))


@pytest.fixture(scope="session")
def es_key(trust: Trust) -> SigningKey:
    return trust.es


@pytest.fixture(scope="session")
def ed_key(trust: Trust) -> SigningKey:
    return trust.ed


@pytest.fixture(scope="session")
def trusted(trust: Trust) -> dict[str, VerificationKey]:
    """Our two keys as a verifier holds them: bound to issuer ``yk:gd``."""
    return trust.keys


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail on any attempt to open a connection or a URL; yields the list of attempts."""
    import socket
    import urllib.request

    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args))
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return attempts
