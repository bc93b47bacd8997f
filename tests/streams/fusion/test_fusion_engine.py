"""The fusion engine end to end on in-memory state: ids, events, versions, lifecycle, expiry, crashes."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from helpers.fusion import HOUR, LAT, MIN, T0, Harness, alarm, north, report

from gridhub.core.codec import codec
from streams.fusion.engine import case_id_for
from streams.fusion.state import MemoryKV


def events(h: Harness, i: int = -1) -> list[str]:
    return [e["event"] for e in h.results[i].events]


def test_new_case_id_is_derived_from_the_opening_report() -> None:
    h = Harness()
    r = report("fp1")
    [case] = h.feed(r)
    assert case == case_id_for(r["report_id"])
    assert events(h) == ["created"]
    out = h.results[-1]
    # every output is a valid Avro record of its schema
    codec("Case").encode(out.cases[0]), codec("CaseEvent").encode(out.events[0]), codec("Report").encode(out.linked[0])


def test_rule1_update_never_opens_a_case_and_redelivery_repeats_the_same_ids() -> None:
    h = Harness()
    r = report("fp1")
    [c1] = h.feed(r)
    [again] = h.feed(r)  # redelivered: same version
    assert again == c1
    assert h.results[1].events == h.results[0].events  # same event ids: consumers dedupe
    assert h.results[1].cases[0]["version"] == h.results[0].cases[0]["version"]
    newer = {**r, "version": r["version"] + 1000, "status": "处置中", "lat": LAT + north(600)}
    [c2] = h.feed(newer)  # even moved 600 m: the same record is never a new case
    assert c2 == c1 and "report_updated" in events(h)
    assert h.results[-1].cases[0]["version"] > h.results[0].cases[0]["version"]
    [c3] = h.feed(r)  # an older version delivered late: changes nothing, emits nothing (issue 13)
    assert c3 is None and events(h) == [] and h.results[-1].outcome == "stale"
    assert h.results[-1].linked == [] and h.results[-1].cases == []


def test_update_of_the_opener_recategorises_and_relocates() -> None:
    h = Harness()
    r = report("h1", source="hotline-12345", category="other", text="红旗路88号有问题", address="红旗路88号")
    [c] = h.feed(r)
    h.feed({**r, "version": r["version"] + 1, "category": "garbage", "address": "红旗路90号",
            "lat": LAT + north(200)})
    assert events(h) == ["report_updated", "recategorised", "relocated"]
    assert h.case(c)["category"] == "garbage"


def test_other_case_is_refined_by_a_classified_report() -> None:
    h = Harness()
    [c1] = h.feed(report("h1", source="hotline-12345", category="other", text="红旗路有人摆摊卖水果占道经营"))
    [c2] = h.feed(report("fp1", t=T0 + 5 * MIN, text="红旗路流动摊贩占道经营卖水果"))
    assert c1 == c2 and events(h) == ["report_linked", "recategorised"]
    assert h.case(c1)["category"] == "street_vending"


def test_rule2_sensor_storm_recover_and_orphan_recover() -> None:
    h = Harness()
    storm = [alarm("D1", T0 + i * MIN) for i in range(5)]
    cases = h.feed(*storm)
    assert len(set(cases)) == 1
    [rec] = h.feed(alarm("D1", T0 + 10 * MIN, kind="recover"))
    assert rec == cases[0] and events(h) == ["recovered"]
    [orphan] = h.feed(alarm("D9", T0 + 10 * MIN, kind="recover", lat=LAT + north(3000), address="青铜路1号"))
    assert orphan is None and h.results[-1].outcome == "orphan_recover" and h.results[-1].cases == []
    [new_fire] = h.feed(alarm("D1", T0 + 5 * HOUR))
    assert new_fire != cases[0]


def test_rule2_several_devices_at_one_address_are_one_case() -> None:
    h = Harness()
    a, b, c = h.feed(alarm("D1", T0), alarm("D2", T0 + 30_000, lat=None, lng=None),
                     alarm("D3", T0 + 60_000, lat=LAT + north(25), address=None))
    assert a == b == c
    assert sorted(h.case(a)["device_ids"]) == ["D1", "D2", "D3"]


def test_rule3_fire_alarm_and_calls_fuse_across_sources() -> None:
    h = Harness()
    [fire] = h.feed(alarm("D1", T0))
    call, grid = h.feed(
        report("h1", source="hotline-12345", category="fire", t=T0 + 3 * MIN, text="翠苑小区有栋楼冒黑烟着火了",
               lat=LAT + north(70), address="翠苑小区门口"),
        report("fp1", category="fire", t=T0 + 6 * MIN, text="红旗路88号翠苑小区3幢起火，已疏散", address="红旗路88号"))
    assert fire == call == grid
    assert sorted(h.case(fire)["sources"]) == ["four-platforms", "hotline-12345", "sensors"]


def test_resolved_case_stops_joining_and_reopened_resumes() -> None:
    h = Harness()
    [c1] = h.feed(report("fp1"))
    out = h.lifecycle(c1, "resolved", T0 + HOUR)
    assert out.cases[0]["status"] == "resolved"
    assert h.lifecycle(c1, "resolved", T0 + HOUR).cases == []  # redelivered: nothing new
    [c2] = h.feed(report("fp2", t=T0 + 2 * HOUR))  # same place, after the first was resolved
    assert c2 != c1
    h.lifecycle(c2, "reopened", T0 + 3 * HOUR)
    [c3] = h.feed(report("fp3", t=T0 + 3 * HOUR))
    assert c3 == c2
    assert h.lifecycle(c2, "closed", T0 + 2 * HOUR).cases == []  # older than the reopening: ignored
    assert h.lifecycle(c2, "dispatched", T0 + 4 * HOUR).cases[0]["status"] == "dispatched"
    assert h.lifecycle(c2, "nonsense", T0 + 5 * HOUR).cases == []


def test_case_versions_are_monotonic() -> None:
    h = Harness()
    for i in range(6):
        h.feed(report(f"fp{i}", t=T0 + i * MIN))
    versions = [r.cases[0]["version"] for r in h.results]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


def test_state_is_bounded_by_event_time() -> None:
    h = Harness()
    [c1] = h.feed(report("fp1"))
    [c2] = h.feed(report("fp2", t=T0 + MIN, lat=LAT + north(5000), category="noise", text="广场舞噪音"))
    h.lifecycle(c2, "closed", T0 + HOUR)
    h.feed(report("fp3", t=T0 + 30 * HOUR, lat=LAT + north(9000), category="garbage", text="垃圾"))
    assert h.case(c2) is None and h.case(c1) is not None  # closed: gone 24 h after closing
    h.feed(report("fp4", t=T0 + 9 * 24 * HOUR, lat=LAT + north(9000), category="garbage", text="垃圾"))
    assert h.case(c1) is None  # 7 days after its last report (fp3 too: 30 h + 7 d < 9 d)
    assert not any(k.startswith("s:four-platforms|fp1") for k in h.kv.keys())
    live = [k for k in h.kv.keys() if k.startswith("c:")]
    assert live == [f"c:{case_id_for(report('fp4')['report_id'])}"]
    # every index entry left points at a live case
    for key in h.kv.keys():
        if key[:2] in ("g:", "a:", "r:", "t:", "p:", "n:"):
            assert all(f"c:{cid}" in live for cid in json.loads(h.kv.data[key])), key


def test_rejects_reports_it_cannot_use() -> None:
    h = Harness()
    with pytest.raises(ValueError):
        h.feed({**report("x"), "kind": "heartbeat"})
    with pytest.raises(ValueError):
        h.feed({**report("x"), "county_code": ""})


class CrashingKV(MemoryKV):
    """Fails the n-th write: what a SIGKILL between two changelog writes leaves behind."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.writes, self.fail_at = 0, fail_at

    def _tick(self) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            raise RuntimeError("crash")

    def set(self, key: str, value: bytes) -> None:
        self._tick()
        super().set(key, value)

    def delete(self, key: str) -> None:
        self._tick()
        super().delete(key)


