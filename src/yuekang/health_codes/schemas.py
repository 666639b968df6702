from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field


class CodeRead(BaseModel):
    code_id: str = Field(description="128-bit random id, base64url")
    qr_text: str = Field(description="The text inside the QR: `YK1:` + a compact JWS")
    status: Literal["green", "yellow", "red"]
    issued_at: dt.datetime
    expires_at: dt.datetime
    png_url: str
    svg_url: str
