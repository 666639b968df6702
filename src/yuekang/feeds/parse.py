"""Reading a feed body as it streams: NDJSON (one JSON object per line) or CSV (a header line,
then one record per line). Memory holds one line at a time, whatever the batch size.

A line that cannot be read (bad UTF-8, bad JSON, the wrong number of CSV fields) is a row error
like any other; only a problem with the whole body (a CSV header naming unknown or missing
columns, a line longer than ``MAX_LINE_BYTES``) rejects the batch.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import orjson

from yuekang.feeds.rows import KindSpec, RowProblem

MAX_LINE_BYTES = 16 * 1024
Format = Literal["ndjson", "csv"]
MEDIA_TYPES: dict[str, Format] = {
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "text/csv": "csv",
}


class BodyRejected(Exception):
    """The body as a whole cannot be read as a batch of this kind."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# A row of the body: its 1-based line (a CSV header is line 1), either its values or the problem
# that kept them from being read, and the line itself when orjson read it (see _fast_json). A
# plain tuple: one is made for each of up to 100,000 rows, and a dataclass instance costs several
# times as much to make.
Line = tuple[int, dict[str, Any] | None, RowProblem | None, bytes | None]


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[tuple[int, bytes]]]:
    """The complete lines of each piece of the body, numbered (one list per piece: a batch has
    up to 100,000 lines, and a step of an async generator costs more than reading a line)."""
    pending = b""
    number = 0
    async for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        numbered = []
        for line in complete:
            number += 1
            if len(line) > MAX_LINE_BYTES:
                raise BodyRejected(
                    "line_too_long", f"line {number} is longer than {MAX_LINE_BYTES} bytes"
                )
            numbered.append((number, line))
        if len(pending) > MAX_LINE_BYTES:
            raise BodyRejected(
                "line_too_long", f"line {number + 1} is longer than {MAX_LINE_BYTES} bytes"
            )
        if numbered:
            yield numbered
    if pending:
        yield [(number + 1, pending)]


def _text(raw: bytes) -> str | None:
    try:
        return raw.removesuffix(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        return None


_NOT_UTF8 = RowProblem(None, "encoding", "the line is not valid UTF-8")


async def read_lines(
    chunks: AsyncIterator[bytes], fmt: Format, spec: KindSpec
) -> AsyncIterator[list[Line]]:
    """The body's rows, a list per piece of the body received."""
    header: list[str] | None = None
    ndjson = fmt == "ndjson"
    async for numbered in _lines(chunks):
        rows: list[Line] = []
        for number, raw in numbered:
            if ndjson:
                value = _fast_json(raw)
                if value is not None:
                    rows.append((number, value, None, raw))
                    continue
            text = _text(raw)
            if text is None:
                if fmt == "csv" and header is None:
                    raise BodyRejected("bad_header", "the CSV header is not valid UTF-8")
                rows.append((number, None, _NOT_UTF8, None))
                continue
            if number == 1:
                text = text.removeprefix("\ufeff")
            if not text or text.isspace():
                continue
            if ndjson:
                rows.append(_json_line(number, text))
            elif header is None:
                header = _header(text, spec)
            else:
                rows.append(_csv_line(number, text, header))
        if rows:
            yield rows
    if fmt == "csv" and header is None:
        raise BodyRejected("bad_header", "the CSV body has no header line")


def _fast_json(raw: bytes) -> dict[str, Any] | None:
    """The object on a line as orjson reads it (in C, about twice as fast as the standard
    library's scanner, and from the bytes without decoding them first), or ``None`` when it reads
    no object, and the line is read as json.loads reads it.

    orjson accepts a subset of what json.loads does (no NaN, no lone surrogates, strict UTF-8)
    and reads it alike, but for one thing: an integer too long for 64 bits becomes a float. That
    is no value a row's plain path takes (it takes strings and integers only); a row it does not
    take is read again by :func:`exactly` before the full checks, so a bad row's reasons always
    come from json.loads.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if value.__class__ is dict else None


def exactly(line: Line) -> Line:
    """The line as the standard library reads it: itself, unless orjson read it."""
    number, _, _, raw = line
    if raw is None:
        return line
    text = _text(raw)
    if text is None:
        return (number, None, _NOT_UTF8, None)
    return _json_line(number, text)


# json.loads(text) is this scanner run from the first character, after a few steps for arguments,
# a BOM and surrounding whitespace that cost as much again as scanning a short line.
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_NOT_JSON = RowProblem(None, "format", "the line is not valid JSON")
_NOT_OBJECT = RowProblem(None, "format", "the line is not a JSON object")


def _json_line(number: int, text: str) -> Line:
    value: Any = None
    if text[:1] == "{":
        # An object from the first character to the last is what json.loads would read; anything
        # else (surrounding space, an error) is left to json.loads to accept or refuse.
        try:
            value, end = _scan(text, 0)
        except (StopIteration, ValueError, RecursionError):
            value = None
        else:
            if end != len(text):
                value = None
    if value is None:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            # ValueError covers JSONDecodeError and integers too long to convert.
            return (number, None, _NOT_JSON, None)
    if not isinstance(value, dict):
        return (number, None, _NOT_OBJECT, None)
    return (number, value, None, None)


def _header(text: str, spec: KindSpec) -> list[str]:
    try:
        names = [name.strip() for name in next(csv.reader([text]))]
    except csv.Error as exc:
        raise BodyRejected(
            "bad_header",
            f"the CSV header cannot be read ({exc}); lines must end with LF or CRLF",
        ) from exc
    unknown = [n for n in names if n not in spec.fields]
    missing = [n for n in spec.fields if n not in names and n not in spec.optional]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    problems = []
    if unknown:
        problems.append(f"unknown column(s) {unknown}")
    if missing:
        problems.append(f"missing column(s) {missing}")
    if duplicated:
        problems.append(f"repeated column(s) {duplicated}")
    if problems:
        raise BodyRejected(
            "bad_header",
            f"the CSV header does not fit {spec.kind}: {'; '.join(problems)}; "
            f"expected {list(spec.fields)}",
        )
    return names


def _csv_line(number: int, text: str, header: list[str]) -> Line:
    try:
        fields = next(csv.reader([text]))
    except csv.Error:
        return (number, None, RowProblem(None, "format", "the line is not a CSV record"), None)
    if len(fields) != len(header):
        return (
            number,
            None,
            RowProblem(None, "format", f"{len(fields)} fields where the header has {len(header)}"),
            None,
        )
    return (
        number,
        {name: value for name, value in zip(header, fields, strict=True) if value},
        None,
        None,
    )
