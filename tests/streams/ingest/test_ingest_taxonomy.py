"""deploy/categories.yaml is consistent and maps every source vocabulary."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.ingest.taxonomy import CATEGORIES_FILE, OTHER, Taxonomy, taxonomy


def test_loads_with_20_to_35_codes() -> None:
    tax = taxonomy()
    assert 20 <= len(tax.categories) <= 35 and OTHER in tax.categories
    for code in ("street_vending", "illegal_construction", "garbage", "noise", "water_pollution",
                 "air_pollution", "fire", "gas_leak", "flood", "manhole", "road_damage", "traffic",
                 "food_safety", "public_security", "dispute", "health", "land_use", "agriculture",
                 "culture_market", "consultation"):
        assert code in tax.categories


def test_source_mappings() -> None:
    tax = taxonomy()
    assert tax.four_platforms("0302", None) == "street_vending"
    assert tax.four_platforms("nope", "噪声扰民") == "noise"
    assert tax.four_platforms(None, None) == OTHER
    assert tax.hotline(None, "市容环卫/占道经营") == "street_vending"
    assert tax.hotline(None, "城乡建设/市政设施/路灯不亮") == "road_damage"   # leaf first
    assert tax.hotline(None, " 环境保护 / 未知子类 ") == OTHER
    assert tax.hotline(None, "市场监管/未知子类") == "market_order"           # falls back to the parent
    assert tax.hotline(None, "完全未知") == OTHER
    assert {t: tax.sensor(t) for t in ("smoke", "electric", "gas", "water_level", "manhole", "x")} == {
        "smoke": "fire", "electric": "electrical_fire", "gas": "gas_leak", "water_level": "flood",
        "manhole": "manhole", "x": OTHER}


def test_rejects_inconsistent_tables(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text(CATEGORIES_FILE.read_text(encoding="utf-8") + "    extra: not_a_category\n", encoding="utf-8")
    with pytest.raises(ValueError, match="undefined categories"):
        Taxonomy.load(bad)
    dup = tmp_path / "d.yaml"
    dup.write_text("categories:\n - {code: other, name: 其他, names: [a]}\n - {code: x, name: X, names: [a]}\n",
                   encoding="utf-8")
    with pytest.raises(ValueError, match="maps to"):
        Taxonomy.load(dup)
