"""What every part of the reference Macao system shares: its settings, its database, its clock
and the mapping table (the parts: ``keys``, ``persons``, ``codes``, ``to_guangdong``,
``from_guangdong``; ``service`` puts them together)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from yuekang.clock import Clock, epoch
from yuekang.exchange.mapping import MappingTable, load_table
from yuekang.residents.documents import local_date
from yuekang_reference.macao.settings import MacaoSettings

T = TypeVar("T")


@dataclass(frozen=True)
class MacaoDeps:
    settings: MacaoSettings
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: Clock
    table: MappingTable = field(default_factory=load_table)

    @property
    def issuer(self) -> str:
        return self.settings.issuer

    def now(self) -> int:
        return epoch(self.clock.now())

    def today(self) -> dt.date:
        return local_date(self.clock.now())

    async def transaction(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction, once more if a concurrent request inserted the same
        person first (the second run finds it)."""
        for attempt in range(2):
            try:
                async with self.sessionmaker() as session, session.begin():
                    return await work(session)
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")
