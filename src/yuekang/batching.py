"""Requests that arrive together, handled together: the group commit of online scans and
issuance (``checkpoints.online``, ``health_codes.batch``).

The first request starts a writer; the requests that arrive while its batch is in the database
wait for the next batch, so under light load a batch is one request and under heavy load it
grows by itself, with no timer and no added wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from yuekang import logs

T = TypeVar("T")
R = TypeVar("R")


class Batches(Generic[T, R]):
    def __init__(self, handle: Callable[[list[T]], Awaitable[list[R]]], *, max_batch: int) -> None:
        """``handle`` answers a batch, one answer per item in order; what it raises reaches
        every request of the batch."""
        self._handle = handle
        self._max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        if self._writer is None or self._writer.done():
            # The writer serves the requests of many batches: its lines name none of them.
            with logs.bound(None):
                self._writer = asyncio.create_task(self._drain())
        return await answer

    async def close(self) -> None:
        """Wait for the batch in flight, so a shutdown drops nothing already answered for."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            try:
                answers = await self._handle([item for item, _ in batch])
            except Exception as exc:
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (_, answer), result in zip(batch, answers, strict=True):
                if not answer.done():
                    answer.set_result(result)
