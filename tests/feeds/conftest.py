"""Fixtures of the feed suite: an app started with other feed limits, on the same database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import RunningApp, make_settings, start_app
from feeds.feedkit import StartApp
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.config import FeedSettings


@pytest.fixture
async def app_with(
    database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
) -> AsyncIterator[StartApp]:
    """Start the app with ``FeedSettings(**limits)`` (e.g. ``max_rows=5``) on the test backend."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**limits: int) -> RunningApp:
            settings = make_settings(database_url, tmp_path / "keys", feeds=FeedSettings(**limits))
            running_app = contextlib.asynccontextmanager(start_app)(settings, clock, sms)
            return await stack.enter_async_context(running_app)

        yield start
