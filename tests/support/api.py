"""A thin client for the API flows tests repeat: sign in, bind, issue, create staff."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from yuekang.codec.proofing import Person
from yuekang.residents.documents import DocType, DocumentError, mod11_2_check, validate_document
from yuekang.residents.proofing import MemoryProofing
from yuekang_reference.registry import open_store

REGIONS = ("110105", "440104", "440304", "310101", "510107")


def random_phone() -> str:
    return "+86139" + "".join(random.choices("0123456789", k=8))


NOBODYS_REGION = "650102"
"""A region no test resident is registered in: rows about people who must not match anyone."""


def random_prc_id(birth: dt.date | None = None, region: str | None = None) -> tuple[str, dt.date]:
    # Adults (born 1950-2004): a test resident may add family members unless it says otherwise.
    birth = birth or dt.date(1950, 1, 1) + dt.timedelta(days=random.randrange(0, 20000))
    region = region or random.choice(REGIONS)
    body = region + birth.strftime("%Y%m%d") + f"{random.randrange(1000):03d}"
    return body + mod11_2_check(body), birth


def answer(sent: dict[str, Any]) -> dict[str, str]:
    """What a phone sends back for a code it was sent: the challenge and the code."""
    return {"challenge_id": sent["challenge_id"], "code": sent["dev_code"]}


@dataclass
class Resident:
    phone: str
    token: str
    doc_number: str | None = None
    birth_date: dt.date | None = None
    refresh_token: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    def __init__(self, client: httpx.AsyncClient, registry: MemoryProofing | None = None) -> None:
        self.client = client
        self.registry = registry

    async def request_otp(self, phone: str, **kwargs: Any) -> httpx.Response:
        return await self.client.post("/v1/auth/otp", json={"phone": phone}, **kwargs)

    async def sign_in(self, phone: str | None = None) -> Resident:
        phone = phone or random_phone()
        sent = await self.request_otp(phone)
        assert sent.status_code == 200, sent.text
        token = await self.client.post(
            "/v1/auth/token", json={"phone": phone, **answer(sent.json())}
        )
        assert token.status_code == 200, token.text
        issued = token.json()
        return Resident(
            phone=phone, token=issued["access_token"], refresh_token=issued["refresh_token"]
        )

    async def bind(
        self,
        resident: Resident,
        *,
        name: str = "张小三",
        doc_number: str | None = None,
        birth_date: dt.date | None = None,
        doc_type: str = "prc_id",
        enrol: bool = True,
    ) -> httpx.Response:
        """Bind a document; by default as its real holder would -- the person is in the
        registry and the phone signed in is registered to them (``enrol=False``: neither)."""
        if doc_number is None:
            doc_number, birth_date = random_prc_id(birth_date)
        assert birth_date is not None
        if enrol and self.registry is not None:
            person = registry_person(name, doc_type, doc_number, birth_date)
            if person is not None:
                self.registry.add(person, phone=resident.phone)
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

    async def renew(self, resident: Resident) -> None:
        """Renew the resident's session, as the page does when its access token runs out."""
        renewed = await self.client.post(
            "/v1/auth/refresh", json={"refresh_token": resident.refresh_token}
        )
        assert renewed.status_code == 200, renewed.text
        resident.token = renewed.json()["access_token"]
        resident.refresh_token = renewed.json()["refresh_token"]

    async def issue(self, resident: Resident, **headers: str) -> httpx.Response:
        return await self.client.post("/v1/codes", headers={**resident.auth, **headers})

    async def code(self, resident: Resident) -> dict[str, Any]:
        """The resident's code: a new one (201), or the live one again (200)."""
        response = await self.issue(resident)
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body


def registry_person(
    name: str, doc_type: str, doc_number: str, birth_date: dt.date
) -> Person | None:
    """The register's record of a person, with the number as the service normalises it; None
    for a number the service will refuse anyway."""
    try:
        number = validate_document(
            DocType(doc_type), doc_number, birth_date, today=dt.datetime.now(dt.UTC).date()
        )
    except (ValueError, DocumentError):
        return None
    return Person(name=name, doc_type=doc_type, doc_number=number, birth_date=birth_date)


@dataclass(frozen=True)
class Enrolment:
    """A person in a development registry, with the phone registered to them (or none)."""

    name: str
    doc_number: str
    birth_date: dt.date
    phone: str | None
    doc_type: str = "prc_id"

    def lines(self) -> list[str]:
        entries: list[dict[str, str]] = [
            {"kind": "person", "name": self.name, "doc_type": self.doc_type,
             "doc_number": self.doc_number, "birth_date": self.birth_date.isoformat()}
        ]  # fmt: skip
        if self.phone is not None:
            entries.append(
                {"kind": "subscription", "phone": self.phone, "doc_type": self.doc_type,
                 "doc_number": self.doc_number, "name": self.name, "carrier": "test"}
            )  # fmt: skip
        return [json.dumps(entry, ensure_ascii=False) for entry in entries]


def enrol_many(registry_dir: Path, people: Iterable[Enrolment]) -> None:
    """Add people to a development server's built-in registry in one go, as
    ``yuekang partner registry load`` does."""
    lines = [line for person in people for line in person.lines()]

    async def load() -> None:
        store = open_store(registry_dir)
        try:
            await store.start()
            report = await store.load(lines)
            assert not report.errors, report.errors
        finally:
            await store.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(load())
    else:
        # Called from code that runs inside an event loop (Playwright's, a pytest-asyncio
        # test): asyncio.run needs a thread of its own.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, load()).result()


def enrol_in_registry(
    registry_dir: Path,
    *,
    name: str,
    doc_number: str,
    birth_date: dt.date,
    phone: str | None,
    doc_type: str = "prc_id",
) -> None:
    """Add one person (and their phone's registration) to a development server's built-in
    registry, as ``yuekang partner registry add`` does."""
    enrol_many(registry_dir, [Enrolment(name, doc_number, birth_date, phone, doc_type)])


def registered_over_http(
    client: httpx.Client,
    phone: str | None = None,
    *,
    name: str = "陈大文",
    registry: Path | None,
    identity: tuple[str, dt.date] | None = None,
) -> Resident:
    """A resident signed in with the development one-time code and with a PRC ID bound
    (``identity``, or a fresh one), through a real server (``client`` has its ``base_url``), as
    a phone would do it. The person is put in the server's built-in registry first (``registry``,
    its ``proofing.builtin_dir``), with the phone registered to them; ``registry=None`` when the
    caller enrolled them already (:func:`enrol_many`)."""
    phone = phone or random_phone()
    sent = client.post("/v1/auth/otp", json={"phone": phone})
    assert sent.status_code == 200, sent.text
    token = client.post("/v1/auth/token", json={"phone": phone, **answer(sent.json())})
    assert token.status_code == 200, token.text
    number, birth = identity or random_prc_id()
    if registry is not None:
        enrol_in_registry(registry, name=name, doc_number=number, birth_date=birth, phone=phone)
    issued = token.json()
    resident = Resident(
        phone,
        issued["access_token"],
        refresh_token=issued["refresh_token"],
        doc_number=number,
        birth_date=birth,
    )
    bound = client.put(
        "/v1/me/identity",
        headers=resident.auth,
        json={"name": name, "doc_type": "prc_id", "doc_number": number,
              "birth_date": birth.isoformat()},
    )  # fmt: skip
    assert bound.status_code == 201, bound.text
    return resident
