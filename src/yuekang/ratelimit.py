"""Fixed-window rate limits kept in the database, so every server process sharing it enforces the
same limit. One atomic upsert per hit: ``INSERT .. ON CONFLICT DO UPDATE SET count = count + 1
RETURNING count`` works the same on SQLite (3.35+) and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.auth.models import RateLimitCounter
from yuekang.clock import epoch
from yuekang.db import dialect_name
from yuekang.exceptions import TooManyRequests


async def hit(
    session: AsyncSession,
    *,
    bucket: str,
    limit: int,
    window_seconds: int,
    now: dt.datetime,
    what: str,
    code: str = "rate_limited",
    sliding: bool = False,
) -> None:
    """Count one request against ``bucket``; raise 429 with ``Retry-After`` past ``limit``.

    ``sliding``: the previous window counts too, in proportion to how much of it lies within
    the last ``window_seconds`` (the sliding-window counter), so that no two fixed windows let
    twice the limit through around their edge."""
    seconds = epoch(now)
    window_start = seconds - seconds % window_seconds
    dialect = sqlite if dialect_name(session) == "sqlite" else postgresql
    statement = (
        dialect.insert(RateLimitCounter)
        .values(bucket=bucket, window_start=window_start, count=1)
        .on_conflict_do_update(
            index_elements=["bucket", "window_start"],
            set_={"count": RateLimitCounter.count + 1},
        )
        .returning(RateLimitCounter.count)
    )
    count = (await session.execute(statement)).scalar_one()
    if sliding and count <= limit:
        previous = (
            await session.execute(
                select(RateLimitCounter.count).where(
                    RateLimitCounter.bucket == bucket,
                    RateLimitCounter.window_start == window_start - window_seconds,
                )
            )
        ).scalar_one_or_none() or 0
        overlap = 1 - (seconds - window_start) / window_seconds
        if previous * overlap + count > limit:
            # When enough of the previous window has slid out.
            needed = (previous * overlap + count - limit) / previous
            retry_after = max(int(needed * window_seconds + 0.999), 1)
            raise TooManyRequests(
                f"too many {what}; try again in {retry_after} s",
                code=code,
                headers={"Retry-After": str(retry_after)},
            )
    if count > limit:
        retry_after = window_start + window_seconds - seconds
        raise TooManyRequests(
            f"too many {what}; try again in {retry_after} s",
            code=code,
            headers={"Retry-After": str(max(retry_after, 1))},
        )


_DAY = 86400


async def cooldown(
    session: AsyncSession,
    *,
    bucket: str,
    seconds: int,
    now: dt.datetime,
    what: str,
    code: str = "rate_limited",
) -> dt.datetime:
    """Allow one request per ``seconds`` on ``bucket``, counted from the last one allowed (not
    from a fixed window, which would let two through a second apart across its edge); 429 with
    ``Retry-After`` otherwise. Returns when the next one is allowed.

    The row of each UTC day keeps the second of that day of the last request, so the wait
    restarts at midnight. Insert-or-nothing, then a conditional update: of two simultaneous
    requests the second finds the first's row and is refused."""
    moment = epoch(now)
    day = moment - moment % _DAY
    second = moment - day
    dialect = sqlite if dialect_name(session) == "sqlite" else postgresql
    inserted = await session.execute(
        dialect.insert(RateLimitCounter)
        .values(bucket=bucket, window_start=day, count=second)
        .on_conflict_do_nothing(index_elements=["bucket", "window_start"])
        .returning(RateLimitCounter.count)
    )
    allowed = inserted.first() is not None
    if not allowed:
        moved = await session.execute(
            update(RateLimitCounter)
            .where(
                RateLimitCounter.bucket == bucket,
                RateLimitCounter.window_start == day,
                RateLimitCounter.count <= second - seconds,
            )
            .values(count=second)
            .returning(RateLimitCounter.count)
        )
        allowed = moved.first() is not None
    if not allowed:
        last = (
            await session.execute(
                select(RateLimitCounter.count).where(
                    RateLimitCounter.bucket == bucket, RateLimitCounter.window_start == day
                )
            )
        ).scalar_one()
        retry_after = max(last + seconds - second, 1)
        raise TooManyRequests(
            f"too many {what}; try again in {retry_after} s",
            code=code,
            headers={"Retry-After": str(retry_after)},
        )
    return now + dt.timedelta(seconds=seconds)


async def refund(
    session: AsyncSession, *, bucket: str, window_seconds: int, now: dt.datetime
) -> None:
    """Take back one hit counted at ``now`` (the work it allowed never happened: an outside
    system was down)."""
    seconds = epoch(now)
    await session.execute(
        update(RateLimitCounter)
        .where(
            RateLimitCounter.bucket == bucket,
            RateLimitCounter.window_start == seconds - seconds % window_seconds,
            RateLimitCounter.count > 0,
        )
        .values(count=RateLimitCounter.count - 1)
    )
