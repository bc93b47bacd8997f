"""The category classifier: source candidates weighed against the free text (pure, no Kafka).

The sentences are written for these tests in the ways different people describe one kind of
problem; none is copied from the dev set.
"""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from streams.ingest import classify
from streams.ingest.classify import Classifier
from streams.ingest.taxonomy import SourceCategory, taxonomy


def conflicts(source: str, kind: str) -> float:
    return REGISTRY.get_sample_value("gridhub_category_conflicts_total", {"source": source, "kind": kind}) or 0.0


@pytest.mark.parametrize("text,category", [
    # one kind of problem, many ways to say it
    ("小区门口马路上的窨井盖不见了，晚上很危险", "manhole"),
    ("路边下水道的盖子被人拿走了，留下一个大洞", "manhole"),
    ("人行道上有块铁盖子翘起来，踩上去哐哐响", "manhole"),
    ("雨水篦子碎了，电瓶车轮子卡进去摔了一跤", "manhole"),
    ("学校门口每天放学都有人摆摊卖烤肠", "street_vending"),
    ("三轮车流动摊贩把人行道全占了", "street_vending"),
    ("包工头拖欠我们十几个工人三个月工资，明天要去讨薪", "wage_arrears"),
    ("老板跑了工钱一直不给，工人都聚集在厂门口", "wage_arrears"),
    ("电梯突然停在两层楼中间，困人了，里面有老人", "special_equipment"),
    ("路口地下冒水，像是爆管了，整个小区停水", "utilities"),
    ("自来水管破了，水一直往外冒", "utilities"),
    ("楼下饭店排烟管对着我家窗户，油烟熏得没法开窗", "cooking_fume"),
    ("化工厂晚上偷偷排废气，刺鼻的味道", "air_pollution"),
    ("楼上天天打麻将到凌晨，吵得睡不着", "social_noise"),
    ("工地半夜还在打桩，轰隆隆的", "noise"),
    ("下穿通道积水很深，车子熄火了", "waterlogging"),
    ("河道水位涨得很快，快漫过堤岸了", "flood"),
    ("红绿灯坏了，路口一直黄闪", "traffic"),
    ("320国道有个大坑，货车开过去很颠", "highway_damage"),
    ("小区里面的路坑坑洼洼，路面破损严重", "road_damage"),
    ("厨房里一股煤气味，可能漏气了", "gas_leak"),
    ("仓库着火了，浓烟很大", "fire"),
    ("楼道里电瓶车飞线充电，把安全出口都堵住了", "fire_hazard"),
    ("村里有人在没有资质的黑诊所给人挂水", "health"),
    ("有人在基本农田上填土硬化搞停车场", "land_use"),
    ("沟渠里扔了好几只病死鸡", "agriculture"),
    ("网吧让未成年人通宵上网", "culture_market"),
    ("半夜有卡车来偷倒装修垃圾和渣土", "construction_waste"),
    ("河里死鱼一大片，水面一层白沫", "water_pollution"),
    ("电线杆上贴满了小广告，墙上也被乱涂乱画", "outdoor_ads"),
    ("台风把路边的大树刮倒了，树枝挡住了人行道", "greenery"),
    ("山上下雨后有滑坡，石头滚到路上", "geological_hazard"),
    ("小区里有人撬电瓶车的锁，晚上老是丢东西", "public_security"),
    ("两家人为了宅基地的界线吵架，差点动手，请村里调解", "dispute"),
    ("这家店短斤缺两，称有问题，还不给退款", "market_order"),
    ("物业公司不管事，小区门禁坏了半年没人修", "housing"),
    ("车间里工人没有戴安全帽就在高处作业，存在安全隐患", "work_safety"),
    ("配电箱里的线缆发烫，闻到一股焦味，怕短路", "electrical_fire"),
    ("老人想问低保怎么申请", "public_service"),
    ("路口有辆小车乱停，堵住了公交车道", "traffic"),
    ("饭店的菜里吃出了苍蝇，吃完肚子疼拉肚子", "food_safety"),
    ("村里的养猪场死了好几头猪，扔在河边", "agriculture"),
    ("液化气钢瓶放在楼道里，闻到一股臭鸡蛋味", "gas_leak"),
])
def test_text_fills_a_missing_category(text: str, category: str) -> None:
    d = classify.classifier().decide(SourceCategory((), "none"), text)
    assert d.category == category, (d.top, text)
    assert d.via == "text" and d.conflicts == ("text_filled",)


def test_nothing_to_go_on_is_other() -> None:
    d = classify.classifier().decide(SourceCategory((), "none"), "请尽快处理，谢谢")
    assert d.category == "other" and d.via == "none"


