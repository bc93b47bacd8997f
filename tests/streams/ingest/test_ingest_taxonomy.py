"""deploy/categories.yaml: validated (file:line errors), consistent, and maps every source vocabulary."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridhub.core.yamlconf import ConfigError
from streams.ingest.taxonomy import CATEGORIES_FILE, OTHER, Taxonomy, taxonomy


def test_loads_every_category_the_feeds_carry() -> None:
    tax = taxonomy()
    assert OTHER in tax.categories and "consultation" in tax.categories
    for code in ("street_vending", "illegal_construction", "garbage", "construction_waste", "noise", "social_noise",
                 "water_pollution", "air_pollution", "cooking_fume", "fire", "fire_hazard", "gas_leak", "flood",
                 "waterlogging", "manhole", "road_damage", "highway_damage", "traffic", "special_equipment",
                 "work_safety", "utilities", "housing", "food_safety", "market_order", "public_security", "dispute",
                 "wage_arrears", "health", "land_use", "agriculture", "culture_market", "consultation"):
        assert code in tax.categories, code
    for cat in tax.categories.values():
        if cat.code not in (OTHER, "consultation"):
            assert cat.keywords, f"{cat.code} has no vocabulary for the text classifier"


def test_source_mappings() -> None:
    tax = taxonomy()
    assert tax.four_platforms("0302", None) == "street_vending"
    assert tax.four_platforms("nope", "噪声扰民") == "noise"          # shared name: first listed
    assert tax.four_platforms(None, None) == OTHER
    assert tax.hotline(None, "市容环卫/占道经营") == "street_vending"
    assert tax.hotline(None, "城乡建设/市政设施/路灯不亮") == "road_damage"   # leaf first
    assert tax.hotline(None, " 环境保护 / 未知子类 ") == OTHER
    assert tax.hotline(None, "市场监管/未知子类") == "market_order"           # falls back to the parent
    assert tax.hotline(None, "完全未知") == OTHER
    assert {t: tax.sensor(t) for t in ("smoke", "electric", "gas", "water_level", "manhole", "x")} == {
        "smoke": "fire", "electric": "electrical_fire", "gas": "gas_leak", "water_level": "flood",
        "manhole": "manhole", "x": OTHER}


@pytest.mark.parametrize("path,category", [
    # issue 13: paths the old table sent to `other` (the county centre)
    ("劳动保障/拖欠工资", "wage_arrears"),
    ("自然资源/违法用地", "land_use"),
    ("公安交警/交通信号", "traffic"),
    ("交通运输/公路养护", "highway_damage"),
    # full 一级/二级/三级 paths: the most specific segment that names something
    ("城乡建设/市政设施/窨井盖", "manhole"),
    ("城市管理/渣土管理/偷倒乱倒", "construction_waste"),
    ("市场监管/特种设备/电梯故障", "special_equipment"),
    ("人力社保/劳动关系/拖欠工资", "wage_arrears"),
    ("城乡建设/排水管理/道路积水", "waterlogging"),
    ("水利水务/防汛抗旱/河道水位", "flood"),
    ("生态环境/大气污染/餐饮油烟", "cooking_fume"),
    ("生态环境/噪声污染/社会生活噪声", "social_noise"),
    ("卫生健康/医疗管理/非法行医", "health"),
    ("农业农村/畜牧兽医/动物防疫", "agriculture"),
    ("文化旅游/文化市场/网吧管理", "culture_market"),
    ("城乡建设/物业管理/物业服务", "housing"),
    ("城乡建设/供水管理/停水", "utilities"),
    # paths in the style of other hotlines: a department name alone decides nothing
    ("交通运输/出租车/拒载", OTHER),
    ("劳动就业/工资/拖欠农民工工资", "wage_arrears"),
    ("城市管理/市政设施/下水道堵塞", "utilities"),
    ("城乡建设/市政设施/下水道井盖", "manhole"),
    ("国土/土地/非法占用耕地", "land_use"),
    ("卫生/医疗/无证行医", "health"),
    ("公共安全/消防/消防通道堵塞", "fire_hazard"),
    ("住房保障/物业管理/电梯维修", "special_equipment"),
    ("城管/渣土/运输撒漏", "construction_waste"),
    ("政策咨询/社保咨询", "consultation"),   # equal names inside a segment: the last is the head
])
def test_hotline_paths_and_segments(path: str, category: str) -> None:
    assert taxonomy().hotline(None, path) == category


def test_four_platforms_name_wins_over_code_and_code_tables_are_per_deployment() -> None:
    tax = taxonomy()
    # Another deployment's catalogue: 0302 means 火情 there, not 占道经营 as in the template.
    src = tax.four_platforms_source("0302", "火情", "330402")
    assert src.candidates == ("fire",) and src.conflict == "code_vs_name"
    src = tax.four_platforms_source("7777", "违法用地", "330402")
    assert src.candidates == ("land_use",) and src.conflict == "unknown_code"
    assert tax.four_platforms_source("0302", None, "330402").candidates == ("street_vending",)  # code only: table
    assert tax.four_platforms_source("0302", None, "110101").via == "none"  # no table for Beijing
    assert tax.four_platforms_source(None, "废气异味", "330402").candidates == ("air_pollution",)  # name inside


def test_a_deployment_table_is_chosen_by_the_longest_area_prefix(tmp_path: Path) -> None:
    text = CATEGORIES_FILE.read_text(encoding="utf-8").replace(
        "four_platforms:\n  tables:\n",
        "four_platforms:\n  tables:\n    - id: jiaxing\n      areas: ['3304']\n"
        "      codes: {'0302': fire, '0415': street_vending}\n", 1)
    tax = Taxonomy.load(tmp_path / "c.yaml", text)
    assert tax.four_platforms_source("0302", None, "330402").candidates == ("fire",)
    assert tax.four_platforms_source("0302", None, "330502").candidates == ("street_vending",)
    assert tax.four_platforms_source("0415", None, "330502").via == "none"


@pytest.mark.parametrize("edit,line_text,message", [
    (("    extra: not_a_category\n", None), "extra: not_a_category", "undefined category 'not_a_category'"),
    (("  - code: Bad Code\n    name: x\n", "categories:\n"), "code: Bad Code", "categories.0.code"),
    (("      loud: [b]\n", "    keywords:\n"), "loud: [b]", "loud"),
    (("  prior: -1\n", "classifier:\n"), "prior: -1", "greater than or equal to 0"),
])
def test_errors_name_file_and_line(tmp_path: Path, edit: tuple[str, str | None], line_text: str,
                                   message: str) -> None:
    text = CATEGORIES_FILE.read_text(encoding="utf-8")
    add, after = edit
    if after is None:
        text += add
    else:
        text = text.replace(after, after + add, 1)
        if add.startswith("  prior"):
            text = text.replace("  prior: 4\n", "", 1)
    path = tmp_path / "c.yaml"
    with pytest.raises(ConfigError, match=message) as info:
        Taxonomy.load(path, text)
    expected = next(n for n, line in enumerate(text.splitlines(), 1) if line_text in line)
    assert info.value.line == expected, (str(info.value), expected)
    assert str(info.value).startswith(f"{path}:{expected}: ")


def test_shared_names_are_ambiguous_not_errors(tmp_path: Path) -> None:
    tax = Taxonomy.load(tmp_path / "d.yaml", "version: 2\ncategories:\n - {code: other, name: 其他}\n"
                        " - {code: consultation, name: 咨询}\n - {code: x, name: X, names: [a]}\n"
                        " - {code: y, name: Y, names: [a]}\n")
    assert tax.by_name["a"] == ("x", "y")
    with pytest.raises(ConfigError, match="defined twice"):
        Taxonomy.load(tmp_path / "e.yaml", "version: 2\ncategories:\n - {code: other, name: 其他}\n"
                      " - {code: consultation, name: 咨询}\n - {code: other, name: again}\n")
    with pytest.raises(ConfigError, match="must define 'consultation'"):
        Taxonomy.load(tmp_path / "f.yaml", "version: 2\ncategories:\n - {code: other, name: 其他}\n")
