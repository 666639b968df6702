"""The checkpoint's trust store: the pinned anchor key and the latest trust bundle it signed.

Loading a bundle checks the anchor signature, refuses a rollback (a version older than the one
held) and applies a delta only on top of the version it names. Judging a code first asks whether
the store can be trusted *now*:

- ``fresh``: until the bundle's ``expires_at``;
- ``stale``: past it but within the grace period -- verdicts carry the ``trust_stale`` warning;
- ``expired``: past the grace period -- every verdict is ``cannot_verify`` (``trust_expired``);
- ``wrong_clock``: the device clock is earlier than the bundle was issued (beyond the leeway) --
  ``cannot_verify`` (``wrong_clock``), since no time-based check can be believed.

A store is immutable: :meth:`TrustStore.load` returns a new one, so a failed load changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Literal

from yuekang.codec.bundle import BundleError, TrustBundle, read_bundle
from yuekang.codec.keys import VerificationKey
from yuekang.codec.reasons import Reason
from yuekang.rules.policy import PlaceKind, Policy, parse_policies
from yuekang.verifier import DEFAULT_LEEWAY, PartnerIssuer, Verdict, Verifier

Freshness = Literal["fresh", "stale", "expired", "wrong_clock", "none"]


class BundleRollback(BundleError):
    """The bundle is older than the one already held (a replayed or downgraded bundle)."""


class DeltaMismatch(BundleError):
    """A delta for another base version than the one held: fetch the full bundle."""


class OtherIssuer(BundleError):
    """The bundle speaks for another issuer than the one held."""


@dataclass(frozen=True)
class TrustStore:
    anchor: VerificationKey
    bundle: TrustBundle | None = None
    leeway: int = DEFAULT_LEEWAY

    def load(self, text: str, *, now: int) -> TrustStore:
        """This store with ``text`` (a full bundle or a delta) applied; raises
        :class:`~yuekang.codec.bundle.BundleError` and leaves this store as it was."""
        return self.apply(read_bundle(text, self.anchor), now=now)

    def apply(self, new: TrustBundle, *, now: int) -> TrustStore:
        """Like :meth:`load`, for a bundle already read (and so checked) with this anchor."""
        current = self.bundle
        if current is not None:
            if new.issuer != current.issuer:
                raise OtherIssuer(f"the bundle is for {new.issuer!r}, not {current.issuer!r}")
            if new.version < current.version:
                raise BundleRollback(
                    f"bundle version {new.version} is older than the {current.version} held"
                )
            if new.version == current.version:
                return self
        if new.base is not None:
            if current is None or current.version != new.base:
                raise DeltaMismatch(
                    f"a delta from version {new.base} needs that version; "
                    f"held: {'none' if current is None else current.version}"
                )
            merged: dict[int, frozenset[str]] = dict(current.revoked)
            for until, ids in new.revoked.items():
                merged[until] = merged.get(until, frozenset()) | ids
            new = replace(new, revoked=merged, base=None)
        # Codes listed under a past hour have expired anyway: no need to keep their ids.
        live = {until: ids for until, ids in new.revoked.items() if until > now - self.leeway}
        return TrustStore(self.anchor, replace(new, revoked=live), self.leeway)

    def freshness(self, now: int) -> Freshness:
        bundle = self.bundle
        if bundle is None:
            return "none"
        if now < bundle.issued_at - self.leeway:
            return "wrong_clock"
        if now <= bundle.expires_at:
            return "fresh"
        if now <= bundle.expires_at + bundle.grace:
            return "stale"
        return "expired"

    @cached_property
    def _verifier(self) -> Verifier:
        assert self.bundle is not None
        # Pending keys count: a checkpoint synced before a rotation must accept the codes the new
        # key signs once it is activated. Each key's window (nbf/exp) still bounds its codes.
        keys: Mapping[str, VerificationKey] = {k.key.kid: k.key for k in self.bundle.keys}
        partners = [PartnerIssuer.from_bundle(p) for p in self.bundle.issuers]
        return Verifier(keys, leeway=self.leeway, partners=partners)

    def policy(self, kind: PlaceKind) -> Policy:
        """The policy for a kind of place from the bundle (raises RuleSetError if it does not
        validate -- the bundle was signed, but by a server of another version)."""
        assert self.bundle is not None
        return parse_policies(dict(self.bundle.policies)).for_place(kind)

    @cached_property
    def revoked(self) -> frozenset[str]:
        if self.bundle is None:
            return frozenset()
        return frozenset().union(*self.bundle.revoked.values())

    def verify(self, qr_text: str, *, now: int) -> Verdict:
        """Judge ``qr_text`` offline at ``now`` (UTC seconds) with the bundle held."""
        freshness = self.freshness(now)
        if freshness == "none":
            return Verdict(verdict="cannot_verify", reasons=(Reason.NO_TRUST,))
        if freshness == "wrong_clock":
            return Verdict(verdict="cannot_verify", reasons=(Reason.WRONG_CLOCK,))
        if freshness == "expired":
            return Verdict(verdict="cannot_verify", reasons=(Reason.TRUST_EXPIRED,))
        verdict = self._verifier.verify(qr_text, now=now, revoked=self.revoked)
        if freshness == "stale":
            verdict = replace(verdict, warnings=(*verdict.warnings, Reason.TRUST_STALE))
        return verdict
