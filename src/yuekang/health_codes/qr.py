"""Render a health code's QR symbol as PNG or SVG in the holder's status colour.

The QR text (``YK1:`` followed by a compact JWS) is sized for byte mode at error correction
level M with a 4-module quiet zone, so the version depends on the text length alone: 288 to
331 characters give version 13, the largest our codes may reach (332 would need version 14).
The dark modules are drawn in the status colour on a white background.

The status colours are darkened from the "natural" green / yellow / red: scanners decode
on luminance, and a true yellow (or a bright green) is too close to white to binarise
reliably on a phone screen under glare or a cheap camera. Every colour keeps at least a
4.5:1 contrast ratio against white (WCAG AA, which also clears the ISO/IEC 15415 grade A
symbol-contrast bar of 70%), so "yellow" is a dark amber.

The version comes from qrcode's byte-mode fit; the symbol itself (codewords, placement and
the choice among the eight mask patterns) from zxing-cpp's C++ writer (zint), held to that
version. The writer cannot be told to stay in byte mode: within the version it may put a run
of digits or upper-case letters in numeric or alphanumeric mode, which every QR reader
must decode, to the same text. Empty text is refused (ValueError).

A cold render costs about 4 ms for PNG (1 ms of it the version fit, 1 ms the writer, 1 ms
the PNG encoding) and 3 ms for SVG at version 13, against 26 and 31 ms when qrcode drew
the symbol in pure Python. The service still renders lazily and caches the bytes. This
module is pure: no settings, DB or I/O.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import qrcode
import qrcode.exceptions
import qrcode.util
import zxingcpp
from PIL import Image, ImageOps
from qrcode.constants import ERROR_CORRECT_M

__all__ = [
    "ERROR_CORRECTION",
    "QUIET_ZONE",
    "STATUS_COLOURS",
    "qr_version",
    "render_png",
    "render_svg",
]

STATUS_COLOURS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "green": "#0b7a36",
        "yellow": "#9c6500",
        "red": "#c8102e",
    }
)
ERROR_CORRECTION: Final = "M"
QUIET_ZONE: Final = 4

_WHITE: Final = (255, 255, 255)
# zxing-cpp draws dark modules as 0 and light ones as 255; the palette PNG wants index 1 for
# the status colour and 0 for white, so that two palette entries (one bit a pixel) suffice.
_LUMA_TO_INDEX: Final = bytes.maketrans(b"\x00\xff", b"\x01\x00")
_DARK_RUN: Final = re.compile(rb"\x01+")


def _colour(status: str) -> str:
    try:
        return STATUS_COLOURS[status]
    except KeyError:
        raise ValueError(f"unknown health-code status: {status!r}") from None


def qr_version(text: str) -> int:
    """Smallest QR version that holds ``text`` in byte mode at level M.

    Raises ``ValueError`` beyond version 40.
    """
    data = text.encode("utf-8")
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M)
    # Forced byte mode: qrcode would otherwise split runs of digits into numeric segments,
    # making the version depend on the content and not just on the length of the JWS.
    qr.add_data(qrcode.util.QRData(data, mode=qrcode.util.MODE_8BIT_BYTE))
    try:
        # best_fit() is the version search of make(fit=True) without its slow mask search.
        version: int = qr.best_fit()
    except (ValueError, qrcode.exceptions.DataOverflowError):
        # qrcode 8 trips over its own version check (a ValueError) before it can raise the
        # DataOverflowError it means to.
        raise ValueError(f"{len(data)} bytes do not fit QR version 40 at level M") from None
    return version


def _modules(text: str) -> tuple[bytes, int]:
    """The symbol without quiet zone, row by row: 1 for a dark module, 0 for a light one."""
    version = qr_version(text)
    barcode = zxingcpp.create_barcode(
        # Bytes, not str: the writer would transcode a str to a legacy character set where it
        # could, while the version fit (and every reader's guess) counts on UTF-8. eci="0"
        # stops it announcing bytes as binary with an ECI header, whose 12 bits would push a
        # 331-character text out of version 13.
        text.encode("utf-8"),
        zxingcpp.BarcodeFormat.QRCode,
        ec_level=ERROR_CORRECTION,
        version=version,
        eci="0",
    )
    symbol = Image.fromarray(barcode.to_image(add_quiet_zones=False))
    width, size = symbol.size
    # zxing-cpp silently ignores options it does not know, so a renamed one would otherwise
    # go unnoticed until a scanner met a symbol of the wrong size or level.
    if size != width or size != 17 + 4 * version or barcode.ec_level != ERROR_CORRECTION:
        raise RuntimeError(
            f"zxing-cpp wrote a {width}x{size} symbol at level {barcode.ec_level!r}, "
            f"not version {version} at level {ERROR_CORRECTION}"
        )
    return symbol.tobytes().translate(_LUMA_TO_INDEX), size


def render_png(text: str, status: str, *, box_size: int = 8) -> bytes:
    """PNG of the QR symbol for ``text``: status-coloured modules on white.

    ``box_size`` is the number of pixels per module. The image is a two-colour palette
    PNG (1 bit per pixel), a couple of kilobytes at version 13.
    """
    colour = _colour(status)
    if box_size < 1:
        raise ValueError(f"box_size must be at least 1, got {box_size}")
    modules, size = _modules(text)
    # One pixel per module, then a nearest-neighbour upscale: far cheaper than drawing each
    # module as a rectangle on an RGB canvas that would then need quantising to a palette.
    image = Image.frombytes("P", (size, size), modules)
    image = ImageOps.expand(image, border=QUIET_ZONE, fill=0)
    image.putpalette([*_WHITE, *bytes.fromhex(colour.removeprefix("#"))])
    full = image.size[0] * box_size
    image = image.resize((full, full), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    # zlib's default level: optimize=True (level 9) takes 3.5 ms instead of 1 ms at version
    # 13 to save about 120 of some 1,900 bytes.
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def render_svg(text: str, status: str) -> bytes:
    """UTF-8 SVG of the QR symbol for ``text``: one status-coloured path on a white rect.

    The viewBox is in modules (quiet zone included) and width/height are 1 mm per module,
    so the symbol scales cleanly with CSS.
    """
    colour = _colour(status)
    modules, size = _modules(text)
    full = size + 2 * QUIET_ZONE
    # zxing-cpp's own SVG has no viewBox, sizes in pixels and fills a group, so only its
    # modules are used: one rectangle per horizontal run of dark modules keeps the path short.
    runs = []
    for row in range(size):
        for run in _DARK_RUN.finditer(modules, row * size, (row + 1) * size):
            x = QUIET_ZONE + run.start() - row * size
            length = run.end() - run.start()
            runs.append(f"M{x} {QUIET_ZONE + row}h{length}v1h-{length}z")
    svg = (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{full}mm" '
        f'height="{full}mm" viewBox="0 0 {full} {full}">'
        '<rect fill="white" x="0" y="0" width="100%" height="100%"/>'
        f'<path id="qr-path" fill="{colour}" d="{"".join(runs)}"/></svg>'
    )
    return svg.encode("utf-8")
