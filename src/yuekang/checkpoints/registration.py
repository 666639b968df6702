"""A checkpoint's registration as its device learns it: a compact JWS signed by the trust anchor.

The kind of place decides which policy a device applies offline (a green code without a recent
test passes a venue but not a border). It is the operator's choice when the checkpoint is
registered, so the device must not take it from whoever holds it: it fetches this statement with
its key (``GET /v1/checkpoint``) and believes it only under the anchor it pinned, the same key
that signs its trust bundle. Header::

    {"alg":"ES256","kid":"<anchor kid>","typ":"yk-checkpoint+jws"}

Payload, UTF-8 JSON::

    {"typ": "yk.checkpoint.v1",
     "issuer": "yk:gd",
     "checkpoint": "<uuid>",          the checkpoint whose key fetched it; a device compares it
                                      with the id in its own key (ykc_<hex>_...)
     "name": "罗湖口岸 1 号通道",
     "kind": "venue" | "transport" | "border",
     "issued_at": 1764100000}         a device keeps the newest it has seen

A typ of its own, so that neither a bundle nor a registration can be passed off as the other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from yuekang.codec.bundle import BundleError, open_anchored, sign_anchored
from yuekang.codec.keys import SigningKey, VerificationKey
from yuekang.rules.policy import PlaceKind, as_place_kind

KEY_PREFIX: Final = "ykc_"
"""A checkpoint key reads ``ykc_<checkpoint id>_<secret>``: the device knows its own id from it."""
HEADER_TYP: Final = "yk-checkpoint+jws"
PAYLOAD_TYP: Final = "yk.checkpoint.v1"


class RegistrationError(ValueError):
    """Not a registration signed by this anchor."""


@dataclass(frozen=True, slots=True)
class Registration:
    issuer: str
    checkpoint: uuid.UUID
    name: str
    kind: PlaceKind
    issued_at: int


def sign(registration: Registration, anchor: SigningKey) -> str:
    payload = {
        "typ": PAYLOAD_TYP,
        "issuer": registration.issuer,
        "checkpoint": str(registration.checkpoint),
        "name": registration.name,
        "kind": registration.kind,
        "issued_at": registration.issued_at,
    }
    return sign_anchored(HEADER_TYP, payload, anchor)


def read(text: str, anchor: VerificationKey) -> Registration:
    """The registration, once the anchor's signature and the format check; else
    :class:`RegistrationError`."""
    try:
        payload = open_anchored(
            text, HEADER_TYP, anchor, what=("checkpoint registration", "registration")
        )
    except BundleError as exc:
        raise RegistrationError(str(exc)) from exc
    issued_at = payload.get("issued_at")
    try:
        if payload.get("typ") != PAYLOAD_TYP or not isinstance(issued_at, int):
            raise ValueError(payload.get("typ"))
        return Registration(
            issuer=str(payload["issuer"]),
            checkpoint=uuid.UUID(str(payload["checkpoint"])),
            name=str(payload["name"]),
            kind=as_place_kind(str(payload["kind"])),
            issued_at=issued_at,
        )
    except (KeyError, ValueError) as exc:
        raise RegistrationError("not a yk.checkpoint.v1 payload") from exc
