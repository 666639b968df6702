"""The offline verifier: judge a health code with nothing but trusted keys and a clock.

This package runs on checkpoint devices that may have no network. It imports only the pure
``yuekang.codec`` package and the standard library -- never the web framework, the database layer or
the service settings (a test enforces this) -- so it can be shipped on its own.

Usage::

    verifier = Verifier.from_jwks(json.load(open("jwks.json")))
    verdict = verifier.verify(qr_text, now=int(time.time()))
    if verdict.valid and verdict.status == "green": ...

A verdict is ``valid`` when the code is authentic, issued by a trusted issuer, within its validity
window and not revoked; its ``status`` is then the colour the issuer signed. Otherwise it is
``invalid`` with the reasons (see :mod:`yuekang.codec.reasons`). Verification never raises for bad
input: a garbled scan is an ``invalid`` verdict with reason ``malformed``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from yuekang.codec.errors import InvalidCode
from yuekang.codec.healthcode import Status, read_health_code
from yuekang.codec.jwks import parse_jwks
from yuekang.codec.keys import VerificationKey
from yuekang.codec.reasons import DEFAULT_LANGUAGE, Reason, message
from yuekang.rules.policy import Decision, Policy, decide

__all__ = ["DEFAULT_LEEWAY", "Reason", "TrustStore", "Verdict", "Verifier", "policy_decision"]

DEFAULT_LEEWAY = 120
"""Seconds of clock skew tolerated either side: handheld scanners drift."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of verifying one health code."""

    verdict: Literal["valid", "invalid", "cannot_verify"]
    """``cannot_verify``: this device cannot judge any code now (no trust bundle, an expired one,
    a wrong clock); the reasons say why. It is never a silent ``valid``."""
    reasons: tuple[Reason, ...] = ()
    status: Status | None = None
    code_id: str | None = None
    issuer: str | None = None
    kid: str | None = None
    masked_name: str | None = None
    issued_at: int | None = None
    expires_at: int | None = None
    warnings: tuple[Reason, ...] = ()
    """Things the operator should know that do not change the verdict (a stale trust bundle)."""
    negative_within_hours: int | None = None
    """The code's ``nt`` claim, for checkpoint policies (not part of :meth:`to_dict`)."""
    doses: int | None = None
    """The code's ``vx`` claim, for checkpoint policies (not part of :meth:`to_dict`)."""

    @property
    def valid(self) -> bool:
        return self.verdict == "valid"

    def revoked(self) -> Verdict:
        """This verdict for a code found on a revocation list: invalid, details kept for display."""
        return replace(self, verdict="invalid", reasons=(*self.reasons, Reason.REVOKED))

    def to_dict(self, language: str = DEFAULT_LANGUAGE) -> dict[str, Any]:
        """JSON-ready form, the same shape the online verify endpoint returns."""
        return {
            "verdict": self.verdict,
            "status": self.status,
            "reasons": [{"code": r.value, "message": message(r, language)} for r in self.reasons],
            "code_id": self.code_id,
            "issuer": self.issuer,
            "kid": self.kid,
            "masked_name": self.masked_name,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "warnings": [{"code": w.value, "message": message(w, language)} for w in self.warnings],
        }


class Verifier:
    """Verifies health codes against a fixed set of trusted keys."""

    def __init__(
        self, keys: Mapping[str, VerificationKey], *, leeway: int = DEFAULT_LEEWAY
    ) -> None:
        self._keys = dict(keys)
        self._leeway = leeway

    @classmethod
    def from_jwks(
        cls, document: Mapping[str, Any], *, issuer: str | None = None, leeway: int = DEFAULT_LEEWAY
    ) -> Verifier:
        """A verifier trusting the keys of a JWKS document (see :mod:`yuekang.codec.jwks`)."""
        return cls(parse_jwks(document, issuer=issuer), leeway=leeway)

    @property
    def keys(self) -> Mapping[str, VerificationKey]:
        return self._keys

    def verify(self, qr_text: str, *, now: int, revoked: Collection[str] = ()) -> Verdict:
        """Judge ``qr_text`` at time ``now`` (UTC seconds); ``revoked`` holds revoked code ids."""
        try:
            code = read_health_code(qr_text, self._keys, now=now, leeway=self._leeway)
        except InvalidCode as exc:
            return Verdict(verdict="invalid", reasons=(exc.reason,))
        claims = code.claims
        verdict = Verdict(
            verdict="valid",
            status=claims.st,
            code_id=claims.jti,
            issuer=claims.iss,
            kid=code.kid,
            masked_name=claims.nm,
            issued_at=claims.iat,
            expires_at=claims.exp,
            negative_within_hours=claims.nt,
            doses=claims.vx,
        )
        return verdict.revoked() if claims.jti in revoked else verdict


def policy_decision(verdict: Verdict, policy: Policy) -> Decision:
    """A place's policy applied to a verdict; a code that is not valid is denied with its first
    reason. The server and a checkpoint device decide with this same function."""
    if not verdict.valid or verdict.status is None:
        return Decision("deny", verdict.reasons[0].value if verdict.reasons else "invalid")
    return decide(
        policy,
        status=verdict.status,
        negative_within_hours=verdict.negative_within_hours,
        doses=verdict.doses,
    )


from yuekang.verifier.trust import TrustStore  # noqa: E402 -- it builds on the names above
