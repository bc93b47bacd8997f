"""The fusion rules (DESIGN.md "Fusion"), each a pure function.

Nothing here reads state or the clock: the engine hands in a case (its JSON
state dict) and the :class:`Features` of a report, and the rules answer
"is it the same record / the device's case / a candidate, and how good".
Every rule has unit tests in ``tests/streams/fusion/test_rules.py``,
including the hard negatives that must stay separate cases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from streams.fusion.config import FusionConfig
from streams.fusion.geo import haversine_m
from streams.fusion.text import (address_key, concepts_in, content, fold, jaccard, places, roads_in, shingles, shops_in,
                                 strip_local, towns_in, villages_in)

_CJK_RUN = re.compile(r"[\u4e00-\u9fff]")
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
    #: issue 13: roads, villages and shops named in the address or text; township codes the
    #: street code or the text names; concepts of the text (config ``concepts``)
    roads: frozenset[str] = frozenset()
    #: the roads of the address field alone (free text names roads in passing)
    addr_roads: frozenset[str] = frozenset()
    villages: frozenset[str] = frozenset()
    addr_villages: frozenset[str] = frozenset()
    addr_places: frozenset[str] = frozenset()
    shops: frozenset[str] = frozenset()
    towns: frozenset[str] = frozenset()
    concepts: frozenset[str] = frozenset()
    #: concepts of the title alone (what the reporter put first), generic ones included
    title_concepts: frozenset[str] = frozenset()
    reporter: str | None = None
    #: the text says the caller reported it before ("上午打过电话")
    callback: bool = False
    #: the source status says the problem was handled (config ``closing_statuses``)
    closing: bool = False
    #: ... and that it was reviewed with the reporter (回访): closed to everyone
    reviewed: bool = False

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


def features(report: dict[str, Any], cfg: FusionConfig | None = None) -> Features:
    key = address_key(report.get("address"))
    raw_lat, raw_lng = report.get("lat"), report.get("lng")
    # (0, 0) is how some platforms say "no fix"; it is not in Zhejiang either way.
    lat = float(raw_lat) if raw_lat is not None and raw_lng is not None and (raw_lat, raw_lng) != (0, 0) else None
    lng = float(raw_lng) if lat is not None and raw_lng is not None else None
    human = report["source"] in HUMAN_SOURCES
    county = report["county_code"]
    address = report.get("address")
    text = " ".join(x for x in (report.get("title"), report.get("text")) if x)
    if human and lat is not None and address and not _CJK_RUN.search(strip_local(address, county)):
        # The address is only a county / township name: the operator's map geocoded it to the
        # township seat, kilometres from the incident. Such a point is no evidence of place.
        lat = lng = None
    both = f"{address or ''} {text}" if human else (address or "")
    villages = villages_in(both, county)
    vnames = frozenset(villages)
    # a community is also called a 小区 ("天宁寺社区" / "天宁寺小区"): the same place key
    community_places = {v[-4:-2] + "小区" for v in vnames if v.endswith("社区") and len(v) >= 4}
    street = report.get("street_code") or None
    towns = set(towns_in(both, county)) if human else set()
    if street:
        towns.add(street)
    status = str(report.get("status") or "")
    vocabulary = cfg.concepts if cfg else {}
    return Features(
        report_id=report["report_id"], source=report["source"], kind=report["kind"],
        county=county, street=street,
        category=report.get("category") or "other", t=event_time(report),
        lat=lat, lng=lng,
        addr_full=key.full, addr_road=key.road, device_id=report.get("device_id"),
        shingles=frozenset(shingles(content(text, address))) if human else frozenset(),
        # a human's text names places ("岩泉加油站对面"); a sensor's text only repeats its address
        places=frozenset(places(address, county) | (places(text, county) if human else set()) | community_places),
        dispatchable=bool(report.get("dispatchable", True)),
        roads=frozenset(roads_in(address, county) | (roads_in(text, county) if human else set())),
        addr_roads=frozenset(roads_in(address, county)),
        villages=vnames, addr_places=frozenset(places(address, county)) if human else frozenset(),
        addr_villages=frozenset(villages_in(address, county)) if human else frozenset(), shops=frozenset(shops_in(address)) if human else frozenset(),
        towns=frozenset(towns),
        # a sensor's text is generated from its type ("智慧烟感设备 ... 告警"): its concepts are the device's
        concepts=concepts_in(text, vocabulary),
        title_concepts=concepts_in(report.get("title"), vocabulary) if human else frozenset(),
        reporter=report.get("reporter_hash") if human else None,
        callback=human and bool(cfg) and any(w in fold(text) for w in (cfg.callback_words if cfg else ())),
        closing=bool(cfg) and bool(status) and any(w in status for w in (cfg.closing_statuses if cfg else ())),
        reviewed=bool(cfg) and bool(status) and any(w in status for w in (cfg.reviewed_statuses if cfg else ())),
    )


# --- rule 1: the same source record ------------------------------------------------------------

SameRecord = Literal["new", "stale", "duplicate", "update"]


def same_record(entry: dict[str, Any] | None, version: int, fp: str | None = None) -> SameRecord:
    """Rule 1: a known (source, source_ref) is never a new case.

    An identical document (same content fingerprint) is a duplicate whatever its version; a
    lower version is stale (an older state redelivered after a newer one); a higher version,
    or the same version with other content (a correction), is an update.
    """
    if entry is None:
        return "new"
    if fp is not None and entry.get("fp") is not None:
        if fp == entry["fp"]:
            return "duplicate"
        if version < int(entry["v"]):
            return "stale"
        return "update"
    if version < int(entry["v"]):
        return "stale"
    if version == int(entry["v"]):
        return "duplicate"
    return "update"


# --- rule 2: sensors ---------------------------------------------------------------------------

def is_open(case: dict[str, Any], t: int | None = None, grace_ms: int = 0) -> bool:
    """Routing has not resolved / closed the case, nor has a source said it was handled
    (more than ``grace_ms`` before event time ``t``)."""
    if case["status"] in CLOSED_STATES:
        return False
    if case.get("src_reviewed_at") is not None and t is not None and t > int(case["src_reviewed_at"]):
        return False
    handled = case.get("src_closed_at")
    return handled is None or t is None or t <= int(handled) + grace_ms


def is_open_for(case: dict[str, Any], f: Features, cfg: FusionConfig) -> bool:
    """:func:`is_open`, except that a source's 已办结 (resolved, not yet reviewed) leaves the case
    open to its own reporters: "the lift was fixed but I want to complain about the upkeep" is a
    follow-up of the same incident; after the 回访 (review) it is closed to everyone."""
    if is_open(case, f.t, cfg.resolved_grace_ms):
        return True
    if case["status"] in CLOSED_STATES or case.get("src_reviewed_at") is not None:
        return False
    # a caller's follow-up (12345); a grid worker reports every problem of the grid
    return f.source == "hotline-12345" and bool(f.reporter) and f.reporter in (case.get("reporters") or ())


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

    Names: the same normalised address (road + number), a shared named place (estate,
    landmark), a shared village / community, a shared road, or only a shared township (the
    street code, or a township the text names).  Two different house numbers on one road are
    two places; two different shops of one street are two places; two sets of roads that do
    not meet are two places unless a place or village is shared.
    Coordinates, when both sides have them: 1 at the same point, 0.5 at the radius; beyond
    the radius but within ``geocode_tolerance_m`` more (12345 geocodes are landmark-level)
    only a shared road / place / village name makes it the same place; beyond ``far_m``
    nothing does; in between only a shared place, village or address.
    """
    fulls, roads = case.get("fulls") or (), set(case.get("roads") or ())
    if f.addr_full and f.addr_full not in fulls and f.addr_road in roads:
        if any(full.startswith(f.addr_road or "") for full in fulls):
            return 0.0  # 滨河路43号 vs 滨河路162号
    same_address = bool(f.addr_full) and f.addr_full in fulls
    shared_place = bool(f.places & set(case.get("places") or ()))
    shared_village = bool(f.villages & set(case.get("vills") or ()))
    shared_road = bool((f.roads | ({f.addr_road} if f.addr_road else set())) & roads)
    case_shops = set(case.get("shops") or ())
    if f.shops and case_shops and not f.shops & case_shops and not same_address:
        return 0.0  # 小炒店 vs 烤鱼店 on one street
    contradicted = False
    if same_address:
        name = cfg.same_address
    elif shared_place:
        name = cfg.same_place
    elif shared_village or shared_road:
        name = cfg.same_road
    elif f.towns & set(case.get("streets") or ()):
        name = cfg.same_township
    else:
        name = 0.0
    addr_places = set(case.get("aplaces") or ())
    if (f.addr_places and addr_places and not f.addr_places & addr_places
            and not (shared_village or shared_road or same_address)):
        name, contradicted = 0.0, True  # 嘉绿苑 vs 翠苑一区: two named estates
    addr_vills = set(case.get("avills") or ())
    if (f.addr_villages and addr_vills and not f.addr_villages & addr_vills
            and not (shared_place or shared_road or same_address)):
        name, contradicted = 0.0, True  # 洋桥村 vs 缪家村
    addr_roads = set(case.get("aroads") or ())
    if (f.addr_roads and addr_roads and not f.addr_roads & addr_roads
            and not (shared_place or shared_village or same_address)):
        name, contradicted = 0.0, True  # 步云路 vs 南江路: both addresses name a road, and not the same
    if f.has_coords and case.get("lat") is not None:
        assert f.lat is not None and f.lng is not None
        d = haversine_m(lat1=f.lat, lng1=f.lng, lat2=float(case["lat"]), lng2=float(case["lng"]))
        if d <= radius_m:
            return max(1.0 - 0.5 * d / radius_m, name)
        if d <= radius_m + cfg.geocode_tolerance_m:
            # within a geocoding error: a shared name decides; without one it is weak evidence
            return name if name >= cfg.same_road else (0.0 if contradicted else cfg.near_point)
        if d <= cfg.far_m:
            return name if name >= cfg.same_place or shared_village else 0.0
        return 0.0
    return name


