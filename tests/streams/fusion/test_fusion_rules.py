"""Each fusion rule as a pure function (streams/fusion/rules.py), hard negatives included."""

from __future__ import annotations

from helpers.fusion import HOUR, LAT, LNG, MIN, T0, alarm, north, report

from streams.fusion import rules
from streams.fusion.config import load_config
from streams.fusion.engine import FusionEngine

CFG = load_config()


def feat(r: dict, *_: object) -> rules.Features:
    """The features of ``r`` under the committed config (its concept vocabulary included)."""
    return rules.features(r, CFG)


def case_of(r: dict) -> dict:
    """The state of a case opened by ``r``."""
    return FusionEngine(CFG)._new_case(r, feat(r))


def test_rule1_same_record_is_ordered_by_version() -> None:
    entry = {"case": "C1", "v": 10}
    assert rules.same_record(None, 10) == "new"
    assert rules.same_record(entry, 9) == "stale"
    assert rules.same_record(entry, 10) == "duplicate"
    assert rules.same_record(entry, 11) == "update"


def test_event_time_prefers_occurred_at_but_not_from_the_future() -> None:
    r = report("a", t=T0)
    assert rules.event_time({**r, "occurred_at": T0 - 5 * MIN}) == T0 - 5 * MIN
    assert rules.event_time({**r, "occurred_at": T0 + 5 * MIN}) == T0  # a source clock error
    assert rules.event_time(r) == T0


def test_rule2_device_joins_its_open_case_until_recovered_for_long() -> None:
    first = alarm("D1", T0)
    case = case_of(first)
    assert rules.device_joins(CFG, case, feat(alarm("D1", T0 + 2 * MIN)))
    case["recovered"] = {"D1": T0 + 10 * MIN}
    assert rules.device_joins(CFG, case, feat(alarm("D1", T0 + 20 * MIN)))  # flapping: same
    assert not rules.device_joins(CFG, case, feat(alarm("D1", T0 + 3 * HOUR)))  # a new fire
    assert not rules.device_joins(CFG, case, feat(alarm("D1", T0 + 30 * HOUR)))
    case["status"] = "closed"
    assert not rules.device_joins(CFG, case, feat(alarm("D1", T0 + 2 * MIN)))


def test_rule2_recover_only_targets_an_open_case() -> None:
    f = feat(alarm("D1", T0 + 5 * MIN, kind="recover"))
    assert not rules.recover_target(None, f, CFG)
    case = case_of(alarm("D1", T0))
    assert rules.recover_target(case, f, CFG)
    case["status"] = "resolved"
    assert not rules.recover_target(case, f, CFG)


def test_rule2_storm_of_neighbouring_detectors_is_one_case_far_or_late_ones_are_not() -> None:
    case = case_of(alarm("D1", T0))
    assert rules.score(CFG, case, feat(alarm("D2", T0 + MIN, lat=LAT + north(30)))) is not None
    assert rules.score(CFG, case, feat(alarm("D3", T0 + MIN, lat=LAT + north(400),
                                                       address="红旗路300号"))) is None
    assert rules.score(CFG, case, feat(alarm("D4", T0 + 3 * HOUR))) is None


def test_rule3_categories_compatibility_table() -> None:
    assert CFG.compatibility("fire", "fire") == 1.0
    assert 0 < CFG.compatibility("fire", "gas_leak") < 1.0
    assert 0 < CFG.compatibility("other", "noise") < 1.0
    assert CFG.compatibility("other", "other") < 1.0  # unclassified twice is still no evidence
    assert CFG.compatibility("noise", "garbage") == 0.0


def test_rule3_effective_limits_take_the_stricter_known_category() -> None:
    window, radius = rules.effective_limits(CFG, "fire", "other")
    assert (window, radius) == (CFG.rule("fire").window_ms, CFG.rule("fire").radius_m)
    assert rules.effective_limits(CFG, "other", "other")[1] == CFG.rule("other").radius_m


def test_rule3_human_duplicate_nearby_with_similar_text_joins() -> None:
    case = case_of(report("fp1", text="红旗路88号门口有流动摊贩占道经营卖水果，人行道堵塞", address="红旗路88号"))
    hot = report("h1", source="hotline-12345", t=T0 + 20 * MIN, text="市民来电反映红旗路有人摆摊卖水果，占道经营",
                 lat=LAT + north(60), address="红旗路88号附近")
    s = rules.score(CFG, case, feat(hot))
    assert s is not None and s.value >= CFG.threshold


def test_rule3_hard_negative_same_category_two_house_numbers_on_one_road() -> None:
    case = case_of(report("fp1", text="红旗路88号门口有流动摊贩卖水果", address="红旗路88号"))
    other = report("fp2", t=T0 + 10 * MIN, text="红旗路160号烧烤摊占道经营，油烟很大", address="红旗路160号",
                   lat=LAT + north(120))
    assert rules.score(CFG, case, feat(other)) is None


