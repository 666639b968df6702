"""Choosing a replica (yuekang.replicas), without servers; and that a service with no replica
configured is the service it was. The replicas themselves: tests/test_replicas_postgresql.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TEST_SECRETS, RunningApp, make_settings
from yuekang.config import ConfigurationError, DatabaseSettings, ResolvedSettings
from yuekang.context import AppContext
from yuekang.replicas import COOKIE, Replica, Replicas, last_record_end, seen


def replicas(*states: tuple[str, float | None], max_lag: float = 5.0) -> Replicas:
    """Replicas in ``states``: (state, seconds behind the primary now)."""
    made = Replicas(replicas=[], primary=None, max_lag=max_lag)  # type: ignore[arg-type]
    now = made.primary_now()
    made.replicas = [
        Replica(
            name=f"r{i}:5432",
            engine=None,  # type: ignore[arg-type]
            sessionmaker=None,  # type: ignore[arg-type]
            probe=None,  # type: ignore[arg-type]
            state=state,  # type: ignore[arg-type]
            fresh_as_of=None if behind is None else now - behind,
        )
        for i, (state, behind) in enumerate(states)
    ]
    return made


def test_only_a_streaming_replica_within_the_bound_is_read_from() -> None:
    chosen = replicas(
        ("streaming", 6.0),  # too far behind
        ("not_in_recovery", 0.0),  # promoted: a primary now
        ("unreachable", 0.0),
        ("streaming", None),  # never measured against the primary
        ("streaming", 1.0),
    )

    assert {chosen.choose().name for _ in range(4)} == {"r4:5432"}  # type: ignore[union-attr]
    lags, serving = chosen.figures()
    assert set(lags) == {"r0:5432", "r4:5432"}
    # The member not in recovery is a primary: not a replica that fails to serve (no alert).
    assert serving == {f"r{i}:5432": i == 4 for i in (0, 2, 3, 4)}


def test_replicas_within_the_bound_take_reads_in_turn() -> None:
    chosen = replicas(("streaming", 0.1), ("streaming", 0.2))

    assert [chosen.choose().name for _ in range(4)] == [  # type: ignore[union-attr]
        "r0:5432",
        "r1:5432",
        "r0:5432",
        "r1:5432",
    ]


def test_a_replica_must_hold_what_the_reader_saw() -> None:
    chosen = replicas(("streaming", 2.0), ("streaming", 0.5))
    now = chosen.primary_now()

    assert chosen.choose(seen=now - 3).name in {"r0:5432", "r1:5432"}  # type: ignore[union-attr]
    assert chosen.choose(seen=now - 1).name == "r1:5432"  # type: ignore[union-attr]
    assert chosen.choose(seen=now) is None


def test_the_cookie_names_a_time_and_nothing_else() -> None:
    chosen = replicas(max_lag=5.0)
    cookie = chosen.cookie(secure=True).decode()
    value = cookie.split(";")[0].split("=")[1]

    assert cookie.startswith(f"{COOKIE}=")
    assert "Path=/v1/me" in cookie and "Max-Age=6" in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
    assert "Secure" not in chosen.cookie(secure=False).decode()
    assert abs(seen({COOKIE: value}) - chosen.primary_now()) < 1  # type: ignore[operator]
    # Starlette decodes the Cookie header as latin-1: '²' is str.isdigit() but not int()'s.
    for sent in ("", "-1", "1.5", "x", "9" * 17, "\xb2", "1\xb3", "\xb9" * 3, "\u0663", " 1"):
        assert seen({COOKIE: sent}) is None
    assert seen({}) is None


def test_the_insert_position_past_a_page_header_is_the_page_boundary() -> None:
    """pg_current_wal_insert_lsn() after a record that ended at a page's end (as after
    pg_switch_wal(): 16 MB segment + 40 measured) is where a replica that replayed it stands."""
    segment, block = 16 * 1024 * 1024, 8192
    at = {"block": block, "segment": segment}

    assert last_record_end(4 * segment + 40, **at) == 4 * segment
    assert last_record_end(4 * segment + 3 * block + 24, **at) == 4 * segment + 3 * block
    # Within a page, a record's end is where the next goes.
    for inside in (4 * segment + 48, 4 * segment + 3 * block + 32, 4 * segment + block - 8):
        assert last_record_end(inside, **at) == inside


@pytest.mark.parametrize("database", ["sqlite+aiosqlite:///x.db", "postgresql+asyncpg://h/db"])
def test_replicas_are_postgresql_replicas_of_postgresql(database: str, tmp_path: Path) -> None:
    replica = "sqlite+aiosqlite:///y.db" if database.startswith("postgresql") else database
    settings = make_settings(
        database.replace("x.db", str(tmp_path / "x.db")),
        tmp_path / "keys",
        database=DatabaseSettings(replica_urls=[replica]),
    )

    with pytest.raises(ConfigurationError, match="replica"):
        AppContext.build(ResolvedSettings(settings, TEST_SECRETS))


async def test_without_replicas_nothing_changes(running: RunningApp) -> None:
    """No replica configured: no replica engine or check, no cookie, the same engines."""
    context = running.context
    resident = await running.api.registered()
    answer = await running.client.get("/v1/me/status", headers=resident.auth)

    assert answer.status_code == 200
    assert "set-cookie" not in answer.headers
    assert context.replicas is None
    if context.engine.dialect.name == "postgresql":
        assert context.read_engine is context.engine


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_cookie_that_names_no_time_is_ignored_without_replicas(running: RunningApp) -> None:
    """The status page reads the cookie whether replicas are configured or not: one that is
    not a time (here a latin-1 superscript two, which str.isdigit() takes) is no cookie."""
    resident = await running.api.registered()
    for cookie in (b"yk_seen=\xb2", b"yk_seen=1\xb3", b"yk_seen=12"):
        answer = await running.client.get(
            "/v1/me/status", headers={**resident.auth, "Cookie": cookie}
        )

        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "green"
        assert "set-cookie" not in answer.headers
