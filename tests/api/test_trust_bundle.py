"""Checkpoints fetch the signed trust bundle: it carries what an offline verifier needs, changes
version only when something changed (or it needs re-signing), and comes as a delta on request.

The bundle is one per database, so each test has a database of its own."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import event

from conftest import RunningApp, make_settings, start_app
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock, epoch
from yuekang.codec.bundle import read_bundle
from yuekang.codec.keys import VerificationKey
from yuekang.config import Settings, TrustSettings
from yuekang.principals import Role
from yuekang.trust import service as trust
from yuekang.verifier import TrustStore


@pytest.fixture
def settings(fresh_database_url: str, tmp_path: Path) -> Settings:
    return make_settings(fresh_database_url, tmp_path / "keys")


async def pinned_anchor(running: RunningApp) -> VerificationKey:
    """What `yuekang keys anchor` prints, as a checkpoint would pin it."""
    async with running.context.sessionmaker() as session, session.begin():
        anchor = await trust.anchor_key(
            session,
            passphrase=running.context.secrets.key_passphrase,
            now=running.context.clock.now(),
            create=False,
        )
    assert anchor is not None
    return VerificationKey.from_jwk(json.loads(json.dumps(anchor.public().to_jwk())))


async def fetch(running: RunningApp, gate: str, **params: object) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {gate}"}
    if "etag" in params:
        headers["If-None-Match"] = str(params.pop("etag"))
    response = await running.client.get("/v1/trust-bundle", headers=headers, params=params)
    return response.status_code, response.headers.get("ETag", ""), response.text


async def test_a_checkpoint_verifies_offline_with_the_bundle(
    running: RunningApp, clock: ManualClock
):
    gate = await running.checkpoint_key()
    resident = await running.api.registered()
    code = await running.api.code(resident)

    status, etag, text = await fetch(running, gate)

    assert (status, etag) == (200, '"v1"')
    store = TrustStore(await pinned_anchor(running)).load(text, now=epoch(clock.now()))
    assert store.freshness(epoch(clock.now())) == "fresh"
    assert store.verify(code["qr_text"], now=epoch(clock.now())).valid
    assert (await fetch(running, gate, etag='"v1"'))[0] == 304


async def test_a_revocation_makes_a_new_version_and_a_delta(
    running: RunningApp, clock: ManualClock
):
    gate = await running.checkpoint_key()
    resident = await running.api.registered()
    code = await running.api.code(resident)
    _, _, first = await fetch(running, gate)
    now = epoch(clock.now())
    synced = TrustStore(await pinned_anchor(running)).load(first, now=now)

    clock.advance(60)
    assert (await running.set_red(resident))["codes_revoked"] == 1

    assert (await fetch(running, gate, etag='"v1"'))[0] == 200
    status, etag, delta = await fetch(running, gate, since=1)
    assert (status, etag) == (200, '"v2"')
    assert read_bundle(delta, synced.anchor).base == 1
    updated = synced.load(delta, now=epoch(clock.now()))
    verdict = updated.verify(code["qr_text"], now=epoch(clock.now()))
    assert [r.value for r in verdict.reasons] == ["revoked"]
    # A checkpoint that missed version 1 asks for a delta it cannot use: it gets the whole.
    _, _, whole = await fetch(running, gate, since=99)
    assert read_bundle(whole, synced.anchor).base is None


async def test_the_bundle_is_re_signed_at_half_its_lifetime(
    running: RunningApp, clock: ManualClock
):
    gate = await running.checkpoint_key()
    assert (await fetch(running, gate))[1] == '"v1"'
    clock.advance(dt.timedelta(hours=11).total_seconds())
    assert (await fetch(running, gate))[1] == '"v1"'
    clock.advance(dt.timedelta(hours=2).total_seconds())
    status, etag, text = await fetch(running, gate)
    assert (status, etag) == (200, '"v2"')
    bundle = read_bundle(text, await pinned_anchor(running))
    assert bundle.expires_at - epoch(clock.now()) == 86_400


async def test_only_checkpoints_fetch_the_bundle(running: RunningApp):
    anonymous = await running.client.get("/v1/trust-bundle")
    assert anonymous.status_code == 401
    staff = await running.client.get(
        "/v1/trust-bundle",
        headers={"Authorization": f"Bearer {await running.operator_token(Role.ADMIN)}"},
    )
    assert staff.status_code == 401


@contextlib.asynccontextmanager
async def caching_for_30_seconds(
    database_url: str, keys: Path, clock: ManualClock, sms: MemorySmsSender
) -> AsyncIterator[tuple[RunningApp, list[float]]]:
    """An application that serves the bundle it checked for 30 s, and the seconds of its
    bundle cache's clock, for the test to move."""
    settings = make_settings(database_url, keys, trust=TrustSettings(serve_cached_seconds=30))
    async with contextlib.asynccontextmanager(start_app)(settings, clock, sms) as running:
        seconds = [1000.0]
        running.context.bundles.monotonic = lambda: seconds[0]
        yield running, seconds