def topic_score(cfg: FusionConfig, case: dict[str, Any], f: Features) -> float:
    """Evidence in [0, 1] that the report is about the case's problem; 0: another problem.

    Categories are one source's filing and differ between sources for one incident, so they
    are evidence, not a gate: the concepts of the texts (config ``concepts``) and their
    wording (bigram Jaccard) count as much.  Two texts whose concepts are both known and
    disjoint are two problems, whatever the categories say.
    """
    mine, theirs = f.concepts, frozenset(case.get("concepts") or ())
    specific_mine, specific_theirs = mine - cfg.generic_concepts, theirs - cfg.generic_concepts
    if specific_mine and specific_theirs:
        mine, theirs = specific_mine, specific_theirs
    heads, case_heads = f.title_concepts - cfg.generic_concepts, frozenset(case.get("heads") or ())
    if heads and case_heads and not heads & case_heads and not mine <= theirs:
        # the title names a problem the case's titles do not, and the text adds one the case
        # does not know: a second problem found at the same place ("while handling the lift")
        return 0.0
    overlap = 0.0
    if mine and theirs:
        shared = mine & theirs
        if not shared:
            return 0.0
        overlap = len(shared) / min(len(mine), len(theirs))
        if heads and case_heads and not heads & case_heads:
            # the text touches the case's problem but the title names another: the weaker
            # candidate (a case whose titles name the same problem wins)
            overlap *= 0.5
    a, b = f.category, case["category"]
    if a == "other" or b == "other":
        cat = 0.0
    elif a == b:
        cat = cfg.category_only
    else:
        cat = cfg.category_only * cfg.compatibility(a, b)
    text = jaccard(f.shingles, frozenset(case.get("sh") or ())) if f.human and case.get("human") else 0.0
    evidence = max(overlap, cat, min(1.0, 3.0 * text))
    if not (mine and theirs) and cat == 0.0 and text < cfg.related_min_text_similarity:
        return 0.0  # nothing says it is the same problem
    return evidence


