"""Fusion on human text (issue 13): words, places, callbacks, source closure and redeliveries.

Each test is a small, hand-made situation of the kind the dev set's README lists as a hard
case, with invented names: it checks the general mechanism (a vocabulary, a name, a status
word), not a string of the dev set.
"""

from __future__ import annotations

from helpers.fusion import HOUR, LAT, MIN, T0, Harness, north, report

from streams.fusion import rules
from streams.fusion.config import load_config
from streams.ingest.versioning import RANK_SHIFT

CFG = load_config()


def hl(ref: str, text: str, *, t: int = T0, category: str = "other", address: str | None = None,
       lat: float | None = None, phone: str | None = None, status: str | None = None,
       title: str | None = None, version: int | None = None) -> dict:
    r = report(ref, source="hotline-12345", t=t, category=category, text=text, address=address, lat=lat,
               lng=None if lat is None else 120.0933, title=title, version=version)
    r["reporter_hash"] = phone
    r["status"] = status
    return r


def test_one_cover_in_three_words_joins_across_categories() -> None:
    h = Harness()
    a = hl("h1", "人行道上窨井盖碎了一半", category="manhole", address="红旗路", lat=LAT)
    b = hl("h2", "马路上那个铁盖子翘起来了", category="road_damage", address="红旗路", lat=LAT + north(120))
    c = hl("h3", "下水道的盖子坏了有个洞", category="other", address="红旗路口")
    assert len(set(h.feed(a, b, c))) == 1
    assert {"manhole"} <= rules.features(b, CFG).concepts


def test_same_building_different_problem_stays_apart() -> None:
    h = Harness()
    lift = hl("h1", "电梯卡在7楼困了两个人", title="电梯困人", category="work_safety", address="翠湖花园3幢")
    wires = hl("h2", "在3幢处理电梯的事情时看到楼道电瓶车飞线充电", title="楼道电瓶车飞线充电",
               category="fire", address="翠湖花园3幢", t=T0 + 30 * MIN)
    [c1, c2] = h.feed(lift, wires)
    assert c1 != c2


def test_two_shops_on_one_street_stay_apart() -> None:
    h = Harness()
    a = hl("h1", "小炒店油烟直排熏到居民楼", category="air_pollution", address="青山路小炒店", lat=LAT)
    b = hl("h2", "烤鱼店炭炉油烟很大", category="air_pollution", address="青山路烤鱼店", lat=LAT + north(100),
           t=T0 + 2 * HOUR)
    [c1, c2] = h.feed(a, b)
    assert c1 != c2


def test_callback_of_the_same_caller_joins_wherever_it_was_geocoded() -> None:
    h = Harness()
    first = hl("h1", "包工头欠我们三个月工钱", address="青山镇锦园社区工地", lat=LAT, phone="p1")
    again = hl("h2", "上午反映过工资的事情，还是没给", address="青山工地", lat=LAT + north(1400), phone="p1",
               t=T0 + 5 * HOUR)
    other = hl("h3", "上午反映过工资的事情，还是没给", address="青山工地", lat=LAT + north(1400), phone="p2",
               t=T0 + 5 * HOUR)
    [c1, c2, c3] = h.feed(first, again, other)
    assert c1 == c2 and c3 != c1  # the same phone; a stranger 1.4 km away is not a callback


def test_reviewed_case_takes_no_more_reports_resolved_one_takes_the_callers_follow_up() -> None:
    h = Harness()
    a = hl("h1", "菜场门口早上摆摊占道", category="street_vending", address="青山路菜场", lat=LAT, phone="p1",
           status="待派发", version=(0 << RANK_SHIFT) | T0)
    [c1] = h.feed(a)
    [_] = h.feed({**a, "status": "已办结", "received_at": T0 + 2 * HOUR,
                  "version": (3 << RANK_SHIFT) | (T0 + 2 * HOUR)})
    follow_up = hl("h2", "昨天反映过摆摊，处理完又来了", category="street_vending", address="青山路菜场",
                   lat=LAT, phone="p1", t=T0 + 20 * HOUR)
    stranger = hl("h3", "菜场门口又摆满了摊子", category="street_vending", address="青山路菜场", lat=LAT,
                  phone="p9", t=T0 + 21 * HOUR)
    [c2, c3] = h.feed(follow_up, stranger)
    assert c2 == c1 and c3 != c1
    h.feed({**a, "status": "已回访", "received_at": T0 + 22 * HOUR, "version": (4 << RANK_SHIFT) | (T0 + 22 * HOUR)})
    back = hl("h4", "前天反映过的摆摊又回来了", category="street_vending", address="青山路菜场", lat=LAT,
              phone="p1", t=T0 + 40 * HOUR)
    [c4] = h.feed(back)
    assert c4 != c1  # after the review the first case takes nothing (the stranger's open case may)


def test_identical_redelivery_with_a_later_version_changes_nothing() -> None:
    h = Harness()
    a = hl("h1", "路灯不亮", category="utilities", address="青山路", lat=LAT, version=T0)
    [c1] = h.feed(a)
    again = {**a, "received_at": a["received_at"] + HOUR, "version": a["version"] + HOUR}
    [c2] = h.feed(again)
    first, second = h.results
    assert c2 == c1 and second.outcome == "duplicate"
    assert second.events == first.events and second.linked == first.linked  # same ids, same rows


def test_stale_version_after_a_newer_one_changes_nothing_and_reopen_is_a_new_cycle() -> None:
    h = Harness()
    base = hl("h1", "路灯不亮", category="utilities", address="青山路", lat=LAT, status="待派发",
              version=(0 << RANK_SHIFT) | T0)
    dispatched = {**base, "status": "已派发", "version": (1 << RANK_SHIFT) | (T0 + HOUR)}
    h.feed(base, dispatched)
    stale = {**base, "received_at": T0 + 5 * HOUR, "version": (0 << RANK_SHIFT) | (T0 + 5 * HOUR)}
    [none] = h.feed(stale)
    assert none is None and h.results[-1].outcome == "stale" and h.results[-1].events == []
    done = {**base, "status": "已办结", "version": (3 << RANK_SHIFT) | (T0 + 6 * HOUR)}
    reopened = {**base, "status": "退回重办", "version": (0 << RANK_SHIFT) | (T0 + 7 * HOUR)}
    h.feed(done, reopened)
    assert h.results[-1].outcome == "update"
    assert h.results[-1].linked[0]["version"] > done["version"]  # the new cycle ranks above the old one
