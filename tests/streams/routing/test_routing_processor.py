"""streams/routing/processor.py without Kafka: bounded state, the deadline index, event time for replays."""

from __future__ import annotations

from typing import Any

import pytest

from gridhub.core.clock import HubClock
from gridhub.core.settings import Settings
from streams.routing import lifecycle as lc
from streams.routing.processor import DeadlineIndex, DictKV, Outcome, Processor, decode, encode
from streams.routing.rules import RuleSet, load_rules
from helpers.routing import T0, MIN, HOUR, DAY, write_rules


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return load_rules(write_rules(tmp_path_factory.mktemp("rules"), """
        escalation: {grace: 1d}
        review: {auto_close: 1d}
        retention: {closed: 7d}
        rules:
          - id: garbage
            match: {category: [garbage]}
            lead: zhzf
            sign: 2h
            resolve: 2d
    """))


def case(case_id: str, at: int, version: int = 1) -> dict[str, Any]:
    return {"case_id": case_id, "county_code": "330502", "street_code": "330502001", "category": "garbage",
            "title": "t", "address": "a", "lng": 120.1, "lat": 30.8, "severity": 1, "sources": ["four-platforms"],
            "report_ids": ["r1"], "report_count": 1, "first_seen": at, "last_seen": at, "status": "reported",
            "dispatchable": True, "device_ids": [], "version": version, "updated_at": at}


def feedback(outcome: Outcome, action: str, at: int) -> dict[str, Any]:
    d = outcome.effects.dispatches[0]
    return {"dispatchId": d["dispatchId"], "caseId": d["caseId"], "agency": d["agency"], "action": action,
            "time": at, "note": "ok", "deadline": None}


class Scanner:
    """What DeadlineClock does, without Kafka: pop the due entries, tick each of them."""

    def __init__(self, processor: Processor, kv: DictKV, index: DeadlineIndex) -> None:
        self.processor, self.kv, self.index = processor, kv, index
        self.offset = 0
        self.outcomes: list[Outcome] = []

    def scan(self, now: int) -> int:
        due = self.index.pop_due(now)
        for key, _due, partition in due:
            self.offset += 1
            self.outcomes.append(self.processor.tick(self.kv, ("routing-timers", partition, self.offset), key, now))
        return len(due)

    def events(self, name: str) -> set[str]:
        return {e["event_id"] for o in self.outcomes for e in o.effects.events if e["event"] == name}


def test_a_closed_case_expires_after_retention_and_an_open_one_stays(rules: RuleSet) -> None:
    kv, index = DictKV(), DeadlineIndex()
    p = Processor(lambda: rules, index=index)
    scanner = Scanner(p, kv, index)
    closed = p.case(kv, ("cases", 0, 1), case("c-closed", T0))
    still_open = p.case(kv, ("cases", 0, 2), case("c-open", T0))
    p.feedback(kv, ("feedback", 0, 20), feedback(still_open, "sign", T0 + MIN))
    for i, action in enumerate(("sign", "resolve")):
        p.feedback(kv, ("feedback", 0, 10 + i), feedback(closed, action, T0 + (i + 1) * MIN))
    scanner.scan(T0 + 2 * MIN + DAY)  # no 回访 within a day: closed
    state = decode(kv.data[b"c-closed"])
    assert state["status"] == "closed" and state["expires"] == state["closed_at"] + 7 * DAY
    scanner.scan(state["closed_at"] + 7 * DAY - 1)
    assert b"c-closed" in kv.data
    scanner.scan(state["closed_at"] + 7 * DAY)
    assert b"c-closed" not in kv.data and b"c-open" in kv.data  # deleted: a tombstone in the changelog
    assert b"c-closed" not in index.current and b"c-open" in index.current


