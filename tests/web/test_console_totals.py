"""The dashboard of a province with more checkpoints than the overview lists: its totals are
every place's, not the 50 busiest places' added up in the page, and the chart says it draws only
some of them."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
from playwright.sync_api import BrowserContext, expect

from support.servers import Server
from web.test_console import TIMEOUT_MS, context, open_console, staff_token

__all__ = ["context"]  # the fixture, from the console's tests

PLACES = 53  # more than the overview's 50


def test_the_dashboard_counts_every_place_and_says_the_chart_draws_some(
    web_server: Server, context: BrowserContext
) -> None:
    admin = staff_token(web_server, "admin")
    now = dt.datetime.now(dt.UTC).isoformat()
    with httpx.Client(base_url=web_server.base, timeout=30) as client:
        for n in range(PLACES):
            made = client.post(
                "/v1/admin/checkpoints",
                headers={"Authorization": f"Bearer {admin}"},
                json={"name": f"核验点 {n:02d}", "kind": "venue"},
            )
            assert made.status_code == 201, made.text
            scan = {
                "scan_id": uuid.uuid4().hex,
                "code_id": uuid.uuid4().hex[:22],
                "scanned_at": now,
                "verdict": "valid",
                "decision": "allow",
            }
            uploaded = client.post(
                "/v1/scans",
                headers={"Authorization": f"Bearer {made.json()['api_key']}"},
                json={"scans": [scan]},
            )
            assert uploaded.status_code == 200, uploaded.text

    page = open_console(context, web_server, admin).page
    expect(page.locator("body[data-dashboard=ready]")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(page.locator("#tile-decisions-value")).to_have_text(str(PLACES))
    expect(page.locator("#tile-decisions-sub")).to_have_text(f"通行 {PLACES} · 禁止 0 · 人工核验 0")
    expect(page.locator("#tile-verdicts-value")).to_have_text(str(PLACES))
    expect(page.locator("#chart-scans-more")).to_be_visible()
    expect(page.locator("#chart-scans-more")).to_have_text(
        f"图中为扫码最多的 15 个核验点，共 {PLACES} 个；上方合计包括全部核验点"
    )
