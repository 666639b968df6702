from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from yuekang.schemas import StrictModel


class OtpRequest(StrictModel):
    phone: str = Field(max_length=32, examples=["+8613800138000"])


class OtpSent(BaseModel):
    expires_at: dt.datetime
    dev_code: str | None = Field(
        None, description="Only in development mode: the code that was sent."
    )


class TokenRequest(StrictModel):
    phone: str = Field(max_length=32, examples=["+8613800138000"])
    code: str = Field(pattern=r"^\d{6,8}$", examples=["123456"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
