"""Housekeeping deletes what can serve no one -- spent limits, challenges, sessions, superseded
bundles, old counts -- keeps what still can, does it in batches, and one process at a time.

Each test has a database of its own: a round deletes across the whole database."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import RunningApp, make_settings, start_app
from yuekang import maintenance
from yuekang.audit.models import SelfRead
from yuekang.auth.models import OtpChallenge, RateLimitCounter, ResidentSession
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock, epoch
from yuekang.codec.bundle import read_bundle
from yuekang.config import MaintenanceSettings, Settings
from yuekang.trust.models import TrustBundleRecord

from .test_trust_bundle import fetch, pinned_anchor


@pytest.fixture
def settings(fresh_database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        fresh_database_url,
        tmp_path / "keys",
        maintenance=MaintenanceSettings(batch_rows=2, interval_seconds=3600),
    )


async def count(running: RunningApp, model: type) -> int:
    async with running.context.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def round_(running: RunningApp, force: bool = True) -> maintenance.Round:
    context = running.context
    return await maintenance.run_once(
        context.sessionmaker, context.settings, context.clock, force=force
    )


async def test_a_round_deletes_what_is_spent_and_keeps_what_is_live(
    running: RunningApp, clock: ManualClock
):
    # Two months ago: five sign-ins never used since, one signed out, and their counters.
    for _ in range(5):
        await running.api.sign_in()
    gone = await running.api.sign_in()
    await running.client.post("/v1/auth/logout", headers=gone.auth)
    resident = await running.api.registered()
    await running.client.get("/v1/me", headers=resident.auth)
    clock.advance(dt.timedelta(days=61).total_seconds())

    # Today's: a live session, a pending challenge, fresh counters.
    live = await running.api.sign_in()
    await running.api.request_otp(live.phone)
    await running.client.get("/v1/me", headers=live.auth)
    before = {m: await count(running, m) for m in (OtpChallenge, ResidentSession, SelfRead)}

    done = await round_(running)

    assert done.ran
    # Batches of two: every spent row went, however many batches it took.
    assert done.deleted["otp_challenges"] == before[OtpChallenge] - 2 >= 7
    assert done.deleted["resident_sessions"] == before[ResidentSession] - 1 == 7
    assert done.deleted["rate_limit_counters"] >= 3
    assert await count(running, OtpChallenge) == 2
    assert await count(running, ResidentSession) == 1
    async with running.context.sessionmaker() as session:
        windows = (await session.execute(select(RateLimitCounter.window_start))).scalars().all()
    assert windows and min(windows) >= epoch(clock.now()) - 2 * 86400
    assert (await running.client.get("/v1/me", headers=live.auth)).status_code == 200


async def test_old_counts_of_own_reads_go_after_their_days(
    fresh_database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    settings = make_settings(
        fresh_database_url, tmp_path, maintenance=MaintenanceSettings(self_read_days=7)
    )
    async for running in start_app(settings, clock, sms):
        resident = await running.api.registered()
        await running.client.get("/v1/me", headers=resident.auth)
        clock.advance(dt.timedelta(days=8).total_seconds())
        await running.api.sign_in(resident.phone)
        fresh = await running.api.sign_in(resident.phone)
        await running.client.get("/v1/me", headers=fresh.auth)
        done = await round_(running)
        async with running.context.sessionmaker() as session:
            days = set((await session.execute(select(SelfRead.day))).scalars())
        assert done.deleted["self_reads"] >= 2
        assert days == {clock.now().date()}


async def test_superseded_bundles_lose_their_text_and_deltas_still_work(
    running: RunningApp, clock: ManualClock
):
    gate = await running.checkpoint_key()
    resident = await running.api.registered()
    await running.api.code(resident)
    await fetch(running, gate)
    clock.advance(60)
    await running.set_red(resident)
    assert (await fetch(running, gate))[1] == '"v2"'

    done = await round_(running)

    assert done.deleted["trust_bundle_texts"] == 1
    async with running.context.sessionmaker() as session:
        texts = dict(
            (await session.execute(select(TrustBundleRecord.version, TrustBundleRecord.text))).all()
        )
    assert texts[1] == "" and texts[2]
    status, etag, delta = await fetch(running, gate, since=1)
    assert (status, etag) == (200, '"v2"')
    assert read_bundle(delta, (await pinned_anchor(running))).base == 1

    # A month on, the superseded row goes too (the latest always stays): a delta from it is
    # answered with the whole bundle.
    clock.advance(dt.timedelta(days=31).total_seconds())
    done = await round_(running)
    assert done.deleted["trust_bundles"] == 1
    _, _, whole = await fetch(running, gate, since=1)
    assert read_bundle(whole, await pinned_anchor(running)).base is None


async def test_one_process_does_a_round_per_interval(
    running: RunningApp, clock: ManualClock, settings: Settings, sms: MemorySmsSender
):
    async for other in start_app(settings, clock, sms):
        assert (await round_(running, force=False)).ran
        # Its round is done; the other process finds nothing due within the hour.
        assert not (await round_(other, force=False)).ran
        clock.advance(3599)
        assert not (await round_(other, force=False)).ran
        clock.advance(1)
        assert (await round_(other, force=False)).ran


async def test_a_round_in_progress_is_not_done_twice_and_its_lease_runs_out(
    running: RunningApp, clock: ManualClock
):
    context = running.context
    async with context.sessionmaker() as session, session.begin():
        assert await maintenance.claim(
            session,
            now=clock.now(),
            token=uuid.uuid4().hex,
            lease=dt.timedelta(seconds=900),
            interval=None,
        )
    # Held by a process that died mid-round: not even a forced round starts...
    assert not (await round_(running)).ran
    clock.advance(901)
    # ...until its lease has run out.
    assert (await round_(running)).ran
