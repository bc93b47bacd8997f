"""The fusion rules (DESIGN.md "Fusion"), each a pure function.

Nothing here reads state or the clock: the engine hands in a case (its JSON
state dict) and the :class:`Features` of a report, and the rules answer
"is it the same record / the device's case / a candidate, and how good".
Every rule has unit tests in ``tests/streams/fusion/test_rules.py``,
including the hard negatives that must stay separate cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from streams.fusion.config import FusionConfig
from streams.fusion.geo import haversine_m
from streams.fusion.text import address_key, content, jaccard, places, shingles

HUMAN_SOURCES = frozenset({"four-platforms", "hotline-12345"})
#: Case states after which no new report joins (routing announces them on case-lifecycle).
CLOSED_STATES = frozenset({"resolved", "reviewed", "closed"})


@dataclass(frozen=True)
class Features:
    """What the rules look at in a report, computed once per report."""

    report_id: str
    source: str
    kind: str
    county: str
    street: str | None
    category: str
    t: int
    lat: float | None
    lng: float | None
    addr_full: str | None
    addr_road: str | None
    device_id: str | None
    shingles: frozenset[str]
    places: frozenset[str]
    dispatchable: bool = True

    @property
    def human(self) -> bool:
        return self.source in HUMAN_SOURCES

    @property
    def has_coords(self) -> bool:
        return self.lat is not None and self.lng is not None


def event_time(report: dict[str, Any]) -> int:
    """Event time of a report: when it happened if the source says so, else when it was reported."""
    occurred = report.get("occurred_at")
    reported = int(report["reported_at"])
    # occurred_at after reported_at is a source clock error: trust the report time then.
    return int(occurred) if occurred is not None and int(occurred) <= reported else reported


def features(report: dict[str, Any]) -> Features:
    key = address_key(report.get("address"))
    raw_lat, raw_lng = report.get("lat"), report.get("lng")
    # (0, 0) is how some platforms say "no fix"; it is not in Zhejiang either way.
    lat = float(raw_lat) if raw_lat is not None and raw_lng is not None and (raw_lat, raw_lng) != (0, 0) else None
    lng = float(raw_lng) if lat is not None and raw_lng is not None else None
    human = report["source"] in HUMAN_SOURCES
    text = " ".join(x for x in (report.get("title"), report.get("text")) if x)
    return Features(
        report_id=report["report_id"], source=report["source"], kind=report["kind"],
        county=report["county_code"], street=report.get("street_code") or None,
        category=report.get("category") or "other", t=event_time(report),
        lat=lat, lng=lng,
        addr_full=key.full, addr_road=key.road, device_id=report.get("device_id"),
        shingles=frozenset(shingles(content(text, report.get("address")))) if human else frozenset(),
        # a human's text names places ("岩泉加油站对面"); a sensor's text only repeats its address
        places=frozenset(places(report.get("address")) | (places(text) if human else set())),
        dispatchable=bool(report.get("dispatchable", True)),
    )


# --- rule 1: the same source record ------------------------------------------------------------

SameRecord = Literal["new", "stale", "duplicate", "update"]


def same_record(entry: dict[str, Any] | None, version: int) -> SameRecord:
    """Rule 1: a known (source, source_ref) is never a new case; its version orders the deliveries."""
    if entry is None:
        return "new"
    if version < int(entry["v"]):
        return "stale"
    if version == int(entry["v"]):
        return "duplicate"
    return "update"


# --- rule 2: sensors ---------------------------------------------------------------------------

def is_open(case: dict[str, Any]) -> bool:
    return case["status"] not in CLOSED_STATES


def time_gap(case: dict[str, Any], t: int) -> int:
    """Distance in ms from event time ``t`` to the case's [first_seen, last_seen] (0 inside)."""
    return max(0, int(case["first_seen"]) - t, t - int(case["last_seen"]))


def device_joins(cfg: FusionConfig, case: dict[str, Any], f: Features) -> bool:
    """Rule 2a: an alarm joins its device's open case (consecutive alarms of one incident).

    After the device sent ``recover``, an alarm more than ``realarm_after_recover`` later is a
    new incident; an earlier one (or one delivered late, from before the recovery) is the same.
    """
    if not is_open(case) or time_gap(case, f.t) > cfg.device_window_ms:
        return False
    recovered_at = (case.get("recovered") or {}).get(f.device_id or "")
    return recovered_at is None or f.t <= int(recovered_at) + cfg.realarm_after_recover_ms


def recover_target(case: dict[str, Any] | None, f: Features, cfg: FusionConfig) -> bool:
    """Rule 2b: a ``recover`` updates the device's open case, and never opens one."""
    return case is not None and is_open(case) and time_gap(case, f.t) <= cfg.device_window_ms


