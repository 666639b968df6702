"""``yuekang serve`` writes JSON lines, its own and uvicorn's, as an operator's log collector
reads them: every line one object, the request lines naming the request the client was told
of, the access log naming routes, never paths."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.servers import serve, server_env

pytestmark = pytest.mark.e2e


def test_the_server_log_is_json_lines_naming_requests(fresh_database_url: str, tmp_path: Path):
    env = server_env(
        fresh_database_url,
        tmp_path / "keys",
        YUEKANG_LOG__FORMAT="json",
        YUEKANG_LOG__LEVEL="DEBUG",
        YUEKANG_ACCESS_LOG="true",
    )
    phone = "+8613912345678"
    with serve(env, tmp_path) as server, httpx.Client(base_url=server.base, timeout=10) as client:
        sent = client.post(
            "/v1/auth/otp", json={"phone": phone}, headers={"X-Request-ID": "from-the-lb-1"}
        )
        assert sent.status_code == 200
        assert sent.headers["X-Request-ID"] == "from-the-lb-1"
        code = sent.json()["dev_code"]
        missing = client.get("/v1/codes/AAAAAAAAAAAAAAAAAAAAAA.png?size=9")
        assert missing.status_code == 401
        # The access line is written as the answer finishes, which a loaded machine may let
        # the client see first: wait for the last one, briefly.
        deadline = time.monotonic() + 15
        while True:
            log = server.log.read_text(encoding="utf-8")
            if '"route": "/v1/codes/{code_id}.png"' in log or time.monotonic() > deadline:
                break
            time.sleep(0.1)

    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
        when = dt.datetime.fromisoformat(line["time"])
        assert when.utcoffset() == dt.timedelta(0), line
    loggers = {line["logger"] for line in lines}
    assert {"uvicorn.error", "yuekang", "yuekang.access"} <= loggers, loggers

    def access(route: str) -> dict[str, Any]:
        [found] = [
            line for line in lines if line["logger"] == "yuekang.access" and line["route"] == route
        ]
        return found

    otp = access("/v1/auth/otp")
    assert (otp["method"], otp["status"], otp["request_id"]) == ("POST", 200, "from-the-lb-1")
    image = access("/v1/codes/{code_id}.png")
    assert image["status"] == 401
    assert image["request_id"] == missing.headers["X-Request-ID"]
    assert isinstance(image["duration_ms"], float)
    assert "AAAAAAAAAAAAAAAAAAAAAA" not in log
    assert "size=9" not in log
    # The development SMS sender writes the code to the log: that is what it is for, and
    # production refuses it (config.resolve). No other line carries it, or the phone.
    others = [line for line in lines if line["logger"] != "yuekang.sms"]
    assert not [line for line in others if code in json.dumps(line, ensure_ascii=False)]
    assert not [line for line in lines if phone in json.dumps(line, ensure_ascii=False)]
    [sms] = [line for line in lines if line["logger"] == "yuekang.sms"]
    assert sms["request_id"] == "from-the-lb-1"
