"""Errors of the token codec. No HTTP in here: services translate them, verifiers turn them into
verdicts. Each error carries the :class:`~yuekang.codec.reasons.Reason` it stands for."""

from __future__ import annotations

from yuekang.codec.reasons import Reason


class CodecError(Exception):
    """Base of every codec error."""

    reason: Reason = Reason.MALFORMED

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidCode(CodecError):
    """A health code that must not be accepted. ``reason`` says why."""


class MalformedCode(InvalidCode):
    reason = Reason.MALFORMED


class UnsupportedVersion(InvalidCode):
    reason = Reason.UNSUPPORTED_VERSION


class UnknownKey(InvalidCode):
    reason = Reason.UNKNOWN_KEY


class AlgorithmNotAllowed(InvalidCode):
    reason = Reason.ALGORITHM_NOT_ALLOWED


class BadSignature(InvalidCode):
    reason = Reason.BAD_SIGNATURE


class UntrustedIssuer(InvalidCode):
    reason = Reason.UNTRUSTED_ISSUER


class KeyNotValid(InvalidCode):
    reason = Reason.KEY_NOT_VALID


class ExpiredCode(InvalidCode):
    reason = Reason.EXPIRED


class NotYetValid(InvalidCode):
    reason = Reason.NOT_YET_VALID


class SigningError(CodecError):
    """The issuer refused to sign (claim set over the size budget, key unusable)."""


class CodeTooLarge(SigningError):
    """The claim set would not fit the QR size budget."""


class InvalidKey(CodecError):
    """A key (JWK, PEM) could not be loaded or does not match its declared algorithm."""
