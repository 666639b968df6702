"""The offline verifier: judge a health code with nothing but trusted keys and a clock.

This package runs on checkpoint devices that may have no network. It imports only the pure
``yuekang.codec`` package, the pure ``yuekang.rules`` (for checkpoint policies) and the standard
library -- never the web framework, the database layer or the service settings (a test enforces
this) -- so it can be shipped on its own.

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

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from yuekang.codec import formats
from yuekang.codec.bundle import BundleIssuer
from yuekang.codec.errors import InvalidCode
from yuekang.codec.healthcode import ASSURANCE_LEVELS, Status, read_health_code_fields
from yuekang.codec.jwks import parse_jwks
from yuekang.codec.keys import VerificationKey
from yuekang.codec.reasons import DEFAULT_LANGUAGE, Reason, message
from yuekang.rules.facts import as_status
from yuekang.rules.policy import Decision, Policy, decide

__all__ = [
    "DEFAULT_LEEWAY",
    "PartnerIssuer",
    "Reason",
    "TrustStore",
    "Verdict",
    "Verifier",
    "policy_decision",
]

DEFAULT_LEEWAY = 120
"""Seconds of clock skew tolerated either side: handheld scanners drift."""


@dataclass(frozen=True, slots=True)
class PartnerIssuer:
    """A partner system whose codes a checkpoint recognises (docs/EXCHANGE.md, section 8)."""

    id: str
    """Our name for the partner, e.g. ``macao``: verdicts say ``issued_by_macao``."""
    issuer: str
    """The issuer id in its codes, e.g. ``MO``."""
    format: str
    keys: Mapping[str, VerificationKey]
    colours: Mapping[str, Status]
    """The partner's colours and the status each stands for (the mapping table)."""

    @classmethod
    def from_bundle(cls, issuer: BundleIssuer) -> PartnerIssuer:
        return cls(
            id=issuer.id,
            issuer=issuer.issuer,
            format=issuer.format,
            keys={key.kid: key for key in issuer.keys},
            colours={colour: as_status(status) for colour, status in issuer.colours.items()},
        )


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
    origin: str | None = None
    """``guangdong`` (ours), ``converted_from_<partner>`` or ``issued_by_<partner>``."""
    source: tuple[str, str, str] | None = None
    """For a converted code: the source issuer, key id and code digest."""
    assurance: str | None = None
    """How the holder's identity was proved (``proofed``, ``counter``, ``dependant``,
    ``partner``); None when the code does not say (docs/IDENTITY.md)."""
    detail: str | None = None
    """For an invalid code, the codec's account of what exactly failed ("key ... is bound to
    ES256, not EdDSA"), in English, for a technician diagnosing a device (``yuekang verify``
    prints it). Not part of :meth:`to_dict`: the reasons are what checkpoints show."""

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
            "origin": self.origin,
            "source": None
            if self.source is None
            else dict(zip(("issuer", "kid", "digest"), self.source, strict=True)),
            "assurance": self.assurance,
        }


def _slot_setter(name: str) -> Callable[[Verdict, object], None]:
    setter: Callable[[Verdict, object], None] = getattr(Verdict, name).__set__
    return setter


_set_verdict = _slot_setter("verdict")
_set_reasons = _slot_setter("reasons")
_set_status = _slot_setter("status")
_set_code_id = _slot_setter("code_id")
_set_issuer = _slot_setter("issuer")
_set_kid = _slot_setter("kid")
_set_masked_name = _slot_setter("masked_name")
_set_issued_at = _slot_setter("issued_at")
_set_expires_at = _slot_setter("expires_at")
_set_warnings = _slot_setter("warnings")
_set_negative_within_hours = _slot_setter("negative_within_hours")
_set_doses = _slot_setter("doses")
_set_origin = _slot_setter("origin")
_set_source = _slot_setter("source")
_set_assurance = _slot_setter("assurance")
_set_detail = _slot_setter("detail")