async def test_a_process_serves_the_bundle_it_checked_for_a_few_seconds(
    fresh_database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    # Syncs are nearly all 304s: within serve_cached_seconds a process answers them without
    # asking whether the bundle changed. A revocation reaches the served bundle after at most
    # that long.
    caching = caching_for_30_seconds(fresh_database_url, tmp_path / "keys", clock, sms)
    async with caching as (running, seconds):
        gate = await running.checkpoint_key()
        resident = await running.api.registered()
        code = await running.api.code(resident)
        assert (await fetch(running, gate))[:2] == (200, '"v1"')
        assert (await running.set_red(resident))["codes_revoked"] == 1

        seconds[0] += 29
        assert (await fetch(running, gate, etag='"v1"'))[0] == 304
        seconds[0] += 1
        status, etag, text = await fetch(running, gate, etag='"v1"')

        assert (status, etag) == (200, '"v2"')
        store = TrustStore(await pinned_anchor(running)).load(text, now=epoch(clock.now()))
        verdict = store.verify(code["qr_text"], now=epoch(clock.now()))
        assert [r.value for r in verdict.reasons] == ["revoked"]


async def test_one_request_finds_the_latest_bundle_for_all_that_wait():
    found: list[int] = []

    async def find() -> trust.Served:
        found.append(1)
        await asyncio.sleep(0.01)
        now = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
        return trust.Served(len(found), "text", now, now)

    seconds = [0.0]
    cache = trust.BundleCache(5, monotonic=lambda: seconds[0])
    served = await asyncio.gather(*(cache.latest(find) for _ in range(20)))
    assert {s.version for s in served} == {1}
    assert (await cache.latest(find)).version == 1
    seconds[0] = 5
    assert (await cache.latest(find)).version == 2
    assert len(found) == 2


async def test_a_delta_is_signed_once_per_version_and_base(running: RunningApp, clock: ManualClock):
    gate = await running.checkpoint_key()
    first, second = await running.api.registered(), await running.api.registered()
    for resident in (first, second):
        await running.api.code(resident)
    await fetch(running, gate)
    clock.advance(60)
    await running.set_red(first)

    _, etag, one = await fetch(running, gate, since=1)
    _, _, again = await fetch(running, gate, since=1)
    # ES256 signatures are randomised: the same bytes mean the delta was not signed again.
    assert etag == '"v2"' and again == one

    clock.advance(60)
    await running.set_red(second)
    _, etag, newer = await fetch(running, gate, since=1)
    assert etag == '"v3"'
    synced = TrustStore(await pinned_anchor(running))
    assert read_bundle(newer, synced.anchor).base == 1

    def revoked(text: str) -> int:
        return sum(len(ids) for ids in read_bundle(text, synced.anchor).revoked.values())

    assert revoked(newer) == revoked(one) + 1 == 2


@pytest.mark.parametrize("since", [0, 2**31, 2**63, -1])
async def test_a_version_out_of_range_is_a_clear_422(running: RunningApp, since: int):
    gate = await running.checkpoint_key()
    status, _, text = await fetch(running, gate, since=since)
    assert status == 422, text
    assert "since" in text


async def test_a_sync_from_the_cached_bundle_is_one_statement_and_a_key_holds_at_once(
    fresh_database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    # Within serve_cached_seconds a 304 sync is at most one statement, its checkpoint's key; a
    # key disabled or replaced is refused at the next sync though the bundle and the key were
    # kept.
    caching = caching_for_30_seconds(fresh_database_url, tmp_path / "keys", clock, sms)
    async with caching as (running, _):
        admin = {"Authorization": f"Bearer {await running.operator_token(Role.ADMIN)}"}
        created = await running.client.post(
            "/v1/admin/checkpoints", headers=admin, json={"name": "north gate", "kind": "venue"}
        )
        gate, gate_id = created.json()["api_key"], created.json()["id"]
        assert (await fetch(running, gate))[:2] == (200, '"v1"')

        statements: list[str] = []

        def count(*args: object) -> None:
            # SQLite's read engine says BEGIN for its deferred transaction: no round trip.
            if str(args[2]) != "BEGIN":
                statements.append(str(args[2]))

        # On SQLite reads go through an engine of their own.
        engines = {running.context.engine.sync_engine, running.context.read_engine.sync_engine}
        for engine in engines:
            event.listen(engine, "before_cursor_execute", count)
        try:
            assert [(await fetch(running, gate, etag='"v1"'))[0] for _ in range(5)] == [304] * 5
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", count)
        # PostgreSQL: the key is kept since the first sync read it, until a change is notified
        # (notices.py). SQLite keeps nothing: one statement a sync.
        assert len(statements) == (0 if running.context.notices is not None else 5)
        assert all("checkpoints" in statement for statement in statements)
        wrong = gate[:-4] + ("AAAA" if not gate.endswith("AAAA") else "BBBB")
        assert (await fetch(running, wrong, etag='"v1"'))[0] == 401

        rotated = await running.client.post(
            f"/v1/admin/checkpoints/{gate_id}/rotate-key", headers=admin
        )
        new_key = rotated.json()["api_key"]
        assert (await fetch(running, gate, etag='"v1"'))[0] == 401
        assert (await fetch(running, new_key, etag='"v1"'))[0] == 304
        disabled = await running.client.post(
            f"/v1/admin/checkpoints/{gate_id}/disable", headers=admin
        )
        assert disabled.status_code == 204
        assert (await fetch(running, new_key, etag='"v1"'))[0] == 401
