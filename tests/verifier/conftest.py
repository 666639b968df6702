"""Keys and a verifier for the offline-verifier tests."""

from __future__ import annotations

from typing import Any

import pytest

from codec.forge import ISSUER, Trust
from yuekang.codec.jwks import build_jwks
from yuekang.codec.keys import SigningKey
from yuekang.verifier import Verifier


@pytest.fixture(scope="session")
def trust() -> Trust:
    return Trust(
        es=SigningKey.generate("ES256"),
        ed=SigningKey.generate("EdDSA"),
        attacker=SigningKey.generate("ES256"),
    )


@pytest.fixture(scope="session")
def jwks(trust: Trust) -> dict[str, Any]:
    """The JWKS document a checkpoint device is given, as JSON would hand it over."""
    return build_jwks(ISSUER, [trust.es.public(), trust.ed.public()])


@pytest.fixture(scope="session")
def verifier(jwks: dict[str, Any]) -> Verifier:
    return Verifier.from_jwks(jwks)


@pytest.fixture(params=["ES256", "EdDSA"])
def any_key(request: pytest.FixtureRequest, trust: Trust) -> SigningKey:
    return trust.es if request.param == "ES256" else trust.ed
