"""The reference Macao system as ``app.py`` holds it: its parts, built over one database, clock
and HTTP client, and started once (EXCHANGE.md sections 2-4 and 7).

- ``keys``: Macao's keys and their document, rotation; Guangdong's key document;
- ``persons``: the people Macao knows, encrypted;
- ``codes``: declarations and the MO1 codes they give;
- ``to_guangdong``: a Macao code converted into a Guangdong one, delivered or handed over;
- ``from_guangdong``: Guangdong's deliveries, checked and turned into Macao codes.

HTTP stays in ``app.py``; every refusal is a :class:`~yuekang_reference.macao.errors.PartnerError`.
"""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from yuekang.clock import Clock
from yuekang.pii import BlindIndex, PiiCipher
from yuekang_reference.macao import store
from yuekang_reference.macao.codes import MacaoCodes
from yuekang_reference.macao.deps import MacaoDeps
from yuekang_reference.macao.from_guangdong import FromGuangdong
from yuekang_reference.macao.keys import GuangdongDirectory, MacaoKeys, OwnKeys
from yuekang_reference.macao.persons import Persons
from yuekang_reference.macao.settings import MacaoSecrets, MacaoSettings
from yuekang_reference.macao.to_guangdong import ToGuangdong


class MacaoService:
    def __init__(
        self,
        settings: MacaoSettings,
        secrets: MacaoSecrets,
        *,
        engine: AsyncEngine,
        clock: Clock,
        http: httpx.AsyncClient,
    ) -> None:
        self.settings = settings
        self.admin_token = secrets.admin_token
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        deps = MacaoDeps(settings, self.sessionmaker, clock)
        self.keys = OwnKeys(
            deps, MacaoKeys(secrets.key_passphrase, settings.code_key_validity_days * 86400)
        )
        self.guangdong = GuangdongDirectory(
            http, settings.guangdong_url, settings.guangdong_keys_ttl_seconds
        )
        persons = Persons(
            PiiCipher({secrets.pii_key_id: secrets.pii_key}, secrets.pii_key_id),
            BlindIndex(secrets.blind_index_key),
        )
        self.codes = MacaoCodes(deps, self.keys, persons)
        self.to_guangdong = ToGuangdong(deps, self.keys, persons, self.guangdong, http)
        self.from_guangdong = FromGuangdong(deps, self.keys, persons, self.codes, self.guangdong)
        self._started = False
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        """Create the schema and any missing key; safe to call again."""
        async with self._start_lock:
            if self._started:
                return
            await store.create_schema(self.engine)
            await self.keys.ensure()
            self._started = True
