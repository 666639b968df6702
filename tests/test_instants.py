"""Times from requests: any offset, any year a client can write, gives a time in UTC or a 422 --
never the OverflowError of a time near year 1 or 9999 moved into UTC."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from conftest import RunningApp
from yuekang.principals import Role
from yuekang.schemas import Instant

INSTANT = TypeAdapter(Instant)
# Offsets as clients write them: whole minutes, up to a day either way.
OFFSETS = st.integers(-1439, 1439).map(lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)))


def _in_range(when: dt.datetime) -> bool:
    try:
        return 1900 <= when.astimezone(dt.UTC).year <= 9998
    except OverflowError:
        return False


@given(st.datetimes(timezones=OFFSETS))
def test_any_aware_time_is_utc_in_range_or_refused(when: dt.datetime) -> None:
    if not _in_range(when):
        with pytest.raises(ValidationError, match="between the years 1900 and 9998"):
            INSTANT.validate_python(when.isoformat())
        return
    utc = INSTANT.validate_python(when.isoformat())
    assert utc.tzinfo == dt.UTC and utc == when
    # What a column and the arithmetic around it do with it must not overflow either.
    assert utc - dt.timedelta(days=366) < utc + dt.timedelta(days=366)


@given(st.datetimes())
def test_a_time_without_an_offset_is_refused(when: dt.datetime) -> None:
    with pytest.raises(ValidationError, match="UTC offset"):
        INSTANT.validate_python(when.isoformat())


EDGES = [
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00Z",
    "1899-12-31T23:59:59Z",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59Z",
    "2026-13-01T00:00:00Z",
]


@pytest.mark.parametrize("edge", EDGES)
async def test_the_edges_are_a_422_on_every_date_parameter(running: RunningApp, edge: str):
    epi = {"Authorization": f"Bearer {await running.operator_token(Role.EPIDEMIOLOGIST)}"}
    gate = await running.checkpoint_key()
    checkpoint = (
        await running.client.get(
            "/v1/admin/checkpoints",
            headers={"Authorization": f"Bearer {await running.operator_token()}"},
        )
    ).json()[0]["id"]
    window = await running.client.get(
        f"/v1/admin/checkpoints/{checkpoint}/scans",
        headers=epi,
        params={"from": edge, "to": "2026-12-01T00:00:00Z", "case_reference": "GZ-1"},
    )
    upload = await running.client.post(
        "/v1/scans",
        headers={"Authorization": f"Bearer {gate}"},
        json={"scans": [{"scan_id": "s-1", "scanned_at": edge, "verdict": "invalid"}]},
    )
    assert (window.status_code, upload.status_code) == (422, 422)
    assert window.json()["error"]["code"] == upload.json()["error"]["code"] == "validation_error"
