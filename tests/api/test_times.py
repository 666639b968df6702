"""Every time in a JSON answer has one form, RFC 3339 in UTC with ``Z`` (docs/API.md, "Times"):
a page or a client reads one form, whichever endpoint answered. Integers remain only where a
standard asks for NumericDate: the claims of signed tokens, and the verdict's copy of a code's
own ``iat`` and ``exp``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from conftest import RunningApp
from feeds.feedkit import case, ndjson, post
from support.api import Api
from yuekang.principals import Role
from yuekang.residents.documents import local_date

FORM = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")
# A time with an offset, anywhere in an answer's text: "+00:00" or "+08:00" is the other form.
OFFSET = re.compile(r"T\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:?\d\d")
TIME_KEYS = re.compile(r".*_at|at|since|until|from|to")


def times(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if TIME_KEYS.fullmatch(key) and not isinstance(item, (dict, list)):
                yield f"{path}.{key}", item
            yield from times(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from times(item, f"{path}[{index}]")


async def test_times_have_one_form_across_endpoints(running: RunningApp, api: Api) -> None:
    client = running.client
    otp = await api.request_otp("+8613900139000")
    resident = await api.registered()
    me = (await client.get("/v1/me", headers=resident.auth)).json()
    issued = await api.issue(resident)
    today = local_date(running.context.clock.now()).isoformat()
    feed = await running.feed_key("cases")
    pushed = await post(running, feed, "cases", ndjson(case(resident, today)))
    operator = {"Authorization": f"Bearer {await running.operator_token(Role.OPERATOR)}"}
    override = await client.put(
        f"/v1/admin/residents/{me['resident_id']}/status",
        headers=operator,
        json={"status": "yellow", "reason": "reviewed in person", "valid_days": 3},
    )
    staff = {"Authorization": f"Bearer {await running.operator_token(Role.ADMIN)}"}
    epidemiologist = {
        "Authorization": f"Bearer {await running.operator_token(Role.EPIDEMIOLOGIST)}"
    }
    answers = {
        "otp": otp,
        "codes": issued,
        "feed": pushed,
        "override": override,
        "identity": await client.get("/v1/me/identity", headers=resident.auth),
        "sessions": await client.get("/v1/me/sessions", headers=resident.auth),
        "status": await client.get("/v1/me/status", headers=resident.auth),
        "history": await client.get(
            f"/v1/admin/residents/{me['resident_id']}/status-history",
            headers=epidemiologist,
            params={"reason": "case investigation 2026-118"},
        ),
        "keys": await client.get("/v1/admin/keys", headers=staff),
        "audit": await client.get("/v1/admin/audit", headers=staff),
        "overview": await client.get("/v1/admin/stats/overview", headers=staff),
    }
    seen: dict[str, int] = {}
    for name, answer in answers.items():
        assert answer.status_code < 300, (name, answer.text)
        assert OFFSET.search(answer.text) is None, (name, answer.text)
        for path, value in times(answer.json()):
            if value is None or re.fullmatch(r"\d{4}-\d\d-\d\d", str(value)):
                continue  # absent, or a calendar date (a day, not an instant)
            assert isinstance(value, str) and FORM.fullmatch(value), (name, path, value)
            seen[name] = seen.get(name, 0) + 1
    # The walk saw the times these answers are known to hold, not an empty document.
    assert set(seen) >= {"otp", "codes", "status", "history", "keys", "audit", "overview"}
    # The audit detail of the override holds its expiry as a string built by hand.
    details = [e["detail"] for e in answers["audit"].json()["events"]]
    expiry = next(d["expires_at"] for d in details if d and d.get("reason") == "reviewed in person")
    assert FORM.fullmatch(expiry)


async def test_the_verdict_keeps_the_codes_own_numeric_dates(running: RunningApp, api: Api):
    resident = await api.registered()
    code = await api.code(resident)
    gate = await running.checkpoint_key()

    verdict = await running.client.post(
        "/v1/verify", headers={"Authorization": f"Bearer {gate}"}, json={"qr_text": code["qr_text"]}
    )

    body = verdict.json()
    assert verdict.status_code == 200 and body["verdict"] == "valid", verdict.text
    # The same integers as the signed code's iat and exp, and as every offline verifier prints.
    issued = running.context.clock.now().replace(microsecond=0)
    assert body["issued_at"] == int(issued.timestamp())
    assert FORM.fullmatch(code["issued_at"]) and FORM.fullmatch(code["expires_at"])
