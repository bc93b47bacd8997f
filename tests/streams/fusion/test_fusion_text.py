"""Address and text normalisation of fusion."""

from __future__ import annotations

from streams.fusion.geo import cell_of, cells_within, haversine_m
from streams.fusion.text import address_key, content, jaccard, places, shingles


def test_address_key_strips_divisions_and_folds_full_width() -> None:
    a = address_key("浙江省湖州市吴兴区月河街道红旗路１２８号")
    assert (a.road, a.full) == ("红旗路", "红旗路128号")
    assert address_key("红旗路128号附近").full == "红旗路128号"
    assert address_key("吴兴区衣裳街3弄12号").full == "衣裳街3弄12号"
    assert address_key("湖州市红旗路").full is None and address_key("湖州市红旗路").road == "红旗路"
    assert address_key(None).road is None


def test_township_names_are_not_roads() -> None:
    assert address_key("城东街道").road is None  # 街道 is a township, not a street


def test_places_are_estates_and_landmarks() -> None:
    assert places("春晖街岩泉加油站附近") == {"岩泉加油站"}
    # estate words are one class: 和园名邸小区 / 和园小区 / 和园社区 are one place
    assert places("和园名邸小区门口") == {"和园小区"}
    assert places("湖州市吴兴区康山街道解放路92号紫金嘉园10幢") == {"紫金小区"}
    assert places("天宁寺小区5幢") == places("天宁寺花园") == {"宁寺小区"}
    assert places("南溪东路那个菜场边上") == set()  # "那个" is no name
    assert places("嘉善县魏塘南门菜场门口", "330421") == {"南门菜场"}
    assert places("楼道里有烟") == set()


def test_content_drops_filler_and_address() -> None:
    text = content("市民来电反映：红旗路128号门口有烧烤摊，油烟很大，请尽快处理。", "红旗路128号")
    assert "红旗路" not in text and "来电" not in text and "烧烤摊" in text
    assert {"烧烤", "油烟"} <= shingles(text)


def test_jaccard() -> None:
    assert jaccard({"a", "b"}, {"b", "c"}) == 1 / 3
    assert jaccard(set(), {"a"}) == 0.0


def test_cells_cover_the_radius() -> None:
    lat, lng = 30.87, 120.09
    for d_north, d_east in ((240, 0), (0, 240), (-240, -10), (170, 170)):
        p_lat, p_lng = lat + d_north / 111_320, lng + d_east / (111_320 * 0.857)
        assert haversine_m(lat1=lat, lng1=lng, lat2=p_lat, lng2=p_lng) < 250
        assert cell_of(p_lat, p_lng, 500) in cells_within(lat, lng, 250, 500)