def _traffic(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(40):
        kind = rng.choice(("fp", "h", "alarm"))
        t = T0 + i * 2 * MIN
        lat = LAT + north(rng.choice((0, 40, 90, 700)))
        if kind == "alarm":
            out.append(alarm(f"D{rng.randint(1, 4)}", t, lat=lat))
        else:
            out.append(report(f"{kind}{i}", source="four-platforms" if kind == "fp" else "hotline-12345", t=t,
                              lat=lat, category=rng.choice(("street_vending", "fire", "other"))))
        if rng.random() < 0.2:
            out.append(out[rng.randrange(len(out))])  # a redelivery
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_a_crash_between_any_two_writes_then_redelivery_gives_the_same_mapping(seed: int) -> None:
    traffic = _traffic(seed)
    clean = Harness()
    expected = clean.feed(*traffic)
    total_writes = CrashingKV(10**9)
    h0 = Harness()
    h0.kv = total_writes
    h0.feed(*traffic)
    for fail_at in range(1, total_writes.writes, 7):
        h = Harness()
        h.kv = CrashingKV(fail_at)
        got: list[str | None] = []
        i = 0
        while i < len(traffic):
            try:
                got.extend(h.feed(traffic[i]))
                i += 1
            except RuntimeError:
                pass  # the worker died; the uncommitted report is delivered again
        mapping = {r["source_ref"]: c for r, c in zip(traffic, got) if c}
        assert mapping == {r["source_ref"]: c for r, c in zip(traffic, expected) if c}, fail_at