def _valid_verdict(
    status: Status,
    code_id: str,
    issuer: str,
    kid: str,
    masked_name: str,
    issued_at: int,
    expires_at: int,
    negative_within_hours: int | None,
    doses: int | None,
    origin: str,
    source: tuple[str, str, str] | None,
    assurance: str | None,
) -> Verdict:
    """``Verdict(verdict="valid", ...)`` with no reasons or warnings, without the dataclass
    ``__init__``: a frozen dataclass sets each field through ``object.__setattr__``, which is over
    a microsecond per code on a checkpoint's hot path; writing the slots directly takes half that.
    Verdict has no ``__post_init__`` to skip, and a test holds this to the real constructor."""
    verdict: Verdict = object.__new__(Verdict)
    _set_verdict(verdict, "valid")
    _set_reasons(verdict, ())
    _set_status(verdict, status)
    _set_code_id(verdict, code_id)
    _set_issuer(verdict, issuer)
    _set_kid(verdict, kid)
    _set_masked_name(verdict, masked_name)
    _set_issued_at(verdict, issued_at)
    _set_expires_at(verdict, expires_at)
    _set_warnings(verdict, ())
    _set_negative_within_hours(verdict, negative_within_hours)
    _set_doses(verdict, doses)
    _set_origin(verdict, origin)
    _set_source(verdict, source)
    _set_assurance(verdict, assurance)
    _set_detail(verdict, None)
    return verdict


class Verifier:
    """Verifies health codes against a fixed set of trusted keys."""

    def __init__(
        self,
        keys: Mapping[str, VerificationKey],
        *,
        leeway: int = DEFAULT_LEEWAY,
        partners: Collection[PartnerIssuer] = (),
    ) -> None:
        self._keys = dict(keys)
        self._leeway = leeway
        self._partners = {p.format: p for p in partners}
        self._partner_names = {p.issuer: p.id for p in partners}

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
        code_format = formats.format_of(qr_text)
        if code_format is not None:
            return self._verify_partner(code_format, qr_text, now=now)
        try:
            claims, kid, _ = read_health_code_fields(
                qr_text, self._keys, now=now, leeway=self._leeway
            )
        except InvalidCode as exc:
            return Verdict(verdict="invalid", reasons=(exc.reason,), detail=exc.detail)
        iss, jti, iat, exp, status, nm, nt, vx, src, ia = claims
        origin = "guangdong"
        if src is not None:
            origin = f"converted_from_{self._partner_names.get(src[0], src[0])}"
        verdict = _valid_verdict(
            status=status,
            code_id=jti,
            issuer=iss,
            kid=kid,
            masked_name=nm,
            issued_at=iat,
            expires_at=exp,
            negative_within_hours=nt,
            doses=vx,
            origin=origin,
            source=src,
            assurance=None if ia is None else ASSURANCE_LEVELS.get(ia),
        )
        return verdict.revoked() if jti in revoked else verdict

    def _verify_partner(
        self, code_format: formats.CodeFormat, qr_text: str, *, now: int
    ) -> Verdict:
        partner = self._partners.get(code_format.name)
        if partner is None:
            # A partner this checkpoint was not told to recognise: as good as an unknown key.
            return Verdict(
                verdict="invalid",
                reasons=(Reason.UNTRUSTED_ISSUER,),
                detail=f"this device was not told to recognise {code_format.system} codes",
            )
        try:
            code = code_format.read(qr_text, partner.keys, now=now, leeway=self._leeway)
        except InvalidCode as exc:
            return Verdict(
                verdict="invalid",
                reasons=(exc.reason,),
                origin=f"issued_by_{partner.id}",
                detail=exc.detail,
            )
        status = partner.colours.get(code.colour)
        if status is None:
            return Verdict(
                verdict="invalid",
                reasons=(Reason.MALFORMED,),
                detail=f"colour {code.colour!r} is not in the partner's mapping table",
            )
        return Verdict(
            verdict="valid",
            status=status,
            code_id=code.code_id,
            issuer=code.issuer,
            kid=code.kid,
            masked_name=code.masked_name,
            issued_at=code.issued_at,
            expires_at=code.expires_at,
            negative_within_hours=code.hours_since_test(now),
            origin=f"issued_by_{partner.id}",
            # The partner proved its own residents; we hold it to that (docs/IDENTITY.md).
            assurance="partner",
        )


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
        assurance=verdict.assurance,
    )


from yuekang.verifier.trust import TrustStore  # noqa: E402 -- it builds on the names above
