"""The simulator's generator: deterministic, labelled, geographically and administratively valid."""

from __future__ import annotations

import collections
import itertools
from typing import Any

import pytest

from gridhub.simulate import DEFAULT_START_MS, SimRecord, devices_for, generate
from gridhub.simulate.geo import haversine_m, wgs84_to_gcj02
from gridhub.simulate.text import CATEGORIES
from gridhub.simulate.world import reference_codes


@pytest.fixture(scope="module")
def records() -> list[SimRecord]:
    # 2 h at 6 records/s: long enough for updates, recoveries and every scenario to appear.
    return list(generate(7, 6, 7200))


def test_known_gcj02_value() -> None:
    # Reference value of the widely used coordtransform library (wgs84togcj02(116.404, 39.915)).
    lng, lat = wgs84_to_gcj02(116.404, 39.915)
    assert lng == pytest.approx(116.41024449916938, abs=1e-9)
    assert lat == pytest.approx(39.91640428150164, abs=1e-9)


def test_window_opens_on_steady_traffic() -> None:
    """With the warm-up, a short window already holds reports (not only heartbeats)."""
    recs = list(generate(5, 10, 300))
    reports = [r for r in recs if r.kind in ("report", "consultation")]
    assert len(reports) > 0.25 * len(recs)
    assert min(r.at_ms for r in recs) >= DEFAULT_START_MS


def test_same_seed_same_traffic_other_seed_other_traffic() -> None:
    a = [(r.at_ms, r.value(), r.incident) for r in generate(3, 5, 900)]
    b = [(r.at_ms, r.value(), r.incident) for r in generate(3, 5, 900)]
    c = [(r.at_ms, r.value(), r.incident) for r in generate(4, 5, 900)]
    assert a == b
    assert a != c
    assert [d.registry_row() for d in devices_for(3, 5, 900)] == [d.registry_row() for d in devices_for(3, 5, 900)]


def test_delivery_order_and_rate(records: list[SimRecord]) -> None:
    times = [r.at_ms for r in records]
    assert times == sorted(times)
    # Mean rate within 15 % of the requested 6/s (late updates of the last incidents fall past the end).
    assert 0.85 * 6 * 7200 <= len(records) <= 1.15 * 6 * 7200


def test_every_kind_and_source_present(records: list[SimRecord]) -> None:
    kinds = collections.Counter(r.kind for r in records)
    for kind in ("report", "update", "redelivery", "recover", "heartbeat", "maintenance", "consultation"):
        assert kinds[kind] > 0, kind
    # Heartbeats are most of the sensor traffic.
    sensor_kinds = collections.Counter(r.kind for r in records if r.source == "sensors")
    assert sensor_kinds["heartbeat"] > sum(sensor_kinds.values()) / 2
    assert {r.source for r in records} == {"four-platforms", "hotline-12345", "sensors"}


def test_labels_cover_every_record_consistently(records: list[SimRecord]) -> None:
    by_ref: dict[tuple[str, str], str | None] = {}
    first_kind: dict[tuple[str, str], str] = {}
    for r in records:
        label = r.label()
        assert set(label) >= {"source", "source_ref", "incident"}
        ref = (r.source, r.source_ref)
        kind = first_kind.setdefault(ref, r.kind)
        assert kind not in ("update", "redelivery")  # a record is delivered before its copies and versions
        if kind in ("heartbeat", "maintenance"):
            assert r.incident is None
        else:
            assert r.incident is not None
        # A redelivery or an update keeps its record's identity and incident.
        assert by_ref.setdefault(ref, r.incident) == r.incident
        if r.source == "sensors":
            assert label["source_ref"] == f"{r.doc['deviceId']}@{r.doc['eventTime']}"
    # Redeliveries are byte-identical to an earlier delivery.
    seen: set[bytes] = set()
    for r in records:
        if r.kind == "redelivery":
            assert r.value() in seen
        seen.add(r.value())


def test_sensor_refs_of_heartbeats_never_collide_with_incident_refs(records: list[SimRecord]) -> None:
    hb = {r.source_ref for r in records if r.kind == "heartbeat"}
    other = {r.source_ref for r in records if r.source == "sensors" and r.kind != "heartbeat"}
    assert hb and other and not hb & other


def test_codes_are_real_and_consistent(records: list[SimRecord]) -> None:
    counties, townships, villages = reference_codes()
    checked = 0
    for r in records:
        d = r.doc
        if r.source == "four-platforms":
            assert d["streetCode"] in townships
            assert villages[d["villageCode"]] == d["streetCode"]
            assert d["gridCode"].startswith(d["villageCode"] + "-")
            checked += 1
        elif r.source == "hotline-12345":
            assert d["areaCode"] in counties
            if "streetCode" in d:
                assert townships[d["streetCode"]] == d["areaCode"]
            checked += 1
        elif "streetCode" in d:
            assert d["streetCode"] in townships
    devices = devices_for(7, 6, 7200)
    for dev in devices:
        row = dev.registry_row()
        assert villages[str(row["villageCode"])] == row["streetCode"]
    assert checked > 1000


