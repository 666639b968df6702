import io
import random
import re
import string
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
import qrcode
import qrcode.util
import zxingcpp
from PIL import Image, ImageDraw
from qrcode.constants import ERROR_CORRECT_M

from yuekang.health_codes.qr import (
    ERROR_CORRECTION,
    QUIET_ZONE,
    STATUS_COLOURS,
    qr_version,
    render_png,
    render_svg,
)

STATUSES = ["green", "yellow", "red"]
BASE64URL = string.ascii_letters + string.digits + "-_"
SVG_NS = "{http://www.w3.org/2000/svg}"
WHITE = (255, 255, 255)


def jws_like(length: int, seed: int = 0) -> str:
    """A ``YK1:`` + header.payload.signature lookalike of exactly ``length`` characters."""
    rng = random.Random(seed)
    body = [rng.choice(BASE64URL) for _ in range(length - len("YK1:"))]
    # Rough proportions of an ES256 compact JWS: short header, long payload, then the
    # signature (86 characters at full length).
    body[len(body) // 8] = "."
    body[-(len(body) * 29 // 100)] = "."
    return "YK1:" + "".join(body)


def hex_rgb(colour: str) -> tuple[int, int, int]:
    r, g, b = bytes.fromhex(colour.removeprefix("#"))
    return r, g, b


def expected_version(text: str) -> int:
    # Built independently of the module under test, from the spec: byte mode at level M.
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M)
    qr.add_data(qrcode.util.QRData(text.encode(), mode=qrcode.util.MODE_8BIT_BYTE))
    version: int = qr.best_fit()
    return version


def png_modules(text: str, status: str) -> list[list[bool]]:
    """The PNG at one pixel per module, quiet zone included: True where it is dark."""
    rgb = open_png(render_png(text, status, box_size=1)).convert("RGB")
    dark = hex_rgb(STATUS_COLOURS[status])
    width, height = rgb.size
    return [[rgb.getpixel((x, y)) == dark for x in range(width)] for y in range(height)]


def decode(
    image: Image.Image,
    *,
    binarizer: zxingcpp.Binarizer = zxingcpp.Binarizer.LocalAverage,
    try_invert: bool = True,
) -> list[zxingcpp.Barcode]:
    # Greyscale first, as a camera would see it: the decode then depends on the colours'
    # luminance rather than on palette indices.
    return zxingcpp.read_barcodes(
        image.convert("L"),
        formats=zxingcpp.BarcodeFormat.QRCode,
        binarizer=binarizer,
        try_invert=try_invert,
    )


def open_png(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image


TEXT = jws_like(300)


@pytest.mark.parametrize("status", STATUSES)
def test_png_decodes_to_text_at_level_m_and_predicted_version(status: str) -> None:
    barcodes = decode(open_png(render_png(TEXT, status)))

    assert len(barcodes) == 1
    (barcode,) = barcodes
    assert barcode.format == zxingcpp.BarcodeFormat.QRCode
    assert barcode.text == TEXT
    assert barcode.ec_level == ERROR_CORRECTION == "M"
    extra = barcode.extra
    assert isinstance(extra, dict)
    assert extra["ECLevel"] == "M"
    assert int(extra["Version"]) == qr_version(TEXT) == 13


@pytest.mark.parametrize("status", STATUSES)
def test_png_decodes_with_a_crude_fixed_threshold(status: str) -> None:
    # A fixed mid-grey threshold is the least forgiving binariser: a light yellow (e.g.
    # #c98a00, luma 141) turns entirely white under it and nothing is found.
    image = open_png(render_png(TEXT, status))

    barcodes = decode(image, binarizer=zxingcpp.Binarizer.FixedThreshold, try_invert=False)

    assert [b.text for b in barcodes] == [TEXT]


def relative_luminance(rgb: tuple[int, int, int]) -> float:
    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("status", STATUSES)
def test_status_colour_contrasts_with_white(status: str) -> None:
    contrast = 1.05 / (relative_luminance(hex_rgb(STATUS_COLOURS[status])) + 0.05)

    assert contrast >= 4.5


def test_status_colours_cover_exactly_the_three_statuses() -> None:
    assert set(STATUS_COLOURS) == set(STATUSES)
    assert len(set(STATUS_COLOURS.values())) == 3


@pytest.mark.parametrize("status", STATUSES)
def test_png_is_status_colour_on_white_with_quiet_zone(status: str) -> None:
    box = 8
    png = render_png(TEXT, status, box_size=box)
    image = open_png(png)
    modules = 17 + 4 * qr_version(TEXT) + 2 * QUIET_ZONE
    quiet = QUIET_ZONE * box

    # Small file: a palette image (IHDR colour type 3) at one bit per pixel.
    assert image.mode == "P"
    assert (png[24], png[25]) == (1, 3)
    rgb = image.convert("RGB")
    assert rgb.size == (modules * box, modules * box)
    assert sorted(c for _, c in rgb.getcolors() or []) == sorted(
        [WHITE, hex_rgb(STATUS_COLOURS[status])]
    )

    width, height = rgb.size
    bands = [
        (0, 0, width, quiet),
        (0, height - quiet, width, height),
        (0, 0, quiet, height),
        (width - quiet, 0, width, height),
    ]
    for band in bands:
        assert rgb.crop(band).getcolors() == [(band_area(band), WHITE)], band
    # The quiet zone ends exactly where the finder patterns start, so the white bands
    # measured above really are the border and not the edge of a shifted symbol.
    dark = hex_rgb(STATUS_COLOURS[status])
    for x, y in [(quiet, quiet), (width - quiet - 1, quiet), (quiet, height - quiet - 1)]:
        assert rgb.getpixel((x, y)) == dark


def band_area(band: tuple[int, int, int, int]) -> int:
    left, top, right, bottom = band
    return (right - left) * (bottom - top)


def test_png_box_size_scales_pixels_per_module() -> None:
    small = open_png(render_png(TEXT, "green", box_size=3))
    large = open_png(render_png(TEXT, "green", box_size=10))

    assert large.size[0] * 3 == small.size[0] * 10
    assert [b.text for b in decode(small)] == [TEXT]


def test_png_rejects_a_zero_box_size() -> None:
    with pytest.raises(ValueError, match="box_size"):
        render_png(TEXT, "green", box_size=0)


PATH_TOKEN = re.compile(r"([MmLlHhVvZz])|(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


def path_polygons(d: str) -> list[list[tuple[float, float]]]:
    """Subpaths of an SVG path made of straight lines only; anything else fails the test."""
    leftover = PATH_TOKEN.sub("", d).replace(",", "").strip()
    assert leftover == "", f"unsupported path syntax: {leftover[:40]!r}"
    polygons: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    x = y = 0.0
    command = ""
    numbers: list[float] = []

    def flush() -> None:
        nonlocal x, y
        arity = {"M": 2, "L": 2, "H": 1, "V": 1}[command.upper()]
        assert len(numbers) % arity == 0, (command, numbers)
        for i in range(0, len(numbers), arity):
            args = numbers[i : i + arity]
            relative = command.islower()
            kind = command.upper()
            if kind in "ML":
                x, y = (x + args[0], y + args[1]) if relative else (args[0], args[1])
            elif kind == "H":
                x = x + args[0] if relative else args[0]
            else:
                y = y + args[0] if relative else args[0]
            if kind == "M" and i == 0:
                if current:
                    polygons.append(current.copy())
                current.clear()
            current.append((x, y))
        numbers.clear()

    for match in PATH_TOKEN.finditer(d):
        letter, number = match.groups()
        if number is not None:
            numbers.append(float(number))
            continue
        if command and command not in "Zz":
            flush()
        command = letter
        if letter in "Zz":
            polygons.append(current.copy())
            start = current[0]
            current.clear()
            x, y = start
    if command and command not in "Zz":
        flush()
    if current:
        polygons.append(current)
    return polygons


def parse_svg(svg: bytes) -> tuple[ET.Element, ET.Element, tuple[float, ...]]:
    root = ET.fromstring(svg)  # noqa: S314 - our own output, not untrusted XML
    assert root.tag == f"{SVG_NS}svg"
    view_box = tuple(float(v) for v in (root.get("viewBox") or "").replace(",", " ").split())
    paths = root.findall(f"{SVG_NS}path")
    assert len(paths) == 1
    return root, paths[0], view_box


@pytest.mark.parametrize("status", STATUSES)
def test_svg_is_scalable_status_colour_on_white(status: str) -> None:
    svg = render_svg(TEXT, status)
    root, path, view_box = parse_svg(svg)
    modules = 17 + 4 * expected_version(TEXT) + 2 * QUIET_ZONE

    assert svg.decode("utf-8")
    assert view_box == (0, 0, modules, modules)
    assert (root.get("width"), root.get("height")) == (f"{modules}mm", f"{modules}mm")
    assert path.get("fill") == STATUS_COLOURS[status]
    backgrounds = [
        r for r in root.findall(f"{SVG_NS}rect") if r.get("fill") in {"white", "#fff", "#ffffff"}
    ]
    assert len(backgrounds) == 1
    assert (backgrounds[0].get("width"), backgrounds[0].get("height")) == ("100%", "100%")
    # A physical size rather than pixels, so it prints sensibly and CSS can override it.
    assert not (root.get("width") or "").endswith("px")


@pytest.mark.parametrize("status", STATUSES)
def test_svg_rasterises_to_the_same_symbol(status: str) -> None:
    text = jws_like(300, seed=STATUSES.index(status))
    _, path, view_box = parse_svg(render_svg(text, status))
    # Both formats draw the one symbol the writer made (its mask included); what that symbol
    # holds is checked by decoding it, here and in the PNG tests.
    expected = png_modules(text, status)
    modules = len(expected)
    scale = 8
    # Drawn in the path's own fill colour, the render is judged as a camera would see it.
    image = Image.new("RGB", (round(view_box[2] * scale), round(view_box[3] * scale)), WHITE)
    draw = ImageDraw.Draw(image)
    for polygon in path_polygons(path.get("d") or ""):
        scaled = [((px - view_box[0]) * scale, (py - view_box[1]) * scale) for px, py in polygon]
        draw.polygon(scaled, fill=path.get("fill"))
    # Polygon edges are inclusive in PIL, so sample module centres, not corners.
    module_px = image.size[0] / modules
    dark = hex_rgb(STATUS_COLOURS[status])
    drawn = [
        [
            image.getpixel((int((col + 0.5) * module_px), int((row + 0.5) * module_px))) == dark
            for col in range(modules)
        ]
        for row in range(modules)
    ]

    assert drawn == expected
    assert [b.text for b in decode(image)] == [text]


@pytest.mark.parametrize("render", [render_png, render_svg])
def test_unknown_status_is_rejected(render: Callable[[str, str], bytes]) -> None:
    with pytest.raises(ValueError, match="status"):
        render(TEXT, "blue")


def test_qr_version_grows_with_length_and_our_codes_fit_version_13() -> None:
    assert qr_version(jws_like(100)) < qr_version(jws_like(330))
    assert qr_version(jws_like(320)) <= 13
    versions = [qr_version(jws_like(n)) for n in range(40, 400, 7)]
    assert versions == sorted(versions)


def test_qr_version_depends_on_length_not_content() -> None:
    # Byte mode is forced: a digit-heavy text must not drop to a smaller numeric-mode code.
    digits = "YK1:" + "".join(random.Random(1).choice(string.digits) for _ in range(296))

    assert qr_version(digits) == qr_version(jws_like(300)) == 13
    assert [b.text for b in decode(open_png(render_png(digits, "red")))] == [digits]


def digit_text(length: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.digits) for _ in range(length))


@pytest.mark.parametrize(
    ("length", "version"),
    [(14, 1), (15, 2), (287, 12), (288, 13), (331, 13), (332, 14), (2331, 40)],
)
def test_qr_version_is_the_byte_mode_capacity_at_level_m(length: int, version: int) -> None:
    # ISO/IEC 18004's byte-mode capacities at level M, whatever the characters: a text of
    # digits only would fit a much smaller numeric-mode symbol.
    assert qr_version(jws_like(length)) == qr_version(digit_text(length)) == version
    assert expected_version(jws_like(length)) == version


def test_qr_version_overflows_past_version_40() -> None:
    with pytest.raises(ValueError, match="version 40"):
        qr_version(jws_like(2332))
    with pytest.raises(ValueError, match="version 40"):
        render_png(jws_like(2332), "green")


ALPHANUMERIC = string.ascii_uppercase + string.digits


@pytest.mark.parametrize(
    ("text", "version"),
    [
        (jws_like(288), 13),
        (jws_like(331), 13),
        (jws_like(332), 14),
        ("YK1:" + digit_text(327), 13),
        ("YK1:" + digit_text(328), 14),
        ("YK1:" + "".join(random.Random(2).choice(ALPHANUMERIC) for _ in range(327)), 13),
    ],
    ids=["jws-288", "jws-331", "jws-332", "digits-331", "digits-332", "alphanumeric-331"],
)
def test_rendered_version_depends_on_length_alone(text: str, version: int) -> None:
    # The writer picks its own segment modes, which for digits or upper-case text alone would
    # need a far smaller symbol; it is held to the byte-mode version. 331 characters still
    # fitting version 13 also shows that no ECI header was spent on them.
    (barcode,) = decode(open_png(render_png(text, "green")))
    _, _, view_box = parse_svg(render_svg(text, "green"))

    assert barcode.text == text
    assert barcode.ec_level == "M"
    assert int(barcode.extra["Version"]) == qr_version(text) == version
    assert view_box[2] == 17 + 4 * version + 2 * QUIET_ZONE


def test_a_short_text_stays_at_level_m() -> None:
    # Left to its defaults the writer raises the level while the symbol has room (to Q here).
    (barcode,) = decode(open_png(render_png("YK1:abc", "red")))

    assert (barcode.text, barcode.ec_level, barcode.extra["Version"]) == ("YK1:abc", "M", "1")


def test_non_ascii_text_is_carried_as_utf8_bytes() -> None:
    text = "YK1:澳門-é"
    (barcode,) = decode(open_png(render_png(text, "yellow")))

    assert barcode.bytes == text.encode("utf-8")
    assert barcode.text == text
    assert int(barcode.extra["Version"]) == qr_version(text)


def test_an_option_the_writer_ignores_fails_the_render(monkeypatch: pytest.MonkeyPatch) -> None:
    # zxing-cpp drops options it does not know without a word; a renamed one must not go out
    # as a symbol of another size.
    create = zxingcpp.create_barcode

    def without_version(
        content: object, format: zxingcpp.BarcodeFormat, **options: object
    ) -> zxingcpp.Barcode:
        options.pop("version")
        return create(content, format, **options)

    monkeypatch.setattr(zxingcpp, "create_barcode", without_version)

    with pytest.raises(RuntimeError, match="not version 13"):
        render_png("YK1:" + digit_text(327), "green")


def test_an_empty_text_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        render_png("", "green")
