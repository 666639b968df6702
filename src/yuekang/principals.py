"""Who is calling: residents, operators (by role), checkpoints, and the command line."""

from __future__ import annotations

import getpass
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from yuekang.rules.policy import PlaceKind


class Role(StrEnum):
    OPERATOR = "operator"
    EPIDEMIOLOGIST = "epidemiologist"
    ADMIN = "admin"


ActorType = Literal["resident", "operator", "checkpoint", "cli", "system", "feed", "partner"]


@dataclass(frozen=True, slots=True)
class Actor:
    type: ActorType
    id: str
    role: Role | None = None

    @classmethod
    def resident(cls, resident_id: uuid.UUID) -> Actor:
        return cls("resident", str(resident_id))

    @classmethod
    def cli(cls) -> Actor:
        # The command line runs with the database credentials, so it acts as an admin; the
        # audit log still names the system user who ran it.
        return cls("cli", getpass.getuser(), Role.ADMIN)

    @classmethod
    def partner(cls, partner_id: str) -> Actor:
        return cls("partner", partner_id)

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls("system", name)

    @property
    def label(self) -> str:
        return f"{self.type}:{self.id}"


@dataclass(frozen=True, slots=True)
class CheckpointPrincipal:
    id: uuid.UUID
    name: str
    kind: PlaceKind = "venue"


@dataclass(frozen=True, slots=True)
class OperatorPrincipal:
    id: uuid.UUID
    name: str
    role: Role

    @property
    def actor(self) -> Actor:
        return Actor("operator", str(self.id), self.role)
