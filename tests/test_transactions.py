"""Where a transaction ends: an exception always undoes it, and a refusal that must leave a record
is returned, committed like any answer. Whether something is saved must not depend on the
exception's type or on whatever caught it on the way up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from yuekang.db import after_commit, create_engine, create_sessionmaker, savepoint, transaction
from yuekang.exceptions import Refusal, Unauthorized


@pytest.fixture
async def sessionmaker(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'tx.db'}")
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE guesses (n INTEGER)"))
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[int]:
    async with sessionmaker() as session:
        return list((await session.execute(text("SELECT n FROM guesses"))).scalars())


class _AskingToBeKept(Unauthorized):
    # The old convention: an error flagged to commit what led to it. It must no longer work.
    commit = True


async def test_an_exception_undoes_everything_whatever_it_carries(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ran: list[str] = []

    async def guess() -> None:
        async with transaction(sessionmaker) as session:
            await session.execute(text("INSERT INTO guesses VALUES (1)"))
            after_commit(session, lambda: ran.append("sms"))
            raise _AskingToBeKept("wrong code", code="otp_invalid")

    with pytest.raises(_AskingToBeKept):
        await guess()

    assert await _rows(sessionmaker) == []
    assert ran == []


async def test_a_returned_refusal_is_committed_with_its_after_commit_actions(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ran: list[str] = []

    async def guess() -> Refusal:
        async with transaction(sessionmaker) as session:
            await session.execute(text("INSERT INTO guesses VALUES (1)"))
            after_commit(session, lambda: ran.append("alert"))
            return Refusal(Unauthorized("wrong code", code="otp_invalid"))

    refusal = await guess()

    assert await _rows(sessionmaker) == [1]
    assert ran == ["alert"]
    answer = refusal.response()
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert b'"code":"otp_invalid"' in answer.body


async def test_a_rolled_back_savepoint_forgets_what_it_queued(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ran: list[str] = []

    async with transaction(sessionmaker) as session:
        after_commit(session, lambda: ran.append("before"))
        undone = await savepoint(session)
        await session.execute(text("INSERT INTO guesses VALUES (1)"))
        after_commit(session, lambda: ran.append("released"))
        await undone.rollback()
        kept = await savepoint(session)
        await session.execute(text("INSERT INTO guesses VALUES (2)"))
        after_commit(session, lambda: ran.append("kept"))
        await kept.commit()

    assert await _rows(sessionmaker) == [2]
    assert ran == ["before", "kept"]
