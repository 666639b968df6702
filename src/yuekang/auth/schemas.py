from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field

from yuekang.schemas import StrictModel

PhoneRegion = Literal["CN", "MO", "HK"]


class OtpRequest(StrictModel):
    phone: str = Field(
        max_length=32,
        examples=["+8613800138000", "13800138000", "6612 3456"],
        description="E.164, or as dialled at home: an 11-digit mainland mobile, or an 8-digit "
        "Macao or Hong Kong number with its `region`",
    )
    region: PhoneRegion | None = Field(
        None, description="Where a number written without its country code is from"
    )


class OtpSent(BaseModel):
    challenge_id: uuid.UUID = Field(
        description="Send it back with the code: the code is checked against this challenge only."
    )
    expires_at: dt.datetime
    resend_at: dt.datetime = Field(
        description="When this phone may be sent another code from this address."
    )
    resend_in: int = Field(description="Seconds until then, whatever the phone's clock says.")
    dev_code: str | None = Field(
        None, description="Only in development mode: the code that was sent."
    )


class TokenRequest(StrictModel):
    phone: str = Field(max_length=32, examples=["+8613800138000"])
    region: PhoneRegion | None = None
    challenge_id: uuid.UUID
    code: str = Field(pattern=r"^[0-9]{6,8}$", examples=["123456"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds the access token is valid for.")
    refresh_token: str = Field(
        description="Renews the session at POST /v1/auth/refresh; each use replaces it."
    )
    session_expires_at: dt.datetime = Field(
        description="When the session ends unless renewed before (it never outlives its cap)."
    )


class RefreshRequest(StrictModel):
    refresh_token: str = Field(max_length=128)


class SessionRead(BaseModel):
    id: uuid.UUID
    created_at: dt.datetime
    refreshed_at: dt.datetime
    expires_at: dt.datetime
    current: bool = Field(description="The session of the token that asked.")


class SessionsEnded(BaseModel):
    ended: int
