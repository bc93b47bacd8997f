"""The fusion engine: one report (or lifecycle event) in, case updates out.

Pure with respect to the outside world: no Kafka, no clock, no randomness.
Everything it knows is in the :class:`~streams.fusion.state.KV` it is given
and in the records it is handed, so

* the same input sequence always gives the same output (case ids, event ids,
  versions), which is what makes redelivery harmless downstream, and
* the Faust agent, the evaluation command and the tests run the same code.

Time is *event* time (``occurred_at`` / ``reported_at``).  State is bounded by
an event-time watermark per county: cases leave state ``expire_after_last_seen``
after their last report, or ``expire_after_closed`` after routing closed them.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from streams.centre import fusion_hook as centre_hook
from streams.fusion import rules
from streams.fusion.config import FusionConfig
from streams.fusion.geo import cell_of, cells_within, haversine_m
from streams.fusion.rules import Features, Score
from streams.fusion.state import KV, JsonState
from streams.ingest.versioning import CYCLE_SHIFT, FINISHED_RANK, fingerprint, is_reopen, rank_of

#: uuid5 namespace of case ids (fixed forever: case ids are derived from it).
CASE_NAMESPACE = uuid.UUID("8a7c1d52-6f0e-5b8e-9a61-0f3b2c4d5e61")
_HOUR = 3_600_000
#: An update of the opening report that moves the case by more than this is a relocation, metres
#: (below it the source only refined its geocoding; 50 m is a fifth of the default radius).
RELOCATE_M = 50.0
#: Case.status values (schemas/avro/Case.avsc).
CASE_STATES = frozenset({"reported", "dispatched", "signed", "in_progress", "resolved", "reviewed", "closed"})
#: Index memberships per kind kept for one case (the opener's place plus a few refinements).
MAX_PLACES = 5


def case_id_for(report_id: str) -> str:
    """The id of the case a report opens: deterministic, so a replay opens the same case."""
    return "C" + uuid.uuid5(CASE_NAMESPACE, report_id).hex


def event_id_for(case_id: str, event: str, report_id: str | None, version: int) -> str:
    raw = f"{case_id}|{event}|{report_id or ''}|{version}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass
class FusionResult:
    """What one input produced: Case snapshots, CaseEvents and linked Reports (Avro dicts)."""

    cases: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    linked: list[dict[str, Any]] = field(default_factory=list)
    #: new_case | joined | updated | duplicate | stale | recovered | orphan_recover | lifecycle | ignored
    outcome: str = "ignored"
    score: Score | None = None
    expired: int = 0


class FusionEngine:
    def __init__(self, config: FusionConfig) -> None:
        self.cfg = config

    # --- public entry points ----------------------------------------------------------------

    def process_report(self, kv: KV, report: dict[str, Any]) -> FusionResult:
        """Link one Report (Avro dict) to a case. Raises ValueError on a report it cannot use."""
        if report.get("kind") not in ("incident", "recover"):
            raise ValueError(f"unknown report kind {report.get('kind')!r}")
        for name in ("report_id", "source", "source_ref", "county_code", "reported_at", "version"):
            if report.get(name) in (None, ""):
                raise ValueError(f"report without {name}")
        st = JsonState(kv)
        f = rules.features(report, self.cfg)
        result = FusionResult()
        result.expired = self._advance_watermark(st, f.county, min(f.t, int(report.get("received_at") or f.t)))
        skey = f"s:{report['source']}|{report['source_ref']}"
        entry = st.get(skey)
        fp = fingerprint(report)
        report = {**report, "version": self._effective_version(entry, report)}
        kind = rules.same_record(entry, int(report["version"]), fp)
        if kind != "new":
            assert entry is not None
            return self._known_record(st, skey, entry, kind, report, f, result, fp)
        if f.kind == "recover":
            return self._recover(st, skey, report, f, result)
        case: dict[str, Any] | None = None
        recovering = False
        own = st.get(f"c:{case_id_for(f.report_id)}")
        if own is not None and f.report_id in own["report_ids"]:
            # A crash interrupted this very report after its case was written: finish that link.
            case, recovering = own, True
        elif f.device_id:
            device_case = self._device_case(st, f)
            if device_case is not None and rules.device_joins(self.cfg, device_case, f):
                case = device_case
        if case is None:
            found = rules.best_candidate(self.cfg, self._candidates(st, f), f)
            if found is not None:
                case, result.score = found
        if case is None:
            case = self._new_case(report, f)
            result.outcome, events = "new_case", ["created"]
        elif recovering:
            result.outcome, events = "new_case", ["created"]
        elif f.report_id in case["report_ids"]:
            result.outcome, events = "joined", ["report_linked"]  # crash-interrupted join
        else:
            result.outcome, events = "joined", self._join(case, report, f)
        self._link(st, skey, case, report, f, events, result)
        return result

    def process_lifecycle(self, kv: KV, event: dict[str, Any]) -> FusionResult:
        """Routing announced a state change: resolved / closed stop reports joining, reopened resumes.

        Any ``CaseEvent`` on ``case-lifecycle`` is applied by its ``state`` (the case state
        after the event; for ``reopened`` without a state, ``in_progress``), so when routing
        also announces dispatched / signed / in_progress there, ``Case.status`` follows.  An
        event older than the last one applied changes nothing (delivery order is not event order).
        """
        st = JsonState(kv)
        result = FusionResult()
        if centre_hook.apply(self, st, event, result):  # issue 15: the county centre's merge / split / category
            return result
        name = str(event.get("event") or "")
        case = st.get(f"c:{event.get('case_id')}")
        state = event.get("state") or {"reopened": "in_progress"}.get(name, name)
        if case is None or state not in CASE_STATES:
            return result
        at = int(event["at"])
        if at < int(case.get("status_at") or 0):
            return result
        closed_at = at if state in rules.CLOSED_STATES else None
        if case["status"] == state and case.get("closed_at") == closed_at:
            return result  # redelivered: nothing changes
        case["status"] = state
        case["status_at"] = at
        case["closed_at"] = closed_at
        case["version"] += 1
        case["updated_at"] = max(int(case["updated_at"]), at)
        self._put_case(st, case)
        if closed_at is not None:
            self._schedule(st, case["county"], f"c:{case['case_id']}", closed_at + self.cfg.expire_after_closed_ms)
        result.cases.append(to_case_record(case))
        result.outcome = "lifecycle"
        return result

    # --- rule 1: known source records ---------------------------------------------------------

    def _effective_version(self, entry: dict[str, Any] | None, report: dict[str, Any]) -> int:
        """The report's version with the record's re-opening cycles above it.

        A finished 12345 order (已办结 or later) that a later document explicitly re-opens
        (重新办理 ...) starts a new cycle: its versions rank above every version of the
        previous cycle, so the re-opened order's 办理中 is newer than the old 已回访.
        """
        version = int(report["version"])
        cycle = int(entry.get("cyc", 0)) if entry else 0
        if entry and is_reopen(report.get("status")) and rank_of(int(entry["v"])) >= FINISHED_RANK \
                and int(entry["v"]) >> CYCLE_SHIFT == cycle:
            cycle += 1
        return (cycle << CYCLE_SHIFT) | version

    def _known_record(self, st: JsonState, skey: str, entry: dict[str, Any], kind: str,
                      report: dict[str, Any], f: Features, result: FusionResult, fp: str) -> FusionResult:
        case_id = centre_hook.follow(st, entry.get("case"))  # issue 15: a merged case lives on in its target
        case = st.get(f"c:{case_id}") if case_id else None
        result.outcome = kind
        if kind == "update" and case is not None:
            events = self._update(case, report, f, entry)
            self._link(st, skey, case, report, f, events, result, fp)
            return result
        if kind == "update":
            # the case already left fusion state (or it was an orphan recover): remember the version
            st.set(skey, {**entry, "v": int(report["version"]), "fp": fp, "ra": report.get("received_at"),
                          "cyc": int(report["version"]) >> CYCLE_SHIFT})
        if kind == "stale":
            return result  # an older state of the record: it changes nothing and is not re-emitted
        if case_id:
            # the record as first emitted: same version and receipt time, so the same rows / ids
            first = {**report, "version": int(entry["v"]), "received_at": entry.get("ra", report["received_at"])}
            if kind == "duplicate" and case is not None:
                # Redelivery, possibly after a crash lost the first outputs: emit them again,
                # with the same ids, so every consumer ends up with them exactly once.
                result.cases.append(to_case_record(case))
                # (not when the county centre moved the record: its events belong to the old case)
                for name in entry.get("ev", []) if case_id == entry.get("case") else ():
                    result.events.append(self._event(case, name, first))
            result.linked.append({**(first if kind == "duplicate" else report), "case_id": case_id})
        return result

    # --- rule 2: sensors ----------------------------------------------------------------------

    def _device_case(self, st: JsonState, f: Features) -> dict[str, Any] | None:
        case_id = st.get(f"d:{f.county}:{f.device_id}")
        return st.get(f"c:{case_id}") if case_id else None

    def _recover(self, st: JsonState, skey: str, report: dict[str, Any], f: Features,
                 result: FusionResult) -> FusionResult:
        case = self._device_case(st, f) if f.device_id else None
        if case is None or not rules.recover_target(case, f, self.cfg):
            result.outcome = "orphan_recover"
            st.set(skey, {"case": None, "v": int(report["version"]), "rid": f.report_id, "ev": [],
                          "fp": fingerprint(report), "ra": report.get("received_at")})
            self._schedule(st, f.county, skey, f.t + self.cfg.expire_after_last_seen_ms)
            return result
        recovered = case.setdefault("recovered", {})
        recovered[f.device_id or ""] = max(f.t, int(recovered.get(f.device_id or "", 0)))
        self._add_report(case, report, f)
        result.outcome = "recovered"
        self._link(st, skey, case, report, f, ["recovered"], result)
        return result

    # --- rule 3: candidates ------------------------------------------------------------------

    def _candidates(self, st: JsonState, f: Features) -> list[dict[str, Any]]:
        ids: list[str] = []
        if f.has_coords:
            assert f.lat is not None and f.lng is not None
            radius = self.cfg.rule(f.category).radius_m if f.category != "other" else self.cfg.max_radius_m()
            for cx, cy in cells_within(f.lat, f.lng, radius, self.cfg.cell_m):
                ids.extend(st.get(f"g:{f.county}:{cx}:{cy}") or ())
            for town in sorted(f.towns):
                ids.extend(st.get(f"n:{f.county}:{town}") or ())
        else:
            for town in sorted(f.towns):
                ids.extend(st.get(f"t:{f.county}:{town}") or ())
        if f.addr_full:
            ids.extend(st.get(f"a:{f.county}:{f.addr_full}") or ())
        for road in sorted(f.roads | ({f.addr_road} if f.addr_road else set())):
            ids.extend(st.get(f"r:{f.county}:{road}") or ())
        for place in sorted(f.places):
            ids.extend(st.get(f"p:{f.county}:{place}") or ())
        for village in sorted(f.villages):
            ids.extend(st.get(f"v:{f.county}:{village}") or ())
        if f.reporter:
            # the caller's own open cases: a callback may be geocoded anywhere
            ids.extend(st.get(f"h:{f.county}:{f.reporter}") or ())
        seen: set[str] = set()
        cases: list[dict[str, Any]] = []
        for case_id in ids:
            if case_id in seen:
                continue
            seen.add(case_id)
            case = st.get(f"c:{case_id}")
            # The device rule is authoritative for the device's own cases.
            if case is not None and not (f.device_id and f.device_id in case["device_ids"]):
                cases.append(case)
        return cases

    # --- case state ---------------------------------------------------------------------------

    def _new_case(self, report: dict[str, Any], f: Features) -> dict[str, Any]:
        case: dict[str, Any] = {
            "case_id": case_id_for(f.report_id), "county": f.county, "street": f.street,
            "category": f.category, "title": report.get("title"), "address": report.get("address"),
            "lat": f.lat, "lng": f.lng, "n_geo": 1 if f.has_coords else 0,
            "severity": int(report.get("severity") or 1), "sources": [], "report_ids": [], "report_count": 0,
            "first_seen": f.t, "last_seen": f.t, "status": "reported",
            "dispatchable": bool(report.get("dispatchable", True)), "device_ids": [], "version": 0,
            "updated_at": f.t, "opener": f.report_id, "human": f.human, "sh": [],
            "fulls": [], "roads": [], "places": [], "streets": [], "recovered": {}, "closed_at": None, "idx": [],
            "vills": [], "shops": [], "concepts": [], "reporters": [], "src_closed_at": None,
            "historical": bool(report.get("historical", False)),  # issue 15: backfill, never dispatched
        }
        self._add_report(case, report, f)
        return case

    def _add_report(self, case: dict[str, Any], report: dict[str, Any], f: Features) -> None:
        if f.report_id not in case["report_ids"]:
            case["report_count"] += 1
            if len(case["report_ids"]) < self.cfg.max_report_ids:
                case["report_ids"].append(f.report_id)
        if report["source"] not in case["sources"]:
            case["sources"].append(report["source"])
        if f.device_id and f.device_id not in case["device_ids"] and len(case["device_ids"]) < self.cfg.max_report_ids:
            case["device_ids"].append(f.device_id)
        case["first_seen"] = min(int(case["first_seen"]), f.t)
        case["last_seen"] = max(int(case["last_seen"]), f.t)
        case["severity"] = max(int(case["severity"]), int(report.get("severity") or 1))
        case["dispatchable"] = bool(case["dispatchable"]) or bool(report.get("dispatchable", True))
        case["updated_at"] = max(int(case["updated_at"]), f.t)
        case["human"] = bool(case["human"]) or f.human
        case["historical"] = bool(case.get("historical", False)) and bool(report.get("historical", False))
        if f.shingles and len(case["sh"]) < self.cfg.max_shingles:
            known = set(case["sh"])
            case["sh"].extend(sorted(f.shingles - known)[: self.cfg.max_shingles - len(case["sh"])])
        for name, value in (("fulls", f.addr_full), ("roads", f.addr_road), ("streets", f.street)):
            if value and value not in case[name] and len(case[name]) < MAX_PLACES:
                case[name].append(value)
        for place in sorted(f.places):
            if place not in case["places"] and len(case["places"]) < 2 * MAX_PLACES:
                case["places"].append(place)
        for name, values in (("roads", f.roads), ("aroads", f.addr_roads), ("avills", f.addr_villages), ("aplaces", f.addr_places),
                             ("heads", f.title_concepts - self.cfg.generic_concepts), ("streets", f.towns), ("vills", f.villages), ("shops", f.shops),
                             ("concepts", f.concepts), ("reporters", {f.reporter} if f.reporter else set())):
            have = case.setdefault(name, [])
            for value in sorted(values):
                if value not in have and len(have) < 2 * MAX_PLACES:
                    have.append(value)
        if f.closing and f.human and case.get("src_closed_at") is None:
            # a source says the problem was handled: later reports are a new incident
            case["src_closed_at"] = int(report.get("received_at") or f.t)
        if f.reviewed and f.human and case.get("src_reviewed_at") is None:
            case["src_reviewed_at"] = int(report.get("received_at") or f.t)
        if case["street"] is None and f.street:
            case["street"] = f.street
        if case["address"] is None and report.get("address"):
            case["address"] = report.get("address")
        if f.has_coords and f.kind == "incident":
            n = int(case["n_geo"])
            if case["lat"] is None or n == 0:
                case["lat"], case["lng"], case["n_geo"] = f.lat, f.lng, 1
            elif case["opener"] != f.report_id:
                # running centroid of the located reports
                case["lat"] = (float(case["lat"]) * n + float(f.lat or 0)) / (n + 1)
                case["lng"] = (float(case["lng"]) * n + float(f.lng or 0)) / (n + 1)
                case["n_geo"] = n + 1

    def _join(self, case: dict[str, Any], report: dict[str, Any], f: Features) -> list[str]:
        events = ["report_linked"]
        if case["category"] == "other" and f.category != "other" and "category" not in case.get("pinned", {}):
            case["category"] = f.category  # a classified report refines an unclassified case
            events.append("recategorised")
        self._add_report(case, report, f)
        return events

    def _update(self, case: dict[str, Any], report: dict[str, Any], f: Features, entry: dict[str, Any]) -> list[str]:
        """Rule 1: a newer version of a known record updates its case, never opens one."""
        events = ["report_updated"]
        if case["opener"] == f.report_id:
            if f.category != case["category"] and f.category != "other" and "category" not in case.get("pinned", {}):
                case["category"] = f.category
                events.append("recategorised")
            moved = f.street is not None and f.street != case["street"]
            if f.has_coords and case["lat"] is not None and case["n_geo"] <= 1:
                assert f.lat is not None and f.lng is not None
                moved = moved or haversine_m(lat1=f.lat, lng1=f.lng,
                                                  lat2=float(case["lat"]), lng2=float(case["lng"])) > RELOCATE_M
            if f.addr_full and case["fulls"] and f.addr_full != case["fulls"][0]:
                moved = True
            if moved:
                case["street"] = f.street or case["street"]
                if f.has_coords and case["n_geo"] <= 1:
                    case["lat"], case["lng"], case["n_geo"] = f.lat, f.lng, 1
                for name, value in (("fulls", f.addr_full), ("roads", f.addr_road), ("streets", f.street)):
                    if value:
                        case[name] = [value] + [v for v in case[name] if v != value][: MAX_PLACES - 1]
                case["address"] = report.get("address") or case["address"]
                events.append("relocated")
            if report.get("title"):
                case["title"] = report["title"]
        self._add_report(case, report, f)
        return events

    def _put_case(self, st: JsonState, case: dict[str, Any]) -> None:
        st.set(f"c:{case['case_id']}", case)

    def _index_keys(self, case: dict[str, Any]) -> list[str]:
        county = case["county"]
        keys: list[str] = []
        if case["lat"] is not None:
            cx, cy = cell_of(float(case["lat"]), float(case["lng"]), self.cfg.cell_m)
            keys.append(f"g:{county}:{cx}:{cy}")
        keys += [f"a:{county}:{v}" for v in case["fulls"]]
        keys += [f"r:{county}:{v}" for v in case["roads"]]
        keys += [f"p:{county}:{v}" for v in case["places"]]
        keys += [f"t:{county}:{v}" for v in case["streets"]]
        keys += [f"v:{county}:{v}" for v in case.get("vills") or ()]
        keys += [f"h:{county}:{v}" for v in case.get("reporters") or ()]
        if case["lat"] is None:
            keys += [f"n:{county}:{v}" for v in case["streets"]]
        return keys

    def _link(self, st: JsonState, skey: str, case: dict[str, Any], report: dict[str, Any], f: Features,
              events: list[str], result: FusionResult, fp: str | None = None) -> None:
        """Write expiry, new index entries, device, case, stale-index removals, then the
        (source, source_ref) entry; emit the outputs.

        The order matters after a crash (see ``state``): every prefix of these writes leaves a
        state in which the redelivered report makes the same decision.  An index entry or a
        device entry whose case is missing or stale is harmless (the search re-reads the case);
        an index entry must never be *removed* before the case state that no longer needs it is
        written; a recovered case that already lists the report (source entry missing) makes
        the redelivered report finish the same link, never a second one.
        """
        if case["version"] == 0:
            self._schedule(st, case["county"], f"c:{case['case_id']}",
                           int(case["last_seen"]) + self.cfg.expire_after_last_seen_ms)
        case["version"] += 1
        old_idx, new_idx = list(case["idx"]), self._index_keys(case)
        for key in new_idx:
            if key not in old_idx:
                st.list_add(key, case["case_id"])
        if f.device_id and f.kind == "incident":
            st.set(f"d:{f.county}:{f.device_id}", case["case_id"])
        case["idx"] = new_idx
        self._put_case(st, case)
        for key in old_idx:
            if key not in new_idx:
                st.list_remove(key, case["case_id"])
        if events[0] != "report_updated":  # a first delivery: the entry lives 7 days of event time
            self._schedule(st, f.county, skey, f.t + self.cfg.expire_after_last_seen_ms)
        st.set(skey, {"case": case["case_id"], "v": int(report["version"]), "rid": f.report_id, "ev": events,
                      "fp": fp or fingerprint(report), "ra": report.get("received_at"),
                      "cyc": int(report["version"]) >> CYCLE_SHIFT})
        result.cases.append(to_case_record(case))
        result.events.extend(self._event(case, name, report) for name in events)
        result.linked.append({**report, "case_id": case["case_id"]})

    def _event(self, case: dict[str, Any], name: str, report: dict[str, Any]) -> dict[str, Any]:
        detail = {"source": report["source"], "source_ref": report["source_ref"], "category": case["category"]}
        return {
            "event_id": event_id_for(case["case_id"], name, report["report_id"], int(report["version"])),
            "case_id": case["case_id"], "county_code": case["county"], "event": name,
            "at": rules.event_time(report), "agency": None, "dispatch_id": None,
            "report_id": report["report_id"], "state": case["status"],
            "detail": json.dumps(detail, ensure_ascii=False, sort_keys=True),
        }

    # --- bounded state ------------------------------------------------------------------------

    def _schedule(self, st: JsonState, county: str, entry: str, at: int) -> None:
        wm = st.get(f"w:{county}") or {}
        hour = max(at // _HOUR, int(wm.get("swept", -1)) + 1)
        st.list_add(f"x:{county}:{hour}", entry)

    def _advance_watermark(self, st: JsonState, county: str, t: int) -> int:
        """Move the county's event-time watermark to ``t`` and expire what fell behind it."""
        wkey = f"w:{county}"
        wm = st.get(wkey)
        if wm is None:
            st.set(wkey, {"wm": t, "swept": t // _HOUR - 1})
            return 0
        if t <= int(wm["wm"]):
            return 0
        wm["wm"] = t
        first, last = int(wm["swept"]) + 1, t // _HOUR - 1  # every bucket of a fully past hour
        wm["swept"] = max(int(wm["swept"]), last)
        st.set(wkey, wm)  # first, so that a re-schedule below lands in a later bucket
        expired = 0
        for hour in range(first, last + 1):
            bucket = f"x:{county}:{hour}"
            for entry in st.get(bucket) or ():
                expired += self._expire(st, county, entry, t)
            st.delete(bucket)
        return expired

    def _expire(self, st: JsonState, county: str, entry: str, now: int) -> int:
        if entry.startswith("s:"):
            st.delete(entry)
            return 0
        case = st.get(entry)
        if case is None:
            return 0
        if case.get("closed_at") is not None:
            due = int(case["closed_at"]) + self.cfg.expire_after_closed_ms
        else:
            due = int(case["last_seen"]) + self.cfg.expire_after_last_seen_ms
        if due > now:
            self._schedule(st, county, entry, due)
            return 0
        for key in case["idx"]:
            st.list_remove(key, case["case_id"])
        for device in case["device_ids"]:
            dkey = f"d:{county}:{device}"
            if st.get(dkey) == case["case_id"]:
                st.delete(dkey)
        st.delete(entry)
        return 1


_CASE_FIELDS = ("case_id", "county_code", "street_code", "category", "title", "address", "lng", "lat", "severity",
                "sources", "report_ids", "report_count", "first_seen", "last_seen", "status", "dispatchable",
                "device_ids", "version", "updated_at")


def to_case_record(case: dict[str, Any]) -> dict[str, Any]:
    """The Avro ``Case`` of a case state."""
    return {
        "case_id": case["case_id"], "county_code": case["county"], "street_code": case["street"],
        "category": case["category"], "title": case["title"], "address": case["address"],
        "lng": case["lng"], "lat": case["lat"], "severity": int(case["severity"]),
        "sources": list(case["sources"]), "report_ids": list(case["report_ids"]),
        "report_count": int(case["report_count"]), "first_seen": int(case["first_seen"]),
        "last_seen": int(case["last_seen"]), "status": case["status"], "dispatchable": bool(case["dispatchable"]),
        "device_ids": list(case["device_ids"]), "version": int(case["version"]), "updated_at": int(case["updated_at"]),
        "historical": bool(case.get("historical", False)),
    }
