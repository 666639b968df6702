"""GB/T 2260 division codes: which codes the feeds may use, their names, and the area/city
matching the risk-area rules rely on."""

from __future__ import annotations

import pytest

from yuekang import regions


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("440111", id="guangzhou-baiyun"),
        pytest.param("440106", id="guangzhou-tianhe"),
        pytest.param("440100", id="guangzhou-city"),
        pytest.param("440000", id="guangdong-province"),
        pytest.param("110101", id="beijing-dongcheng"),
        pytest.param("820000", id="macao"),
        pytest.param("810000", id="hong-kong"),
        pytest.param("440107", id="fangcun-merged-2005"),
    ],
)
def test_known_codes(code: str) -> None:
    assert regions.is_known(code)
    assert regions.name(code)


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("990000", id="no-such-province"),
        pytest.param("000000", id="zeros"),
        pytest.param("44011", id="five-digits"),
        pytest.param("4401111", id="seven-digits"),
        pytest.param("44011a", id="letter"),
        pytest.param("", id="empty"),
        pytest.param(" 440111", id="leading-space"),
        pytest.param("440111\n", id="trailing-newline"),
        pytest.param("４４０１１１", id="full-width-digits"),
        pytest.param("440199", id="unused-county-code"),
    ],
)
def test_unknown_codes(code: str) -> None:
    assert not regions.is_known(code)
    assert regions.name(code) is None


@pytest.mark.parametrize(
    ("code", "name"),
    [
        pytest.param("440111", "广东省广州市白云区", id="district"),
        pytest.param("440106", "广东省广州市天河区", id="another-district"),
        pytest.param("440100", "广东省广州市", id="city"),
        pytest.param("440000", "广东省", id="province"),
        pytest.param("440305", "广东省深圳市南山区", id="shenzhen-nanshan"),
        pytest.param("441900", "广东省东莞市", id="city-without-districts"),
        pytest.param("110101", "北京市东城区", id="municipality-district-skips-shixiaqu"),
        pytest.param("110100", "北京市", id="municipality-shixiaqu"),
        pytest.param("820000", "澳门特别行政区", id="macao"),
        pytest.param("440107", "广东省广州市芳村区", id="merged-away-code-keeps-its-name"),
    ],
)
def test_name(code: str, name: str) -> None:
    assert regions.name(code) == name


@pytest.mark.parametrize(
    ("code", "name"),
    [
        pytest.param("110228", "北京市密云县", id="beijing-county"),
        pytest.param("500228", "重庆市梁平县", id="chongqing-county"),
        pytest.param("429004", "湖北省仙桃市", id="province-administered-city"),
    ],
)
def test_name_skips_grouping_entries(code: str, name: str) -> None:
    assert regions.name(code) == name


def test_name_uses_the_latest_revision_holding_the_code() -> None:
    # 469031: 昌江黎族自治县 until 2006, 西沙群岛 in 2007-2011, gone since 2012.
    assert (regions.name("469031") or "").endswith("西沙群岛")


@pytest.mark.parametrize(
    ("code", "prefix"),
    [
        pytest.param("440000", "44", id="province"),
        pytest.param("440100", "4401", id="city"),
        pytest.param("440106", "440106", id="district"),
        pytest.param("820000", "82", id="macao"),
        pytest.param("110100", "1101", id="municipality-districts"),
    ],
)
def test_prefix(code: str, prefix: str) -> None:
    assert regions.prefix(code) == prefix


@pytest.mark.parametrize(
    ("place", "area", "within", "same_city"),
    [
        pytest.param("440106", "440106", True, True, id="same-district"),
        pytest.param("440111", "440106", False, True, id="other-district-same-city"),
        pytest.param("440106", "440100", True, True, id="district-in-city"),
        pytest.param("440100", "440100", True, True, id="city-in-itself"),
        pytest.param("440100", "440106", False, True, id="city-in-one-of-its-districts"),
        pytest.param("440305", "440000", True, True, id="district-in-province"),
        pytest.param("440000", "440100", False, False, id="province-in-city"),
        pytest.param("440305", "440106", False, False, id="other-city-same-province"),
        pytest.param("440305", "440100", False, False, id="other-city-area"),
        pytest.param("110101", "440106", False, False, id="other-province"),
        pytest.param("820000", "440000", False, False, id="macao-not-in-guangdong"),
        pytest.param("440402", "820000", False, False, id="zhuhai-not-in-macao"),
        pytest.param("110105", "110101", False, True, id="beijing-districts"),
    ],
)
def test_within_and_same_city(place: str, area: str, within: bool, same_city: bool) -> None:
    assert regions.within(place, area) is within
    assert regions.same_city(place, area) is same_city


@pytest.mark.parametrize(
    ("place", "area", "same"),
    [
        pytest.param("110228", "110101", True, id="beijing-county-and-district"),
        pytest.param("429005", "429004", False, id="two-province-run-cities"),
        pytest.param("429004", "429004", True, id="province-run-city-itself"),
        pytest.param("440111", "440106", True, id="two-districts-of-guangzhou"),
        pytest.param("440306", "440106", False, id="shenzhen-is-not-guangzhou"),
    ],
)
def test_same_city_follows_the_real_city(place: str, area: str, same: bool) -> None:
    assert regions.same_city(place, area) is same
