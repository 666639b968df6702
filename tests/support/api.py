"""A thin client for the API flows tests repeat: sign in, bind, issue, create staff."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

import httpx

from yuekang.residents.documents import mod11_2_check

REGIONS = ("110105", "440104", "440304", "310101", "510107")


def random_phone() -> str:
    return "+86139" + "".join(random.choices("0123456789", k=8))


def random_prc_id(birth: dt.date | None = None) -> tuple[str, dt.date]:
    birth = birth or dt.date(1950, 1, 1) + dt.timedelta(days=random.randrange(0, 25000))
    body = random.choice(REGIONS) + birth.strftime("%Y%m%d") + f"{random.randrange(1000):03d}"
    return body + mod11_2_check(body), birth


@dataclass
class Resident:
    phone: str
    token: str
    doc_number: str | None = None
    birth_date: dt.date | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def request_otp(self, phone: str, **kwargs: Any) -> httpx.Response:
        return await self.client.post("/v1/auth/otp", json={"phone": phone}, **kwargs)

    async def sign_in(self, phone: str | None = None) -> Resident:
        phone = phone or random_phone()
        sent = await self.request_otp(phone)
        assert sent.status_code == 200, sent.text
        token = await self.client.post(
            "/v1/auth/token", json={"phone": phone, "code": sent.json()["dev_code"]}
        )
        assert token.status_code == 200, token.text
        return Resident(phone=phone, token=token.json()["access_token"])

    async def bind(
        self,
        resident: Resident,
        *,
        name: str = "张小三",
        doc_number: str | None = None,
        birth_date: dt.date | None = None,
        doc_type: str = "prc_id",
    ) -> httpx.Response:
        if doc_number is None:
            doc_number, birth_date = random_prc_id(birth_date)
        assert birth_date is not None
        response = await self.client.put(
            "/v1/me/identity",
            headers=resident.auth,
            json={
                "name": name,
                "doc_type": doc_type,
                "doc_number": doc_number,
                "birth_date": birth_date.isoformat(),
            },
        )
        if response.status_code in (200, 201):
            resident.doc_number, resident.birth_date = doc_number, birth_date
        return response

    async def registered(self, name: str = "张小三") -> Resident:
        resident = await self.sign_in()
        bound = await self.bind(resident, name=name)
        assert bound.status_code == 201, bound.text
        return resident

    async def issue(self, resident: Resident, **headers: str) -> httpx.Response:
        return await self.client.post("/v1/codes", headers={**resident.auth, **headers})

    async def code(self, resident: Resident) -> dict[str, Any]:
        response = await self.issue(resident)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body


def registered_over_http(
    client: httpx.Client, phone: str | None = None, *, name: str = "陈大文"
) -> Resident:
    """A resident signed in with the development one-time code and with a fresh PRC ID bound,
    through a real server (``client`` has its ``base_url``), as a phone would do it."""
    phone = phone or random_phone()
    sent = client.post("/v1/auth/otp", json={"phone": phone})
    assert sent.status_code == 200, sent.text
    token = client.post("/v1/auth/token", json={"phone": phone, "code": sent.json()["dev_code"]})
    assert token.status_code == 200, token.text
    number, birth = random_prc_id()
    resident = Resident(phone, token.json()["access_token"], number, birth)
    bound = client.put(
        "/v1/me/identity",
        headers=resident.auth,
        json={"name": name, "doc_type": "prc_id", "doc_number": number,
              "birth_date": birth.isoformat()},
    )  # fmt: skip
    assert bound.status_code == 201, bound.text
    return resident
