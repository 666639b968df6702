"""The log line formats and the logging configuration ``yuekang serve`` hands uvicorn."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from yuekang import logs


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("yuekang.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_json_line_is_one_object_with_time_level_logger_message_and_extras():
    line = logs.JsonFormatter().format(
        _record("outbox message %s: %s", "m-1", "retry", partner="macao")
    )
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "yuekang.test"
    assert entry["message"] == "outbox message m-1: retry"
    assert entry["partner"] == "macao"
    assert "request_id" not in entry  # written outside any request
    when = dt.datetime.fromisoformat(entry["time"])
    assert when.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - when) < dt.timedelta(minutes=1)


def test_a_line_written_in_a_request_names_it():
    with logs.bound("req-7"):
        entry = json.loads(logs.JsonFormatter().format(_record("x")))
        text = logs.TextFormatter().format(_record("x"))
    assert entry["request_id"] == "req-7"
    assert text.endswith("yuekang.test: x [req-7]")


def test_a_traceback_stays_on_the_line():
    try:
        raise ValueError("bad")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: bad" in json.loads(line)["exception"]


def test_a_message_cannot_forge_fields_or_lines():
    entry = json.loads(logs.JsonFormatter().format(_record('x"\n{"level": "CRITICAL"}')))
    assert entry["level"] == "WARNING"
    assert entry["message"] == 'x"\n{"level": "CRITICAL"}'


def test_request_ids_the_client_may_choose():
    assert logs.sane("0f8fad5b-d9cb-469f-a165-70867728950e") is not None
    assert logs.sane("Root=1-67891233-abcdef012345678912345678") is not None
    for insane in ("", "x" * 129, "a b", "a\nb", 'a"b', "ümlaut", "<script>"):
        assert logs.sane(insane) is None, insane
    made = {logs.new_request_id() for _ in range(1000)}
    assert len(made) == 1000
    assert all(logs.sane(value) for value in made)


def test_sql_and_driver_loggers_never_go_below_their_floor():
    levels = {
        level: logs.dict_config("json", level)["loggers"] for level in ("DEBUG", "INFO", "ERROR")
    }
    # At DEBUG: statements (INFO, parameters hidden), never rows or aiosqlite's parameters.
    assert levels["DEBUG"]["sqlalchemy.engine"]["level"] == "INFO"
    assert levels["DEBUG"]["aiosqlite"]["level"] == "INFO"
    # Otherwise: their warnings only, as before this configuration.
    assert levels["INFO"]["sqlalchemy.engine"]["level"] == "WARNING"
    assert levels["ERROR"]["sqlalchemy.engine"]["level"] == "ERROR"
    # uvicorn's lines reach the one handler, in the one format.
    assert levels["INFO"]["uvicorn.error"] == {"handlers": [], "level": "INFO", "propagate": True}


def test_an_outside_call_s_url_never_reaches_the_log_even_at_debug():
    """httpx logs every request's full URL at INFO, and a gateway's URL may carry its user,
    password or API key (hostile review): its loggers keep to warnings at every level."""
    import subprocess

    program = """
import asyncio, httpx
from yuekang import logs
logs.configure("json", "DEBUG")
async def main():
    transport = httpx.MockTransport(lambda request: httpx.Response(400))
    async with httpx.AsyncClient(transport=transport) as client:
        await client.post("http://gwuser:gwp4ss@sms.test/send?apikey=K3Y-SECRET", json={})
asyncio.run(main())
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert "gwp4ss" not in done.stderr + done.stdout
    assert "K3Y-SECRET" not in done.stderr + done.stdout
