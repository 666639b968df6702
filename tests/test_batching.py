"""Group commit: requests arriving while a batch is in the database wait for the next batch."""

from __future__ import annotations

import asyncio

from yuekang.batching import Batches


async def test_requests_arriving_during_a_batch_share_the_next_and_keep_their_answers():
    sizes: list[int] = []

    async def handle(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0.01)  # the database
        return [item * 10 for item in items]

    batches: Batches[int, int] = Batches(handle, max_batch=4)
    first = asyncio.ensure_future(batches.submit(0))
    await asyncio.sleep(0)  # its batch is in the database, alone
    answers = await asyncio.gather(*(batches.submit(n) for n in range(1, 10)))
    assert await first == 0
    assert answers == [n * 10 for n in range(1, 10)]
    assert sizes == [1, 4, 4, 1]  # the rest waited for it, four at most a batch


async def test_a_failed_batch_fails_its_own_requests_only():
    async def handle(items: list[str]) -> list[str]:
        await asyncio.sleep(0.01)
        if "bad" in items:
            raise RuntimeError("the database went away")
        return items

    batches: Batches[str, str] = Batches(handle, max_batch=2)
    first = asyncio.gather(batches.submit("a"), return_exceptions=True)
    await asyncio.sleep(0)  # "a" is in the database alone
    rest = asyncio.gather(
        *(batches.submit(item) for item in ("bad", "b", "c", "d")), return_exceptions=True
    )
    results = [*await first, *await rest]
    assert results[0] == "a"
    assert [type(r) for r in results[1:3]] == [RuntimeError, RuntimeError]
    assert results[3:] == ["c", "d"]
    await batches.close()


async def test_close_waits_for_the_batch_in_flight():
    done: list[int] = []

    async def handle(items: list[int]) -> list[None]:
        await asyncio.sleep(0.02)
        done.extend(items)
        return [None] * len(items)

    batches: Batches[int, None] = Batches(handle, max_batch=10)
    pending = asyncio.ensure_future(batches.submit(1))
    await asyncio.sleep(0)
    await batches.close()
    assert done == [1]
    await pending