def test_a_scan_reads_only_the_due_entries(rules: RuleSet) -> None:
    kv, index = DictKV(), DeadlineIndex()
    p = Processor(lambda: rules, index=index)
    for i in range(1000):  # 1,000 cases dispatched an hour apart: sign deadlines 2 h after each
        p.case(kv, ("cases", i % 4, i), case(f"c-{i:04}", T0 + i * HOUR))
    scanner = Scanner(p, kv, index)
    kv.reads = index.examined = 0
    assert scanner.scan(T0 + 2 * HOUR + 5 * HOUR) == 6  # c-0000 .. c-0005 are due
    assert index.examined == 6 and kv.reads == 6  # not 1,000
    assert len(scanner.events("overdue")) == 6
    kv.reads = index.examined = 0
    assert scanner.scan(T0 + 2 * HOUR + 5 * HOUR) == 0 and kv.reads == 0  # ticked: not again at the next scan


def test_deadlines_survive_a_restart(rules: RuleSet) -> None:
    """A restarted worker rebuilds the index from the recovered table: the same deadlines fire, once."""
    kv = DictKV()
    before = DeadlineIndex()
    p = Processor(lambda: rules, index=before)
    for i in range(20):
        p.case(kv, ("cases", 0, i), case(f"c-{i:02}", T0 + i * HOUR))
    after = DeadlineIndex()
    after.rebuild(kv.data.items())  # the table as the changelog restores it
    assert after.current == before.current
    scanner = Scanner(Processor(lambda: rules, index=after), kv, after)
    scanner.scan(T0 + 10 * HOUR)
    assert len(scanner.events("overdue")) == 9  # c-00 .. c-08: dispatched by T0+8h, 2 h to sign
    assert scanner.scan(T0 + 10 * HOUR) == 0


def test_the_index_rebuild_keeps_only_this_workers_partitions(rules: RuleSet) -> None:
    kv, index = DictKV(), DeadlineIndex()
    p = Processor(lambda: rules, index=index)
    for i in range(8):
        p.case(kv, ("cases", i % 2, i), case(f"c-{i}", T0))
    index.drop_partitions({1})
    assert {k for k in index.current} == {b"c-1", b"c-3", b"c-5", b"c-7"}