# --- rule 3: candidates across devices and sources ---------------------------------------------

def effective_limits(cfg: FusionConfig, a: str, b: str) -> tuple[int, float]:
    """(window ms, radius m) for a pair of categories: the stricter of the two known categories."""
    rules = [cfg.rule(c) for c in (a, b) if c != "other"] or [cfg.rule("other")]
    return min(r.window_ms for r in rules), min(r.radius_m for r in rules)


def spatial_score(cfg: FusionConfig, case: dict[str, Any], f: Features, radius_m: float) -> float:
    """Evidence in [0, 1] that the report is at the case's place; 0 means "somewhere else".

    Coordinates count when both sides have them: 1 at the same point, 0.5 at the radius, and
    beyond twice the radius no shared address text can make it the same place.  Address text
    counts as the same normalised address (road + number), a shared named place (estate,
    landmark), the same road, or, without coordinates on either side, only the township.
    Two different house numbers on one road are two places, whatever else is shared.
    """
    fulls, roads = case.get("fulls") or (), case.get("roads") or ()
    if f.addr_full and f.addr_full not in fulls and f.addr_road in roads:
        if any(full.startswith(f.addr_road or "") for full in fulls):
            return 0.0  # 滨河路43号 vs 滨河路162号
    same_address = bool(f.addr_full) and f.addr_full in fulls
    if f.has_coords and case.get("lat") is not None:
        assert f.lat is not None and f.lng is not None
        d = haversine_m(lat1=f.lat, lng1=f.lng, lat2=float(case["lat"]), lng2=float(case["lng"]))
        if d <= radius_m:
            return max(1.0 - 0.5 * d / radius_m, cfg.same_address if same_address else 0.0)
        # Coordinates beat names (estate names repeat across a township); only the same house
        # number overrides a geocoding error, and not beyond twice the radius.
        return cfg.same_address if same_address and d <= 2 * radius_m else 0.0
    addr = 0.0
    if same_address:
        addr = cfg.same_address
    elif f.places & set(case.get("places") or ()):
        addr = cfg.same_place
    elif f.addr_road and f.addr_road in roads:
        addr = cfg.same_road
    elif f.street and f.street in (case.get("streets") or ()):
        addr = cfg.same_township
    return addr


@dataclass(frozen=True)
class Score:
    value: float
    space: float
    text: float
    time: float
    category: float


def score(cfg: FusionConfig, case: dict[str, Any], f: Features) -> Score | None:
    """Rule 3: how well an open case explains the report, or None when it is no candidate."""
    if not is_open(case) or case["county"] != f.county:
        return None
    if not f.dispatchable or not case.get("dispatchable", True):
        # a consultation the hotline answered directly is its own record, never part of an incident
        return None
    cat = cfg.compatibility(f.category, case["category"])
    if cat <= 0:
        return None
    window, radius = effective_limits(cfg, f.category, case["category"])
    both_sensors = not f.human and not case.get("human")
    if both_sensors:
        # an alarm storm: several devices, one place, a short time
        window, radius = min(window, cfg.storm_window_ms), min(radius, cfg.storm_radius_m)
    gap = time_gap(case, f.t)
    if gap > window:
        return None
    space = spatial_score(cfg, case, f, radius)
    if space <= 0:
        return None
    tm = 1.0 - gap / window if window else 1.0
    if f.human and case.get("human"):
        text = jaccard(f.shingles, frozenset(case.get("sh") or ()))
        same_address = bool(f.addr_full) and f.addr_full in (case.get("fulls") or ())
        if text < cfg.min_text_similarity and not same_address:
            return None
        weak_category = f.category != case["category"] or f.category == "other"
        if weak_category and text < cfg.related_min_text_similarity and not same_address:
            # an unclassified or merely related category is no evidence: the content must be
            return None
        w = cfg.human_weights
    else:
        text = 0.0
        w = cfg.sensor_weights
    value = cat * (w.space * space + w.text * text + w.time * tm)
    return Score(value=value, space=space, text=text, time=tm, category=cat)


def best_candidate(cfg: FusionConfig, cases: list[dict[str, Any]], f: Features) -> tuple[dict[str, Any], Score] | None:
    """The best-scoring candidate at or above the threshold; ties go to the older case (deterministic)."""
    best: tuple[float, int, str] | None = None
    chosen: tuple[dict[str, Any], Score] | None = None
    for case in cases:
        s = score(cfg, case, f)
        if s is None or s.value < cfg.threshold:
            continue
        rank = (-s.value, int(case["first_seen"]), case["case_id"])
        if best is None or rank < best:
            best, chosen = rank, (case, s)
    return chosen
