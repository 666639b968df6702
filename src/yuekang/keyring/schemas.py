from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel

from yuekang.schemas import StrictModel


class KeyRead(BaseModel):
    kid: str
    alg: str
    state: str
    created_at: dt.datetime
    published_at: dt.datetime
    activated_at: dt.datetime | None
    retired_at: dt.datetime | None
    not_after: dt.datetime


class KeyGenerate(StrictModel):
    alg: Literal["ES256", "EdDSA"] | None = None


class KeyRetire(StrictModel):
    compromised: bool = False
