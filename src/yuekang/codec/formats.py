"""Partner code formats: how a checkpoint and the exchange read a code another system issued.

Our own format (``YK1:``) is :mod:`yuekang.codec.healthcode`. Every partner's (Macao's ``MO1:``,
any other partner's) is a :class:`CodeFormat` registered by name, in the manner of pyjwt's
algorithm registry: the verifier and the exchange ask the registry which format a text claims to
be and read it with that, and know no partner by name. Formats come from the
``yuekang.code_formats`` entry points of the installed distributions (pyproject.toml), so a
partner is added by a package that declares one, touching nothing here.

A reader answers a :class:`PartnerCode`: what every partner code says, in our words -- who signed
it with which key, when it expires, its colour (the partner's own word, which the partner's
mapping table turns into our status), the masked name and coarse document type it shows, and the
day of the latest negative test. Failures are the codec's :class:`~yuekang.codec.errors.InvalidCode`
family, with the same reasons as our own codes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from yuekang.codec.keys import VerificationKey
from yuekang.codec.plugins import Registry

ENTRY_POINTS: Final = "yuekang.code_formats"


@dataclass(frozen=True, slots=True)
class PartnerCode:
    """A partner's code whose signature, key, issuer and validity window all checked out."""

    issuer: str
    code_id: str
    kid: str
    digest: str
    """The first 128 bits of SHA-256 over the QR text, base64url: what a converted code's ``src``
    claim names (docs/EXCHANGE.md)."""
    issued_at: int
    expires_at: int
    colour: str
    """The partner's own word for the status, e.g. ``verde``: its mapping table says which of
    ours it stands for."""
    masked_name: str
    doc_type: str
    """The partner's own, possibly coarse, document type (Macao's ``OUTRO`` covers several)."""
    tested_on: dt.date | None
    """The day of the latest negative nucleic-acid test, when the code carries one."""
    utc_offset_hours: int
    """Where ``tested_on``'s day begins: a test counts from its day's start there."""

    def hours_since_test(self, now: int) -> int | None:
        """Hours from the start of the test's day to ``now``: a partner's code carries a date,
        and a policy asks for "negative within N hours". Counting from the day's start can only
        make the test look older, never fresher, than it was."""
        if self.tested_on is None:
            return None
        zone = dt.timezone(dt.timedelta(hours=self.utc_offset_hours))
        start = dt.datetime.combine(self.tested_on, dt.time(0), tzinfo=zone)
        return max(0, (now - int(start.timestamp())) // 3600)


class CodeFormat(Protocol):
    """A partner's code format."""

    @property
    def name(self) -> str:
        """The format's name as key documents and trust bundles write it, e.g. ``MO1``."""

    @property
    def system(self) -> str:
        """Who issues it, in English, for a technician's message ("Macao")."""

    def claims(self, qr_text: str) -> bool:
        """Whether ``qr_text`` claims to be in this format, in any version: a cheap dispatch test
        (a later version is then refused by :meth:`read` as unsupported, not as garbage)."""

    def read(
        self, qr_text: str, keys: Mapping[str, VerificationKey], *, now: int, leeway: int
    ) -> PartnerCode:
        """Verify ``qr_text`` against ``keys`` at ``now`` (UTC seconds)."""


_FORMATS: Final = Registry[CodeFormat](ENTRY_POINTS, lambda f: f.name, "code format")
register = _FORMATS.register
registered = _FORMATS.registered


def format_of(qr_text: str) -> CodeFormat | None:
    """The partner format ``qr_text`` claims to be in; None for ours and for anything else."""
    if not isinstance(qr_text, str):
        return None
    return next((f for f in registered().values() if f.claims(qr_text)), None)
