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

from yuekang.feeds.rows import KindSpec, RowContext, RowProblem, check_plainly

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


# A row of the body: its 1-based line (a CSV header is line 1), and either its values or the
# problem that kept them from being read. A plain tuple: one is made for each of up to 100,000
# rows, and a dataclass instance costs several times as much to make.
Line = tuple[int, dict[str, Any] | None, RowProblem | None]


async def _pieces(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, list[bytes]]]:
    """The complete lines of each piece of the body, and the number of the first (one list per
    piece: a batch has up to 100,000 lines, and a step of an async generator costs more than
    reading a line)."""
    pending = b""
    number = 1
    async for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        if complete and max(map(len, complete)) > MAX_LINE_BYTES:
            first_long = next(i for i, line in enumerate(complete) if len(line) > MAX_LINE_BYTES)
            raise _too_long(number + first_long)
        if len(pending) > MAX_LINE_BYTES:
            raise _too_long(number + len(complete))
        if complete:
            yield number, complete
            number += len(complete)
    if pending:
        yield number, [pending]


def _too_long(number: int) -> BodyRejected:
    return BodyRejected("line_too_long", f"line {number} is longer than {MAX_LINE_BYTES} bytes")


class _Reader:
    """Reads one line at a time as the standard library does, remembering a CSV header."""

    def __init__(self, fmt: Format, spec: KindSpec) -> None:
        self.fmt = fmt
        self.spec = spec
        self.header: list[str] | None = None

    def read(self, number: int, raw: bytes) -> Line | None:
        """The row on a line; ``None`` for a blank line or the CSV header."""
        text = _text(raw)
        if text is None:
            if self.fmt == "csv" and self.header is None:
                raise BodyRejected("bad_header", "the CSV header is not valid UTF-8")
            return (number, None, _NOT_UTF8)
        if number == 1:
            text = text.removeprefix("\ufeff")
        if not text or text.isspace():
            return None
        if self.fmt == "ndjson":
            return _json_line(number, text)
        if self.header is None:
            self.header = _header(text, self.spec)
            return None
        return _csv_line(number, text, self.header)

    def end(self) -> None:
        if self.fmt == "csv" and self.header is None:
            raise BodyRejected("bad_header", "the CSV body has no header line")


def _text(raw: bytes) -> str | None:
    try:
        return raw.removesuffix(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        return None


_NOT_UTF8 = RowProblem(None, "encoding", "the line is not valid UTF-8")


async def read_rows(
    chunks: AsyncIterator[bytes],
    fmt: Format,
    spec: KindSpec,
    context: RowContext,
    full: Callable[[Line], tuple[Any, ...] | None],
) -> AsyncIterator[tuple[int, list[tuple[Any, ...]]]]:
    """The body's rows checked, a piece of the body at a time: how many rows the piece held, and
    the database tuples of those accepted, in the body's order.

    A row in the usual form is read by orjson and taken by the plain path (``check_plainly``) in
    one pass, with nothing made for it but its tuple. Any other row is read as the standard
    library reads it and, unless the plain path takes it then, handed to ``full``, which answers
    its tuple or ``None`` for a row it rejected (and reported).

    orjson reads lines from the bytes, in C, twice as fast as the standard library. It accepts a
    subset of what ``json.loads`` does (no NaN, no lone surrogates, strict UTF-8) and reads it
    alike but for one thing: an integer past 64 bits becomes a float. The plain path takes only
    strings and integers, and every row it does not take is read again, so what a bad row
    reports always comes from ``json.loads``.
    """
    reader = _Reader(fmt, spec)
    fast = fmt == "ndjson"
    loads, unreadable = orjson.loads, orjson.JSONDecodeError
    async for first, raws in _pieces(chunks):
        accepted: list[tuple[Any, ...]] = []
        rows = 0
        for number, raw in enumerate(raws, first):
            if fast:
                try:
                    values = loads(raw)
                except unreadable:
                    values = None
                if values.__class__ is dict:
                    record = check_plainly(spec, values, context)
                    if record is not None:
                        rows += 1
                        accepted.append(record)
                        continue
            line = reader.read(number, raw)
            if line is None:
                continue
            rows += 1
            record = None if line[1] is None else check_plainly(spec, line[1], context)
            if record is None:
                record = full(line)
            if record is not None:
                accepted.append(record)
        yield rows, accepted
    reader.end()


_NOT_JSON = RowProblem(None, "format", "the line is not valid JSON")
_NOT_OBJECT = RowProblem(None, "format", "the line is not a JSON object")


def _json_line(number: int, text: str) -> Line:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and integers too long to convert.
        return (number, None, _NOT_JSON)
    if not isinstance(value, dict):
        return (number, None, _NOT_OBJECT)
    return (number, value, None)


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
        return (number, None, RowProblem(None, "format", "the line is not a CSV record"))
    if len(fields) != len(header):
        return (
            number,
            None,
            RowProblem(None, "format", f"{len(fields)} fields where the header has {len(header)}"),
        )
    return (
        number,
        {name: value for name, value in zip(header, fields, strict=True) if value},
        None,
    )
