"""Fusion's side of the county centre's actions: merged cases never come apart, split reports never rejoin.

Routing announces the centre's decisions on ``case-lifecycle`` (keyed by
county code, so they meet the county's reports in fusion's partition, in
order): ``merged`` (detail ``into``), ``split`` (``report_id``,
``new_case_id``, ``source``/``source_ref`` and the new case's category and
place) and ``recategorised`` (``after``: category / township / place).
:func:`apply` is the one hook :class:`streams.fusion.engine.FusionEngine`
consults first for those events; :func:`follow` is consulted when a known
source record comes back (rule 1), so an update of a report of a merged
case lands in the case it was merged into.  Keys it writes in the fusion
state (``streams/fusion/state.py`` key scheme): ``m:<case>`` -> the case it
was merged into.
"""

from __future__ import annotations

import json
from typing import Any

CENTRE_EVENTS = frozenset({"merged", "split", "recategorised"})
_MAX_HOPS = 8  # a chain of merges longer than this is a loop in the data, not a real history


def follow(st: Any, case_id: str | None) -> str | None:
    """The case a (possibly merged) case id lives on in now."""
    for _ in range(_MAX_HOPS):
        if not case_id:
            return case_id
        target = st.get(f"m:{case_id}")
        if not target:
            return case_id
        case_id = str(target)
    return case_id


def _bump(case: dict[str, Any], at: int) -> None:
    case["version"] = int(case["version"]) + 1
    case["updated_at"] = max(int(case["updated_at"]), at)


def apply(engine: Any, st: Any, event: dict[str, Any], result: Any) -> bool:
    """Apply one centre event; False when ``event`` is not one (the engine carries on as before)."""
    from streams.fusion.engine import case_id_for, to_case_record

    name = str(event.get("event") or "")
    if name not in CENTRE_EVENTS:
        return False
    detail = json.loads(event.get("detail") or "{}")
    at = int(event["at"])
    result.outcome = "lifecycle"
    key = f"c:{event.get('case_id')}"
    case = st.get(key)
    if case is None:
        return True  # the case left fusion state already: nothing to respect any more
    marker = f"{name}:{detail.get('command_id')}"
    if marker in case.get("centre", []):
        return True  # redelivered
    case["centre"] = (list(case.get("centre", [])) + [marker])[-20:]
    if name == "recategorised":
        after = detail.get("after") or {}
        pins = case.setdefault("pinned", {})
        if after.get("category"):
            case["category"] = pins["category"] = after["category"]
        if after.get("street_code"):
            case["street"] = pins["street"] = after["street_code"]
        for field in ("address", "lng", "lat"):
            if after.get(field) is not None:
                case[field] = after[field]
    elif name == "merged":
        into = str(detail.get("into") or "")
        target = st.get(f"c:{into}")
        st.set(f"m:{case['case_id']}", into)
        case["status"], case["closed_at"], case["status_at"] = "closed", at, at
        if target is not None and target["county"] == case["county"]:
            for rid in case["report_ids"]:
                if rid not in target["report_ids"]:
                    target["report_ids"].append(rid)
            target["report_count"] = int(target["report_count"]) + int(case["report_count"])
            for field in ("sources", "device_ids"):
                target[field] = list(dict.fromkeys(list(target[field]) + list(case[field])))
            target["first_seen"] = min(int(target["first_seen"]), int(case["first_seen"]))
            target["last_seen"] = max(int(target["last_seen"]), int(case["last_seen"]))
            target["severity"] = max(int(target["severity"]), int(case["severity"]))
            _bump(target, at)
            engine._put_case(st, target)
            result.cases.append(to_case_record(target))
    elif name == "split":
        report_id = str(detail.get("report_id") or event.get("report_id") or "")
        new_id = str(detail.get("new_case_id") or case_id_for(report_id))
        if report_id in case["report_ids"]:
            case["report_ids"].remove(report_id)
            case["report_count"] = max(0, int(case["report_count"]) - 1)
        new = dict(case, case_id=new_id, report_ids=[report_id], report_count=1, version=0, status="reported",
                   status_at=at, closed_at=None, first_seen=at, last_seen=at, updated_at=at, opener=report_id,
                   idx=[], centre=[], sh=[], fulls=[], roads=[], places=[], streets=[], recovered={}, device_ids=[],
                   sources=[detail["source"]] if detail.get("source") else list(case["sources"]), pinned={})
        if detail.get("category"):
            new["category"] = new["pinned"]["category"] = detail["category"]
        if detail.get("streetCode"):
            new["street"] = new["pinned"]["street"] = detail["streetCode"]
        for field in ("address", "lng", "lat"):
            if detail.get(field) is not None:
                new[field] = detail[field]
        _bump(new, at)
        engine._put_case(st, new)
        if detail.get("source") and detail.get("source_ref"):
            skey = f"s:{detail['source']}|{detail['source_ref']}"
            entry = st.get(skey) or {"v": 0, "rid": report_id, "ev": []}
            st.set(skey, {**entry, "case": new_id, "ev": []})  # a later version of the record joins the new case
        result.cases.append(to_case_record(new))
        result.events.append({
            "event_id": f"{new_id}-split", "case_id": new_id, "county_code": new["county"], "event": "created",
            "at": at, "agency": None, "dispatch_id": None, "report_id": report_id, "state": "reported",
            "detail": json.dumps({"split_from": case["case_id"], "operator": detail.get("operator"),
                                  "reason": detail.get("reason")}, ensure_ascii=False, sort_keys=True)})
    _bump(case, at)
    engine._put_case(st, case)
    result.cases.insert(0, to_case_record(case))
    return True
