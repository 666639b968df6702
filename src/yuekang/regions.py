"""GB/T 2260 administrative division codes: validation, names and the area/city matching the rules
use. Pure; the data comes from the ``GB2260`` package (the cn/GB2260 project's tables).

Feeds are validated against every revision the package carries, not only the latest: a travel
record or risk area may name a code that was current when it was recorded and has since been
merged away. The package's newest revision is 2014; a code created after it is refused as
unknown until the data is updated, which is the safe way round for a risk-area feed.
"""

from __future__ import annotations

import functools
import re

from gb2260.data import data as _revisions

_SIX_DIGITS = re.compile(r"\d{6}")


@functools.cache
def _names() -> dict[str, str]:
    names: dict[str, str] = {}
    # Oldest first, so a later revision's name wins for a code that was renamed. Revisions are
    # keyed by year (2006) or by year and month (200306); a bare year is its December.
    for year in sorted((y for y in _revisions if y is not None), key=_revision_order):
        names.update({f"{code:06d}": name for code, name in _revisions[year].items()})
    names.update({f"{code:06d}": name for code, name in _revisions[None].items()})
    return names


def _revision_order(key: int) -> int:
    return key * 100 + 12 if key < 10000 else key


# Entries that group divisions without being a place: never part of a place's name.
_GROUPINGS = frozenset(
    {"市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划", "省直辖行政单位"}
)
# Beijing, Tianjin, Shanghai, Chongqing: the province is the city.
_MUNICIPALITIES = frozenset({"11", "12", "31", "50"})


def is_known(code: str) -> bool:
    """Whether ``code`` is a six-digit division code of some GB/T 2260 revision."""
    return _SIX_DIGITS.fullmatch(code) is not None and code in _names()


def name(code: str) -> str | None:
    """The division's name with its parents, e.g. ``广东省广州市白云区``."""
    names = _names()
    if code not in names:
        return None
    parts = [names.get(code[:2] + "0000"), names.get(code[:4] + "00"), names[code]]
    unique: list[str] = []
    for part in parts:
        if part is not None and part not in unique and part not in _GROUPINGS:
            unique.append(part)
    return "".join(unique)


def prefix(code: str) -> str:
    """The digits that identify a division's territory: a province ``440000`` covers every code
    starting ``44``, a city ``440100`` every code starting ``4401``."""
    if code.endswith("0000"):
        return code[:2]
    if code.endswith("00"):
        return code[:4]
    return code


def within(place: str, area: str) -> bool:
    """Whether ``place`` lies inside ``area`` (equal, or a county of that city, ...)."""
    return place.startswith(prefix(area))


def city_prefix(area: str) -> str:
    """The digits shared by every place in the city containing ``area``: the province for a
    province-wide area or a municipality (Beijing, ...), the division itself for a county-level
    city the province runs directly (``4290xx``), otherwise the first four digits."""
    territory = prefix(area)
    if len(territory) == 2 or territory[:2] in _MUNICIPALITIES:
        return territory[:2]
    if territory[2:4] == "90":
        return territory
    return territory[:4]


def same_city(place: str, area: str) -> bool:
    """Whether ``place`` is in the city (or, for a province-wide area, the province) that
    contains ``area`` -- the 2021 yellow rule for arrivals "from a city with a risk area"."""
    return place.startswith(city_prefix(area))