def _month_old_log(n: int) -> list[tuple[str, Any]]:
    """A week of N cases a month ago: half signed and resolved in time, half never answered."""
    start = T0
    log: list[tuple[str, Any]] = []
    for i in range(n):
        at = start + i * (7 * DAY // n)
        log.append(("case", case(f"c-{i:03}", at)))
        if i % 2 == 0:
            log.append(("sign", (f"c-{i:03}", at + HOUR)))
            log.append(("resolve", (f"c-{i:03}", at + 3 * HOUR)))
    return sorted(log, key=lambda item: item[1]["updated_at"] if item[0] == "case" else item[1][1])


def _replay(rules: RuleSet, clock: HubClock, n: int, scans_after: int) -> tuple[Scanner, int]:
    """Feed the log as a worker would (scanning every simulated 5 minutes of input), then scan on."""
    kv, index = DictKV(), DeadlineIndex()
    p = Processor(lambda: rules, index=index)
    scanner = Scanner(p, kv, index)
    dispatched: dict[str, Outcome] = {}
    last_scan = 0
    for offset, (kind, item) in enumerate(_month_old_log(n)):
        if kind == "case":
            clock.observe(item["updated_at"])
            dispatched[item["case_id"]] = p.case(kv, ("cases", 0, offset), item)
        else:
            case_id, at = item
            clock.observe(at)
            p.feedback(kv, ("feedback", 0, offset), feedback(dispatched[case_id], kind, at))
        if clock.now_ms() - last_scan >= 5 * MIN:
            scanner.scan(clock.now_ms())
            last_scan = clock.now_ms()
    for _ in range(scans_after):  # the worker keeps scanning after the log is read
        scanner.scan(clock.now_ms())
    return scanner, last_scan


def test_a_month_old_log_fires_what_fired_in_its_week_once(rules: RuleSet, monkeypatch: pytest.MonkeyPatch) -> None:
    wall = T0 + 37 * DAY  # the log is a month old
    n = 40
    auto = HubClock(Settings(clock="auto"), wall=lambda: wall)
    scanner, _ = _replay(rules, auto, n, scans_after=50)
    assert auto.replaying
    end = max(item["updated_at"] if kind == "case" else item[1] for kind, item in _month_old_log(n))
    assert auto.now_ms() == end
    # Expected, from the log alone: every unanswered case's 签收 deadline (2 h) that passed before the
    # log's end fires overdue once, then its 督办 deadline one day later if that passed too, and so on.
    expected = set()
    for kind, item in _month_old_log(n):
        if kind != "case" or int(item["case_id"][2:]) % 2 == 0:
            continue
        at = item["updated_at"]
        did = lc.dispatch_id(item["case_id"], "330502.zhzf", "lead", 0)
        sign, resolve = at + 2 * HOUR, at + 2 * DAY
        while min(sign, resolve) <= end:
            clock, deadline = ("sign", sign) if sign <= resolve else ("resolve", resolve)
            expected.add(lc.event_id(item["case_id"], "overdue", did, f"{clock}@{deadline}"))
            if clock == "sign":
                sign = deadline + DAY
            else:
                resolve = deadline + DAY
    assert scanner.events("overdue") == expected
    assert 0 < len(expected) < 4 * n

    # The same log on the wall clock: every deadline of the month since then (the storm issue 14 measured).
    wall_scanner, _ = _replay(rules, HubClock(Settings(clock="wall"), wall=lambda: wall), n, scans_after=50)
    assert len(wall_scanner.events("overdue")) > 5 * len(expected)


def test_the_auto_clock_is_the_wall_clock_for_live_input() -> None:
    wall = [T0]
    clock = HubClock(Settings(clock="auto"), wall=lambda: wall[0])
    assert clock.now_ms() == T0  # nothing seen yet: live
    clock.observe(T0 - 5 * MIN)  # a live record, minutes behind
    wall[0] += 6 * HOUR  # a quiet night: the clock keeps moving with the wall
    assert not clock.replaying and clock.now_ms() == T0 + 6 * HOUR
    clock.observe(T0 - 30 * DAY)  # a late record (an agency entering last month's 签收): time holds, never goes back
    assert clock.replaying and clock.now_ms() == T0
    clock.observe(wall[0] - MIN)  # the next live record: the wall clock again
    assert not clock.replaying and clock.now_ms() == wall[0]
    replay = HubClock(Settings(clock="auto", clock_lag_ms=MIN), wall=lambda: wall[0])
    replay.observe(T0 - 30 * DAY)  # a replay in a namespace of its own: its log's time
    replay.observe(T0 - 29 * DAY)
    replay.observe(T0 - 29 * DAY - HOUR)  # (an older record never moves it back)
    assert replay.replaying and replay.now_ms() == T0 - 29 * DAY - MIN
    event = HubClock(Settings(clock="event", clock_lag_ms=MIN), wall=lambda: wall[0])
    event.observe(T0)
    assert event.now_ms() == T0 - MIN  # the demos' event clock is unchanged


def test_a_placeholder_whose_case_never_came_expires_too(rules: RuleSet) -> None:
    kv, index = DictKV(), DeadlineIndex()
    p = Processor(lambda: rules, index=index)
    late = {"report_id": "rv-1", "source": "hotline-12345", "source_ref": "ORD-1", "kind": "incident",
            "county_code": "330502", "street_code": "330502001", "category": "garbage", "text": "回访",
            "reported_at": T0, "received_at": T0, "severity": 1, "status": "已回访", "version": 2,
            "satisfaction": "满意", "case_id": "c-gone"}
    p.report(kv, ("reports.linked", 0, 1), late)
    assert decode(kv.data[b"c-gone"])["placeholder"] and decode(kv.data[b"c-gone"])["expires"] == T0 + 7 * DAY
    Scanner(p, kv, index).scan(T0 + 7 * DAY)
    assert b"c-gone" not in kv.data


def test_state_bytes_are_the_compact_json_written_before() -> None:
    """``encode`` moved from json to orjson; a changelog written by either must read the same, and the
    states routing writes (text, floats, nested outboxes) encode to the very bytes json wrote."""
    import json
    state = {"case_id": "c-1", "title": "垃圾乱堆 \"引号\"", "lng": 120.123456, "lat": 30.8, "severity": 1,
             "due": None, "dispatchable": True, "outbox": [{"at": ["cases", 3, 17], "fx": {"dispatches": []}}]}
    old = json.dumps(state, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert encode(state) == old
    assert decode(old) == decode(encode(state)) == state
