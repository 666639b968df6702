"""Building feed batches and reading what a resident sees, for the feed suite."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

import httpx

from conftest import RunningApp
from support.api import Resident
from yuekang.residents.documents import local_date

NDJSON = "application/x-ndjson"
CSV = "text/csv"
UTC8 = dt.timezone(dt.timedelta(hours=8))

Line = dict[str, Any] | str | bytes
StartApp = Callable[..., Awaitable[RunningApp]]
"""The ``app_with`` fixture: start the app with other ``FeedSettings`` (``max_rows=5``, ...)."""


def ndjson(*lines: Line) -> bytes:
    """One line per item: a dict as a JSON object, a str or bytes as it is."""
    out = []
    for line in lines:
        if isinstance(line, dict):
            out.append(json.dumps(line, ensure_ascii=False).encode())
        elif isinstance(line, str):
            out.append(line.encode())
        else:
            out.append(line)
    return b"".join(item + b"\n" for item in out)


def csv_body(header: str, *records: str, newline: str = "\n", bom: bool = False) -> bytes:
    text = newline.join([header, *records]) + newline
    return ("\ufeff" if bom else "").encode() + text.encode()


def today(running: RunningApp) -> dt.date:
    """Today where the residents live (UTC+8)."""
    return local_date(running.context.clock.now())


def days_ago(running: RunningApp, days: int) -> str:
    return (today(running) - dt.timedelta(days=days)).isoformat()


def local_time(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), UTC8)


def doc(resident: Resident | str) -> str:
    number = resident if isinstance(resident, str) else resident.doc_number
    assert number is not None
    return number


def case(
    resident: Resident | str,
    start: str,
    category: str = "close_contact",
    end: str | None = None,
) -> dict[str, Any]:
    row = {"doc_type": "prc_id", "doc_number": doc(resident), "category": category}
    row["start_date"] = start
    if end is not None:
        row["end_date"] = end
    return row


def nat(
    resident: Resident | str, sampled_at: dt.datetime | str, result: str = "negative"
) -> dict[str, Any]:
    when = sampled_at if isinstance(sampled_at, str) else sampled_at.isoformat()
    return {
        "doc_type": "prc_id",
        "doc_number": doc(resident),
        "sampled_at": when,
        "result": result,
        "lab": "广州金域医学检验中心",
    }


def vaccination(resident: Resident | str, dose: int | str, date: str) -> dict[str, Any]:
    return {
        "doc_type": "prc_id",
        "doc_number": doc(resident),
        "dose": dose,
        "date": date,
        "product": "CoronaVac",
    }


def travel(resident: Resident | str, region: str, date: str) -> dict[str, Any]:
    return {"doc_type": "prc_id", "doc_number": doc(resident), "region_code": region, "date": date}


def risk_area(
    region: str, level: str, valid_from: str, valid_to: str | None = None
) -> dict[str, Any]:
    row = {"region_code": region, "level": level, "valid_from": valid_from}
    if valid_to is not None:
        row["valid_to"] = valid_to
    return row


async def post(
    running: RunningApp,
    key: str,
    kind: str,
    body: bytes | AsyncIterable[bytes],
    *,
    idempotency_key: str | None = "batch-1",
    content_type: str = NDJSON,
    **headers: str,
) -> httpx.Response:
    sent = {"Authorization": f"Bearer {key}", "Content-Type": content_type, **headers}
    if idempotency_key is not None:
        sent["Idempotency-Key"] = idempotency_key
    return await running.client.post(f"/v1/feeds/{kind}", content=body, headers=sent)


async def push(
    running: RunningApp,
    key: str,
    kind: str,
    body: bytes,
    *,
    idempotency_key: str = "batch-1",
    content_type: str = NDJSON,
) -> dict[str, Any]:
    """A batch that must be taken (201); its result."""
    response = await post(
        running, key, kind, body, idempotency_key=idempotency_key, content_type=content_type
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def error_code(response: httpx.Response) -> tuple[int, str | None]:
    """The status and the error code (``None`` when the answer is not an error)."""
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    return response.status_code, None if not isinstance(error, dict) else error.get("code")


def problems(batch: dict[str, Any]) -> list[tuple[int, str | None, str]]:
    return [(e["row"], e["field"], e["reason"]) for e in batch["errors"]]


async def my_status(running: RunningApp, resident: Resident) -> dict[str, Any]:
    response = await running.client.get("/v1/me/status", headers=resident.auth)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def verify(running: RunningApp, qr_text: str) -> dict[str, Any]:
    gate = {"Authorization": f"Bearer {await running.checkpoint_key()}"}
    response = await running.client.post("/v1/verify", json={"qr_text": qr_text}, headers=gate)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result