@dataclass(frozen=True)
class Score:
    value: float
    space: float
    text: float
    time: float
    category: float


def score(cfg: FusionConfig, case: dict[str, Any], f: Features) -> Score | None:
    """Rule 3: how well an open case explains the report, or None when it is no candidate."""
    if not is_open_for(case, f, cfg) or case["county"] != f.county:
        return None
    if not f.dispatchable or not case.get("dispatchable", True):
        # a consultation the hotline answered directly is its own record, never part of an incident
        return None
    both_sensors = not f.human and not case.get("human")
    if both_sensors:
        cat = cfg.compatibility(f.category, case["category"])
        if cat <= 0:
            return None
        window, radius = effective_limits(cfg, f.category, case["category"])
        # an alarm storm: several devices, one place, a short time
        window, radius = min(window, cfg.storm_window_ms), min(radius, cfg.storm_radius_m)
        gap = time_gap(case, f.t)
        if gap > window:
            return None
        space = spatial_score(cfg, case, f, radius)
        if space <= 0:
            return None
        tm = 1.0 - gap / window if window else 1.0
        w = cfg.sensor_weights
        return Score(value=cat * (w.space * space + w.time * tm), space=space, text=0.0, time=tm, category=cat)
    topic = topic_score(cfg, case, f)
    if topic <= 0:
        return None
    # The category of either side may be wrong: the looser window and radius of the two.
    rules = [cfg.rule(c) for c in (f.category, case["category"]) if c != "other"] or [cfg.rule("other")]
    window, radius = max(r.window_ms for r in rules), max(r.radius_m for r in rules)
    gap = time_gap(case, f.t)
    if gap > window:
        return None
    space = spatial_score(cfg, case, f, radius)
    same_reporter = bool(f.reporter) and f.reporter in (case.get("reporters") or ())
    if same_reporter and f.callback and (not f.towns or f.towns & set(case.get("streets") or ())):
        # "上午反映过工资的事情": the caller is talking about their own open report; where the
        # operator geocoded the second call is no evidence against it
        space = max(space, cfg.same_place)
    if space <= 0:
        return None
    tm = 1.0 - gap / window if window else 1.0
    w = cfg.human_weights if f.human and case.get("human") else cfg.sensor_weights
    value = w.space * space + w.text * topic + w.time * tm
    if same_reporter:
        value += cfg.same_reporter  # the same caller again: a callback
    elif f.callback:
        value += cfg.same_reporter / 2  # "上午打过电话": someone reported it already
    return Score(value=value, space=space, text=topic, time=tm, category=topic)


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
