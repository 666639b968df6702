"""The rule book keeps serving the rule set it read while the database cannot answer, as the
key ring does: a frozen database must not add a statement timeout to every status read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from yuekang.health_status.rulebook import RuleBook
from yuekang.rules import default_rule_set


class Database:
    """A stand-in sessionmaker whose database answers, is refused, or hangs."""

    def __init__(self) -> None:
        self.state = "up"
        self.reads = 0
        self.thawed = asyncio.Event()

    def __call__(self) -> Any:
        return self._session()

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[Any]:
        yield self

    async def execute(self, _statement: Any) -> Any:
        self.reads += 1
        if self.state == "refused":
            raise ConnectionRefusedError(111, "Connection refused")
        if self.state == "frozen":
            await self.thawed.wait()
            raise TimeoutError("the statement timed out")

        class Result:
            def scalar_one_or_none(self) -> None:
                return None  # no rule set activated: the packaged one is in force

        return Result()


async def test_the_last_rule_set_serves_while_the_database_is_refused_or_frozen() -> None:
    database = Database()
    book = RuleBook(sessionmaker=database, refresh_seconds=0)  # type: ignore[arg-type]
    first = await book.current()
    assert first.version == default_rule_set().version

    database.state = "refused"
    assert await book.current() is first
    database.state = "frozen"
    started = time.monotonic()
    assert await book.current() is first
    # Waited for half a second at most, not for the database.
    assert time.monotonic() - started < 2
    database.thawed.set()  # the reload's statement times out in the background

    database.state = "up"
    await asyncio.sleep(1.1)  # a failed reload is tried again a second later
    reads = database.reads
    assert (await book.current()).version == first.version
    assert database.reads > reads


async def test_without_a_rule_set_read_yet_the_failure_is_the_answer() -> None:
    database = Database()
    database.state = "refused"
    book = RuleBook(sessionmaker=database, refresh_seconds=5)  # type: ignore[arg-type]
    with pytest.raises(ConnectionRefusedError):
        await book.current()
