"""Keys and a verifier for the offline-verifier tests."""

from __future__ import annotations

from typing import Any

import pytest

from codec.forge import ISSUER, Trust
from yuekang.codec.jwks import build_jwks
from yuekang.verifier import Verifier


@pytest.fixture(scope="session")
def jwks(trust: Trust) -> dict[str, Any]:
    """The JWKS document a checkpoint device is given, as JSON would hand it over."""
    return build_jwks(ISSUER, [trust.es.public(), trust.ed.public()])


@pytest.fixture(scope="session")
def verifier(jwks: dict[str, Any]) -> Verifier:
    return Verifier.from_jwks(jwks)
