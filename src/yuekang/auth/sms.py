"""Sending one-time codes by SMS, behind a small interface.

``LoggingSmsSender`` is the development sender: it writes the code to the log and nowhere else, and
production refuses it. ``HttpSmsSender`` posts to an SMS gateway. Tests use ``MemorySmsSender``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from yuekang.residents.masking import mask_phone

log = logging.getLogger("yuekang.sms")


class SmsSender(Protocol):
    async def send(self, phone: str, text: str) -> None: ...


class LoggingSmsSender:
    async def send(self, phone: str, text: str) -> None:
        log.warning("development SMS to %s: %s", mask_phone(phone), text)


@dataclass
class MemorySmsSender:
    sent: list[tuple[str, str]] = field(default_factory=list)

    async def send(self, phone: str, text: str) -> None:
        self.sent.append((phone, text))


class SmsDeliveryError(Exception):
    pass


@dataclass
class HttpSmsSender:
    """POSTs ``{"to": phone, "text": text}`` with a bearer token to a gateway URL."""

    client: httpx.AsyncClient
    url: str
    token: str

    async def send(self, phone: str, text: str) -> None:
        try:
            response = await self.client.post(
                self.url,
                json={"to": phone, "text": text},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=5.0,
            )
        except httpx.HTTPError as exc:
            raise SmsDeliveryError(f"SMS gateway unreachable: {exc.__class__.__name__}") from exc
        if response.status_code >= 300:
            raise SmsDeliveryError(f"SMS gateway answered {response.status_code}")