def test_rule3_hard_negative_same_category_far_apart() -> None:
    case = case_of(report("fp1"))
    far = report("fp2", t=T0 + 5 * MIN, lat=LAT + north(600))
    assert rules.score(CFG, case, feat(far)) is None


def test_rule3_hard_negative_one_address_two_problems() -> None:
    case = case_of(report("fp1", category="noise", text="红旗路88号KTV夜间噪音扰民", address="红旗路88号"))
    garbage = report("fp2", category="garbage", t=T0 + 5 * MIN, text="红旗路88号门口垃圾堆积未清运",
                     address="红旗路88号")
    assert rules.score(CFG, case, feat(garbage)) is None


def test_rule3_other_category_needs_similar_content() -> None:
    case = case_of(report("fp1", category="other", text="红旗路88号路灯不亮，晚上一片漆黑", address="红旗路88号"))
    same = report("h1", source="hotline-12345", category="other", t=T0 + 10 * MIN,
                  text="红旗路88号附近路灯坏了不亮", address="红旗路88号附近")
    different = report("h2", source="hotline-12345", category="other", t=T0 + 10 * MIN,
                       text="邻居家装修太吵", lat=LAT + north(30), address="红旗路一带")
    assert rules.score(CFG, case, feat(same)) is not None
    assert rules.score(CFG, case, feat(different)) is None


def test_rule3_time_window_per_category() -> None:
    case = case_of(report("fp1", category="fire", text="红旗路88号着火冒烟"))
    late = report("fp2", category="fire", t=T0 + 7 * HOUR, text="红旗路88号着火冒烟")
    assert rules.score(CFG, case, feat(late)) is None  # fire window: 6 h
    vending = case_of(report("fp3"))
    next_day = report("fp4", t=T0 + 24 * HOUR)
    assert rules.score(CFG, vending, feat(next_day)) is not None  # vending window: 72 h


def test_rule3_out_of_order_report_matches_by_event_time() -> None:
    case = case_of(report("fp1", t=T0 + 30 * MIN))
    earlier = report("h1", source="hotline-12345", t=T0, text="红旗路有人摆摊卖水果占道")
    assert rules.time_gap(case, earlier["reported_at"]) == 30 * MIN
    assert rules.score(CFG, case, feat(earlier)) is not None


def test_rule3_without_coordinates_address_or_place_or_township() -> None:
    case = case_of(report("fp1", text="翠苑小区3幢楼道堆放杂物", address="红旗路88号翠苑小区", category="fire"))
    by_address = report("h1", source="hotline-12345", category="fire", lat=None, lng=None,
                        text="红旗路88号楼道里堆满杂物有火灾隐患", address="湖州市吴兴区红旗路８８号")
    by_place = report("h2", source="hotline-12345", category="fire", lat=None, lng=None,
                      text="翠苑小区楼道杂物堆放", address="翠苑小区门口")
    township_only = report("h3", source="hotline-12345", category="fire", lat=None, lng=None,
                           text="有情况请处理", address=None)
    assert rules.spatial_score(CFG, case, feat(by_address, CFG), 300) == CFG.same_address
    assert rules.spatial_score(CFG, case, feat(by_place, CFG), 300) == CFG.same_place
    assert rules.spatial_score(CFG, case, feat(township_only, CFG), 300) == CFG.same_township
    s = rules.score(CFG, case, feat(township_only, CFG))
    assert s is None or s.value < CFG.threshold  # the township and a category alone are too weak
    # a vague report that says what the problem is (the same concept) joins on the township
    vague = {**township_only, "text": "楼道里堆满杂物"}
    s = rules.score(CFG, case_of(report("fp9", text="翠苑小区3幢楼道堆放杂物", category="fire")),
                    feat(vague, CFG))
    assert s is not None and s.value >= CFG.threshold


def test_rule3_closed_case_is_no_candidate() -> None:
    case = case_of(report("fp1"))
    case["status"] = "resolved"
    assert rules.score(CFG, case, feat(report("fp2", t=T0 + MIN))) is None


def test_consultation_answered_directly_never_fuses() -> None:
    case = case_of(report("h1", source="hotline-12345", category="consultation", text="咨询学区划分",
                          dispatchable=False, lat=None, lng=None))
    again = report("h2", source="hotline-12345", category="consultation", text="咨询学区划分",
                   dispatchable=False, lat=None, lng=None)
    assert rules.score(CFG, case, feat(again)) is None


def test_best_candidate_is_deterministic_on_ties() -> None:
    a, b = case_of(report("fp1", t=T0)), case_of(report("fp2", t=T0 + MIN))
    f = feat(report("fp3", t=T0 + 2 * MIN))
    first = rules.best_candidate(CFG, [a, b], f)
    second = rules.best_candidate(CFG, [b, a], f)
    assert first is not None and second is not None and first[0]["case_id"] == second[0]["case_id"]


def test_lng_lat_zero_is_no_fix() -> None:
    f = feat(report("x", lat=0.0, lng=0.0))
    assert not f.has_coords and LNG != 0
