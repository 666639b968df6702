"""Render a health code's QR symbol as PNG or SVG in the holder's status colour.

The QR text (``YK1:`` followed by a compact JWS) is always encoded in byte mode at error
correction level M with a 4-module quiet zone, so the version depends on the text length
alone: 288 to 331 characters give version 13, the largest our codes may reach (332 would
need version 14). The dark modules are drawn in the status colour on a white background.

The status colours are darkened from the "natural" green / yellow / red: scanners decode
on luminance, and a true yellow (or a bright green) is too close to white to binarise
reliably on a phone screen under glare or a cheap camera. Every colour keeps at least a
4.5:1 contrast ratio against white (WCAG AA, which also clears the ISO/IEC 15415 grade A
symbol-contrast bar of 70%), so "yellow" is a dark amber.

Rendering is pure Python (qrcode scores all eight mask patterns) and costs about 25 ms
for PNG and 30 ms for SVG at version 13, so the service renders lazily and caches the
bytes; it never renders on the issuing call. This module is pure: no settings, DB or I/O.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import qrcode
import qrcode.util
from PIL import Image
from qrcode.constants import ERROR_CORRECT_M
from qrcode.image.svg import SvgPathFillImage

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


def _colour(status: str) -> str:
    try:
        return STATUS_COLOURS[status]
    except KeyError:
        raise ValueError(f"unknown health-code status: {status!r}") from None


def _new_qr(text: str) -> Any:
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=QUIET_ZONE)
    # Forced byte mode: qrcode would otherwise split runs of digits into numeric segments,
    # making the version depend on the content and not just on the length of the JWS.
    qr.add_data(qrcode.util.QRData(text.encode("utf-8"), mode=qrcode.util.MODE_8BIT_BYTE))
    return qr


def _matrix(text: str) -> list[list[bool]]:
    qr = _new_qr(text)
    qr.make(fit=True)
    matrix: list[list[bool]] = qr.get_matrix()
    return matrix


def qr_version(text: str) -> int:
    """Smallest QR version that holds ``text`` in byte mode at level M.

    Raises ``qrcode.exceptions.DataOverflowError`` beyond version 40.
    """
    # best_fit() is the version search make(fit=True) runs, minus the costly mask search.
    version: int = _new_qr(text).best_fit()
    return version


def render_png(text: str, status: str, *, box_size: int = 8) -> bytes:
    """PNG of the QR symbol for ``text``: status-coloured modules on white.

    ``box_size`` is the number of pixels per module. The image is a two-colour palette
    PNG (1 bit per pixel), a couple of kilobytes at version 13.
    """
    colour = _colour(status)
    if box_size < 1:
        raise ValueError(f"box_size must be at least 1, got {box_size}")
    matrix = _matrix(text)
    size = len(matrix)
    # One pixel per module, then a nearest-neighbour upscale: far cheaper than qrcode's
    # PilImage, which draws each module as a rectangle on an RGB canvas that would then
    # need quantising back down to a palette.
    image = Image.frombytes("P", (size, size), bytes(cell for row in matrix for cell in row))
    image.putpalette([*_WHITE, *bytes.fromhex(colour.removeprefix("#"))])
    image = image.resize((size * box_size, size * box_size), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _svg_factory(colour: str) -> type[Any]:
    # qrcode's single-path SVG factory takes its fill from a class attribute that is read
    # while make_image() runs, so each colour needs its own subclass.
    style = {**SvgPathFillImage.QR_PATH_STYLE, "fill": colour}
    return type("StatusSvgPathFillImage", (SvgPathFillImage,), {"QR_PATH_STYLE": style})


_SVG_FACTORIES: Final[Mapping[str, type[Any]]] = MappingProxyType(
    {status: _svg_factory(colour) for status, colour in STATUS_COLOURS.items()}
)


def render_svg(text: str, status: str) -> bytes:
    """UTF-8 SVG of the QR symbol for ``text``: one status-coloured path on a white rect.

    The viewBox is in modules (quiet zone included) and width/height are 1 mm per module,
    so the symbol scales cleanly with CSS.
    """
    _colour(status)
    image = _new_qr(text).make_image(image_factory=_SVG_FACTORIES[status])
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue()