def test_required_fields_present(records: list[SimRecord]) -> None:
    required = {"four-platforms": ("eventId", "platform", "description", "reportTime", "streetCode"),
                "hotline-12345": ("orderNo", "acceptTime", "content", "areaCode"),
                "sensors": ("deviceId", "deviceType", "eventType", "eventTime")}
    for r in records:
        for name in required[r.source]:
            assert r.doc.get(name) not in (None, ""), (r.source, name)


def _incidents(records: list[SimRecord]) -> dict[str, list[SimRecord]]:
    out: dict[str, list[SimRecord]] = collections.defaultdict(list)
    for r in records:
        if r.incident and r.kind in ("report", "recover", "consultation"):
            out[r.incident].append(r)
    return out


def test_hotline_coordinates_are_gcj02(records: list[SimRecord]) -> None:
    """12345 positions are offset by the GCJ-02 shift from the other sources' WGS-84 positions."""
    compared = 0
    for reps in _incidents(records).values():
        wgs = [r for r in reps if r.source != "hotline-12345" and "lng" in r.doc]
        gcj = [r for r in reps if r.source == "hotline-12345" and "lng" in r.doc]
        for w, g in itertools.product(wgs[:1], gcj):
            raw = haversine_m(lng1=w.doc["lng"], lat1=w.doc["lat"], lng2=g.doc["lng"], lat2=g.doc["lat"])
            glng, glat = wgs84_to_gcj02(w.doc["lng"], w.doc["lat"])
            shifted = haversine_m(lng1=glng, lat1=glat, lng2=g.doc["lng"], lat2=g.doc["lat"])
            assert raw > 200, raw              # the GCJ-02 shift in Zhejiang is ~400-600 m
            assert shifted < 150, shifted      # once shifted alike, the caller is tens of metres away
            compared += 1
    assert compared > 20


def test_fires_are_reported_by_all_three_sources(records: list[SimRecord]) -> None:
    fires = [reps for reps in _incidents(records).values()
             if any(r.source == "sensors" and r.doc["deviceType"] == "smoke" for r in reps)]
    assert fires
    multi = [reps for reps in fires if {r.source for r in reps} == {"four-platforms", "hotline-12345", "sensors"}]
    assert multi
    storms = 0
    for reps in multi:
        texts = {r.doc["content"] for r in reps if r.source == "hotline-12345"}
        calls = [r for r in reps if r.source == "hotline-12345"]
        assert len(texts) == len(calls)  # several callers, each in their own words
        alarms = [r for r in reps if r.source == "sensors" and r.doc["eventType"] == "alarm"]
        storms += len(alarms) >= 3       # an alarm storm, not a single alarm (fires begun before the window excepted)
    assert storms > 0


def test_hard_negatives_present(records: list[SimRecord]) -> None:
    """Same category, same county, within minutes, 500 m+ apart; and same address, different problem."""
    first: dict[str, dict[str, Any]] = {}
    for inc, reps in _incidents(records).items():
        calls = [r for r in reps if r.source == "hotline-12345" and "lng" in r.doc]
        if calls:
            d = calls[0].doc
            first[inc] = {"cat": d["categoryName"], "county": d["areaCode"], "t": calls[0].at_ms,
                          "lng": d["lng"], "lat": d["lat"], "content": d["content"]}
    items = sorted(first.items(), key=lambda kv: kv[1]["t"])
    far = same_place = 0
    for (ia, a), (ib, b) in itertools.combinations(items, 2):
        if abs(a["t"] - b["t"]) > 30 * 60_000 or a["county"] != b["county"]:
            continue
        dist = haversine_m(lng1=a["lng"], lat1=a["lat"], lng2=b["lng"], lat2=b["lat"])
        if a["cat"] == b["cat"] and dist >= 400:
            far += 1
        if a["cat"] != b["cat"] and dist < 200:
            same_place += 1
    assert far > 0 and same_place > 0


def test_consultations_answered_directly(records: list[SimRecord]) -> None:
    consults = [r for r in records if r.kind == "consultation"]
    assert consults
    for r in consults:
        assert r.doc["appealType"] in ("咨询", "感谢") and r.doc["status"] == "已办结"
    assert len({r.incident for r in consults}) == len({r.key for r in consults})


def test_status_updates_advance(records: list[SimRecord]) -> None:
    rank = {"待派发": 0, "已派发": 1, "办理中": 2, "已办结": 3, "已回访": 4}
    last: dict[str, int] = {}
    reviewed = 0
    for r in records:
        if r.source != "hotline-12345" or r.kind == "redelivery":
            continue
        status = rank[r.doc["status"]]
        if r.kind == "update":
            assert status > last[r.key]
        last[r.key] = status
        if r.doc["status"] == "已回访":
            assert r.doc["satisfaction"] in ("满意", "基本满意", "不满意")
            reviewed += 1
    assert reviewed > 0


def test_category_text_varies() -> None:
    for cat in CATEGORIES.values():
        assert len(cat.caller_texts) >= 2 and len(cat.grid_texts) >= 2