def test_source_wins_unless_the_text_clearly_says_otherwise() -> None:
    clf = classify.classifier()
    # one stray word of another category does not override the source
    d = clf.decide(SourceCategory(("street_vending",), "name"), "菜场门口摆摊，地上都是垃圾")
    assert d.category == "street_vending" and d.via == "source"
    # a signal failure filed under street lights
    d = clf.decide(SourceCategory(("road_damage",), "segment"), "十字路口红绿灯不亮了，一直黄闪，车子乱开")
    assert d.category == "traffic" and d.conflicts == ("text_overrode",)
    # a shared name (噪声扰民): the text chooses between its categories; none said: the first
    noise = ("noise", "social_noise")
    assert clf.decide(SourceCategory(noise, "name"), "楼上邻居深夜唱歌，音响开得很大").category == "social_noise"
    assert clf.decide(SourceCategory(noise, "name"), "夜间施工，混凝土泵车一直响").category == "noise"
    assert clf.decide(SourceCategory(noise, "name"), "很吵").category == "noise"


def test_consultations_are_never_reclassified() -> None:
    d = classify.classifier().decide(SourceCategory(("consultation",), "segment"), "昨晚楼道着火了，烟感是谁维护的？")
    assert d.category == "consultation"


def test_sensor_text_only_chooses_among_the_device_candidates() -> None:
    d = classify.resolve("sensors", device_type="water_level", text="梧桐街道环城路铁路下穿通道最低点")
    assert d.category == "waterlogging"
    d = classify.resolve("sensors", device_type="water_level", text="某某河闸口上游水位站")
    assert d.category == "flood"
    d = classify.resolve("sensors", device_type="smoke", text="一楼仓库，经营户说有人偷倒垃圾")
    assert d.category == "fire"  # the text may never move a sensor out of its device type


def test_jieba_matches_on_word_boundaries_chars_on_substrings() -> None:
    words = Classifier(taxonomy(), "jieba").words
    chars = Classifier(taxonomy(), "chars").words
    text = "景区停车场旁边有人在卖东西"
    assert "停车" in chars(text) and "停车" not in words(text)  # 停车场 is a place, not parking
    text = "路口的雨水篦子堵了"
    assert "雨水" in chars(text) and "雨水" not in words(text) and "雨水篦子" in words(text)


def test_conflicts_are_counted() -> None:
    before = {(s, k): conflicts(s, k) for s, k in (("four-platforms", "code_vs_name"), ("four-platforms", "text_overrode"),
                                              ("hotline-12345", "text_filled"), ("four-platforms", "unknown_code"))}
    # the template's 0302 is 占道经营; another deployment sends 0302 for 火情: the name wins
    d = classify.resolve("four-platforms", code="0302", name="火情", county="330402", text="三楼阳台起火冒烟")
    assert d.category == "fire"
    d = classify.resolve("four-platforms", code="9876", name="道路破损", county="330402",
                         text="检查井的井盖破碎下陷，车子压上去哐当响")
    assert d.category == "manhole"
    d = classify.resolve("hotline-12345", name="其他/其他", text="下水道的盖子没了，一个大洞")
    assert d.category == "manhole"
    assert conflicts("four-platforms", "code_vs_name") == before[("four-platforms", "code_vs_name")] + 1
    assert conflicts("four-platforms", "unknown_code") == before[("four-platforms", "unknown_code")] + 1
    assert conflicts("four-platforms", "text_overrode") == before[("four-platforms", "text_overrode")] + 1
    assert conflicts("hotline-12345", "text_filled") == before[("hotline-12345", "text_filled")] + 1


def test_skipping_segmentation_never_changes_a_decision() -> None:
    """The shortcut in decide() (no other category reaches the prior on substrings: the source stands)
    is exact: against a classifier that always segments, over the dev set's human texts and every
    single-candidate source category."""
    import json
    from pathlib import Path

    texts = []
    for line in (Path(__file__).resolve().parents[2] / "data" / "devset" / "records.jsonl").open(encoding="utf-8"):
        doc = json.loads(line)["doc"]
        body = doc.get("description") or doc.get("content")
        if body:
            texts.append(f"{doc.get('title') or ''}\n{body}")
    fast = Classifier(taxonomy(), "jieba")
    always = Classifier(taxonomy(), "jieba")
    everything = set(always._index)
    always._substrings = lambda text: everything  # type: ignore[method-assign]  # rough scores: never skip
    codes = [c for c in taxonomy().categories if c not in ("other", "consultation")]
    checked = 0
    for n, text in enumerate(texts):
        for code in codes[n % 5::5]:  # a fifth of the categories per text, every category across texts
            src = SourceCategory((code,), "name")
            assert fast.decide(src, text).category == always.decide(src, text).category, (code, text)
            checked += 1
    assert len(texts) > 350 and checked > 2000


def test_tokenizer_override() -> None:
    try:
        classify.use_tokenizer("off")
        assert classify.classifier().tokenizer == "off"
        assert classify.resolve("hotline-12345", name="其他/其他", text="下水道的盖子没了").category == "other"
        with pytest.raises(ValueError, match="unknown tokenizer"):
            classify.use_tokenizer("spaces")
    finally:
        classify.use_tokenizer(None)
    assert classify.classifier().tokenizer == taxonomy().tokenizer
