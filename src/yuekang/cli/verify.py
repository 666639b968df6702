"""``yuekang verify``: judge a code offline with a JWKS, the way a checkpoint device does.

Imports only the offline verifier, httpx (to fetch a JWKS URL once) and zxing-cpp (to read a QR
image): nothing of the server.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from yuekang.clock import rfc3339
from yuekang.codec.errors import InvalidKey
from yuekang.codec.reasons import LANGUAGES
from yuekang.verifier import DEFAULT_LEEWAY, Verifier

MAX_JWKS_BYTES = 1 << 20
"""A JWKS holds at most 64 keys (``codec.jwks.MAX_KEYS``): a few tens of kilobytes."""
FETCH_SECONDS = 20.0
MAX_LEEWAY = 900
"""The most clock leeway the service itself allows (``codes.clock_leeway_seconds``): more would
take a code expired a day ago, or issued tomorrow, as valid."""


def _fetch(url: str) -> bytes:
    """The body at ``url``, refused past :data:`MAX_JWKS_BYTES` (decompressed) or
    :data:`FETCH_SECONDS` in all: a server that drips or inflates must not hold the device."""
    import httpx

    deadline = time.monotonic() + FETCH_SECONDS
    body = bytearray()
    try:
        with httpx.stream("GET", url, timeout=10.0) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"the keys are over {MAX_JWKS_BYTES} bytes: not a JWKS")
                if time.monotonic() > deadline:
                    raise ValueError(f"the keys took over {FETCH_SECONDS:.0f} s to arrive")
    except httpx.HTTPError as exc:
        raise ValueError(f"cannot fetch the keys: {exc}") from exc
    return bytes(body)


def load_jwks(source: str) -> dict[str, Any]:
    if source.startswith(("http://", "https://")):
        text = _fetch(source)
    else:
        # Read to the cap, like a download: /dev/zero, or a large file given by mistake, must
        # not fill the memory before the JSON parser can refuse it.
        with Path(source).open("rb") as handle:
            text = handle.read(MAX_JWKS_BYTES + 1)
        if len(text) > MAX_JWKS_BYTES:
            raise ValueError(f"the keys are over {MAX_JWKS_BYTES} bytes: not a JWKS")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"the keys file is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError("a JWKS must be a JSON object")
    return document


def _utc(epoch: int | None) -> str:
    if epoch is None:
        return "-"
    try:
        moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    except (OverflowError, OSError, ValueError):  # a signed code may say year 3 billion
        return str(epoch)
    return rfc3339(moment)


def _instant(text: str) -> int:
    """Unix seconds from ``text``: an RFC 3339 time with its offset, or the seconds themselves."""
    if text.strip().lstrip("-").isdigit():
        return int(text)
    moment = dt.datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        raise ValueError("a time needs its offset (Z or +08:00)")
    return int(moment.timestamp())


def _shown(text: object, limit: int = 200) -> str:
    """``text`` as a terminal may print it: what is not printable escaped (a key id or a name
    from a file or a signed code must not move the cursor or retitle the window), and cut."""
    value = str(text)
    escaped = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode()
        for ch in value[: limit + 1]
    )
    return escaped if len(value) <= limit else escaped[:limit] + "…"


def read_qr_image(path: Path) -> str:
    import zxingcpp
    from PIL import Image

    # QR only: about one render in 200 also reads as a Codabar by chance, and that
    # false symbol may come first.
    try:
        with Image.open(path) as image:
            results = zxingcpp.read_barcodes(
                image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
            )
    except OSError:
        raise
    except Exception as exc:  # PIL's decompression-bomb guard, a truncated file, ...
        raise ValueError(f"cannot read {path} as an image: {exc}") from exc
    if not results:
        raise ValueError(f"no QR code found in {path}")
    return str(results[0].text)


def verify_command(
    qr_text: Annotated[str | None, typer.Argument(help="The text of the QR code")] = None,
    jwks: Annotated[str, typer.Option(help="JWKS file or URL with the issuer's keys")] = "",
    image: Annotated[Path | None, typer.Option(help="Read the code from a PNG/JPEG")] = None,
    issuer: Annotated[
        str | None, typer.Option(help="Expected issuer (default: the JWKS's)")
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(help="Verify as of this time: 2026-12-07T08:17:19Z, or Unix seconds"),
    ] = None,
    leeway: Annotated[
        int, typer.Option(min=0, max=MAX_LEEWAY, help="Clock leeway in seconds")
    ] = DEFAULT_LEEWAY,
    language: Annotated[str, typer.Option(help="zh-Hans, zh-Hant, en or pt")] = "zh-Hans",
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON")] = False,
) -> None:
    """Verify a health code offline. Exit status: 0 valid, 1 invalid, 2 usage or input error.

    An invalid code is printed with its reasons as a checkpoint shows them, then a `detail:`
    line saying exactly what failed, for whoever is finding out why a device refuses it."""
    if not jwks:
        typer.echo("error: --jwks FILE_OR_URL is required", err=True)
        raise typer.Exit(2)
    if (qr_text is None) == (image is None):
        typer.echo("error: give either QR_TEXT or --image PNG", err=True)
        raise typer.Exit(2)
    try:
        at = _instant(now) if now is not None else int(time.time())
    except ValueError:
        typer.echo(
            f"error: --now {_shown(now)!r} is not a time like 2026-12-07T08:17:19Z", err=True
        )
        raise typer.Exit(2) from None
    if language not in LANGUAGES:
        typer.echo(f"error: --language must be one of {', '.join(LANGUAGES)}", err=True)
        raise typer.Exit(2)
    try:
        verifier = Verifier.from_jwks(load_jwks(jwks), issuer=issuer, leeway=leeway)
        text = read_qr_image(image) if image is not None else str(qr_text)
    except (OSError, ValueError, InvalidKey) as exc:
        typer.echo(f"error: {_shown(exc, 500)}", err=True)
        raise typer.Exit(2) from exc
    verdict = verifier.verify(text, now=at)
    if as_json:
        document = verdict.to_dict(language)
        if verdict.detail is not None:
            document["detail"] = verdict.detail
        typer.echo(json.dumps(document, ensure_ascii=False, indent=2))
    else:
        typer.echo(f"verdict: {verdict.verdict}")
        if verdict.valid:
            typer.echo(f"status:  {verdict.status}")
            typer.echo(f"name:    {_shown(verdict.masked_name)}")
            typer.echo(f"issuer:  {_shown(verdict.issuer)}  key: {_shown(verdict.kid)}")
            typer.echo(f"issued:  {_utc(verdict.issued_at)}")
            typer.echo(f"expires: {_utc(verdict.expires_at)}")
        for item in verdict.to_dict(language)["reasons"]:
            typer.echo(f"reason:  {item['code']}: {item['message']}")
        if verdict.detail is not None:
            typer.echo(f"detail:  {_shown(verdict.detail, 500)}")
    raise typer.Exit(0 if verdict.valid else 1)
