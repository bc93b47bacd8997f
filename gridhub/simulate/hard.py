"""The honest mode of the simulator (``gridhub simulate --realism hard``, issue 13 item 6).

The easy mode agrees with the hub by construction: its four-platforms codes and
12345 paths are ones ``deploy/categories.yaml`` lists.  Real feeds do not, so a
fusion or routing figure measured on the easy mode flatters the hub.  This mode
writes documents the way other deployments and other call-takers do:

* **four-platforms codes from another deployment's catalogue.**  Each county
  platform vendor numbers its own catalogue; the one below (a 2-letter domain
  and a 3-digit item, plus a legacy 4-digit numbering that *collides* with the
  provincial template the hub knows) is written for this module and shares no
  table with the hub.  The category *name* stays meaningful, and varies;
* **12345 paths that vary between call-takers**: 一级/二级/三级 paths of several
  hotline classification schemes for the same problem, some orders with no
  category at all, some filed as 其他/其他;
* **vague addresses**: a landmark or a road only, no ``streetCode``, no
  coordinates, or the township seat's coordinates (the operator's geocoder fell
  back to the township);
* **varied vocabulary**: the same thing in different words (窨井盖 / 下水道盖子 /
  马路上的铁盖子; 摆摊 / 占道 / 流动摊贩).

Nothing here reads the hub's tables: the codes, paths and words are the
simulator's own, so the mode's figures do not depend on it sharing them
(``tests/gridhub/simulate/test_hard_mode.py`` checks that no vendor code or
path is in the hub's tables, and that every legacy code the hub does know means
something else there, as in the real feeds of issue 13).  A separate random stream drives these choices, so the easy mode's
traffic is unchanged.
"""

from __future__ import annotations

import random
from typing import Any

from gridhub.simulate.world import Place

REALISM = ("easy", "hard")

#: Another deployment's four-platforms catalogue: simulator category key -> (code, name) choices.
#: Two numberings coexist in such deployments: the vendor's ("CG012") and a legacy 4-digit one whose
#: codes collide with the provincial template (the hub's table) but mean something else there.
OTHER_CATALOGUE: dict[str, tuple[tuple[str, str], ...]] = {
    "street_vending": (("CG012", "流动摊贩占道"), ("CG013", "出店经营"), ("0601", "占道摆摊")),
    "garbage": (("HW003", "生活垃圾未清运"), ("HW007", "建筑垃圾偷倒"), ("0402", "暴露垃圾")),
    "noise": (("HB021", "夜间施工噪声"), ("HB022", "社会生活噪声"), ("0101", "噪音扰民")),
    "illegal_building": (("GH031", "违章搭建"), ("GH032", "私搭乱建"), ("0201", "违法建设")),
    "road_damage": (("SZ041", "路面坑洼"), ("SZ042", "人行道板破损"), ("0305", "道路破损")),
    "manhole": (("SZ051", "窨井盖缺失"), ("SZ052", "井盖破损下沉"), ("0502", "井盖移位")),
    "street_light": (("SZ061", "路灯故障"), ("SZ062", "路灯不亮"), ("0303", "照明设施损坏")),
    "sewage": (("SZ071", "污水外溢"), ("PS072", "排水管道堵塞"), ("0406", "下水道堵塞")),
    "cooking_fume": (("HB081", "餐饮油烟"), ("HB082", "油烟扰民"), ("0602", "油烟直排")),
    "fire": (("AQ091", "火灾"), ("AQ092", "火情"), ("0305", "火灾事故")),
    "electric_hazard": (("AQ101", "私拉电线"), ("AQ102", "飞线充电"), ("0301", "电动车违规充电")),
    "gas_leak": (("AQ111", "燃气泄漏"), ("AQ112", "液化气泄漏"), ("0603", "燃气安全隐患")),
    "waterlogging": (("FX121", "道路积水"), ("FX122", "城市内涝"), ("0102", "积水")),
    "neighbour_dispute": (("ZZ131", "邻里纠纷"), ("ZZ132", "矛盾纠纷"), ("0404", "邻里矛盾")),
    "food_safety": (("SJ141", "食品安全"), ("SJ142", "过期食品"), ("0302", "食品卫生")),
}

#: 12345 classification paths different call-takers (and different years' schemes) choose for
#: one problem: 一级/二级[/三级].  Written for this module; none is copied from the hub's table.
CALL_TAKER_PATHS: dict[str, tuple[str, ...]] = {
    "street_vending": ("城市管理/市容秩序/占道经营", "城管执法/流动摊贩", "市容环境/乱摆摊点", "城市管理/出店经营"),
    "garbage": ("城市管理/环境卫生/垃圾清运", "环境卫生/生活垃圾", "城管执法/建筑垃圾", "市容环境/暴露垃圾"),
    "noise": ("生态环境/噪声/建筑施工噪声", "环境保护/噪音扰民", "城管执法/夜间施工", "社会生活/噪声"),
    "illegal_building": ("规划建设/违章建筑", "城管执法/违法建设/私搭乱建", "住房建设/违章搭建"),
    "road_damage": ("市政设施/道路/路面破损", "城市管理/道路设施", "交通运输/道路坑洼"),
    "manhole": ("市政设施/窨井盖", "城市管理/井盖缺失", "市政设施/道路/井盖破损"),
    "street_light": ("市政设施/路灯", "城市管理/路灯不亮", "市政设施/照明/路灯故障"),
    "sewage": ("市政设施/排水/管道堵塞", "城市管理/污水外溢", "水务/排水"),
    "cooking_fume": ("生态环境/大气/餐饮油烟", "环境保护/油烟扰民", "城管执法/油烟直排"),
    "fire": ("应急管理/消防/火灾", "消防安全/火情", "安全生产/火灾事故"),
    "electric_hazard": ("应急管理/消防/电动车充电", "消防安全/私拉电线", "安全隐患/用电安全"),
    "gas_leak": ("城市管理/燃气/燃气泄漏", "安全隐患/燃气", "应急管理/液化气泄漏"),
    "waterlogging": ("城市管理/排水/道路积水", "水利水务/内涝", "防汛防台/积水"),
    "neighbour_dispute": ("社会治理/矛盾纠纷/邻里纠纷", "基层治理/邻里矛盾", "社会管理/纠纷调解"),
    "food_safety": ("市场监管/食品/食品安全", "食品药品/过期食品", "市场监管/餐饮卫生"),
}
#: Share of 12345 orders filed with no category at all, and as 其他/其他 (call-takers in a hurry).
NO_CATEGORY_SHARE = 0.08
OTHER_SHARE = 0.07

#: The same thing in other words: category key -> groups of interchangeable terms.  A term of a
#: group found in a text is replaced by another of its group.
VOCABULARY: dict[str, tuple[tuple[str, ...], ...]] = {
    "street_vending": (("摊贩", "摆摊的", "流动摊点", "小商贩"), ("占道经营", "占道", "乱摆摊", "出摊")),
    "garbage": (("垃圾", "垃圾堆", "废弃物"), ("清运", "清理", "拉走")),
    "noise": (("噪声", "噪音", "吵闹声"), ("施工", "打桩", "装修作业")),
    "illegal_building": (("违章建筑", "违建", "私自搭建的房子"), ("棚子", "彩钢棚", "简易棚")),
    "road_damage": (("坑洞", "大坑", "坑洼"), ("路面", "马路", "路上")),
    "manhole": (("井盖", "窨井盖", "下水道盖子", "马路上的铁盖子"),),
    "street_light": (("路灯", "路边的灯", "照明灯"),),
    "sewage": (("下水道", "排水管", "污水管"), ("污水", "脏水", "臭水")),
    "cooking_fume": (("油烟", "烟气", "炒菜的烟"),),
    "fire": (("着火", "起火", "失火"), ("浓烟", "黑烟", "很大的烟")),
    "electric_hazard": (("私拉电线", "飞线", "乱拉电线"), ("电瓶车", "电动车")),
    "gas_leak": (("煤气味", "燃气味", "天然气味", "液化气味"),),
    "waterlogging": (("积水", "淹水", "水漫上来"),),
    "neighbour_dispute": (("纠纷", "矛盾", "吵架"),),
    "food_safety": (("过期食品", "过期的东西", "变质食品"), ("卫生", "干净")),
}


def hard_fp_category(rng: random.Random, key: str) -> tuple[str, str]:
    """(categoryCode, categoryName) of another deployment's catalogue for a simulated category."""
    return rng.choice(OTHER_CATALOGUE[key])


def hard_hotline_path(rng: random.Random, key: str) -> str | None:
    """The path one call-taker files the order under: varies, sometimes 其他/其他, sometimes none."""
    r = rng.random()
    if r < NO_CATEGORY_SHARE:
        return None
    if r < NO_CATEGORY_SHARE + OTHER_SHARE:
        return "其他/其他"
    return rng.choice(CALL_TAKER_PATHS[key])


def vary_vocabulary(rng: random.Random, key: str, text: str) -> str:
    """Replace terms by other words for the same thing (each group at most once per text)."""
    for group in VOCABULARY.get(key, ()):
        for term in group:
            if term in text:
                text = text.replace(term, rng.choice(group), 1)
                break
    return text


def harden_hotline_order(rng: random.Random, doc: dict[str, Any], place: Place) -> None:
    """Vague addresses: landmark / road only, often no streetCode, no or township-seat coordinates."""
    doc["address"] = rng.choice((f"{place.landmark}附近", f"{place.road}", f"{place.road}{place.landmark}那边",
                                 f"{place.estate}门口", doc["address"]))
    if rng.random() < 0.6:
        doc.pop("streetCode", None)
    r = rng.random()
    if r < 0.35:
        doc.pop("lng", None)
        doc.pop("lat", None)
    elif r < 0.55:
        from gridhub.simulate.geo import wgs84_to_gcj02

        # The geocoder only found the township: its seat's coordinates, km away from the spot.
        lng, lat = wgs84_to_gcj02(place.town.lng, place.town.lat)
        doc.update(lng=round(lng, 6), lat=round(lat, 6))


def harden_fp_event(rng: random.Random, doc: dict[str, Any], place: Place) -> None:
    """Grid reports are more precise, but some come from the app without a GPS fix or a full address."""
    if rng.random() < 0.3:
        doc.pop("lng", None)
        doc.pop("lat", None)
    if rng.random() < 0.25:
        doc["address"] = rng.choice((f"{place.road}{place.landmark}旁", f"{place.village.name}{place.estate}"))
