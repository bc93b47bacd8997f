"""Device events go somewhere (issue 15): maintenance notices to the device's owner agency.

Ingest turns sensor ``fault``, ``low_battery`` and ``selftest`` documents, and
silence (``offline``, and ``online`` when a silent device's heartbeat returns),
into ``DeviceEvent`` records on ``device-events`` keyed by device id.  They are
not incidents (no fusion, no 141 case), but somebody has to change the
battery or fix the detector, so here each one becomes part of an open
**device case**, one per device and kind of trouble:

* the first ``offline`` (``fault``, ``low_battery``) opens the device case and
  dispatches it to the owner's agency (``deploy/device_owners.yaml``: the
  registry's ``owner`` name -> an agency, default the township platform);
* repeated reports of the same trouble while the case is open join it
  (``report_linked``), never a second dispatch: a device that drops off every
  night is one case, not thirty;
* the device talking again closes the case: any later event ends an
  ``offline`` case, a ``selftest`` ends a ``fault`` or ``low_battery`` case.

Pure: ``(state, event) -> (state, effects)``; the agent (``streams.routing.agents.route_devices``)
keeps ``state`` in its own table keyed by device id.  Ids are deterministic
(device, kind, opening event), so a redelivered event changes nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from gridhub.core.agencies import AgencyCatalog
from gridhub.core.yamlconf import ConfigError, line_of, load_yaml
from streams.routing.lifecycle import Effects, copy_state

TROUBLES = ("offline", "fault", "low_battery")
HEALTHY = ("online", "selftest")
LABEL = {"offline": "离线", "fault": "故障", "low_battery": "低电量"}
_NS = uuid.UUID("a4f1e2c3-5b6d-4e7f-8091-a2b3c4d5e6f7")  # gridhub device case ids (fixed forever)
_SEEN_KEEP = 100  # event ids remembered per device for redelivery dedupe; a device sends a few a day
#: 1 day to sign and 3 days to fix: a maintenance job, not an emergency (a smoke detector that is
#: offline is handled by its owner's property staff; the alarm path stays with fusion and routing).
SIGN_MS = 24 * 3_600_000
RESOLVE_MS = 3 * 24 * 3_600_000


@dataclass(frozen=True)
class OwnerRule:
    pattern: re.Pattern[str]
    agency: str


@dataclass(frozen=True)
class Owners:
    rules: tuple[OwnerRule, ...]
    default: str

    def agency_code(self, owner: str | None) -> str:
        for rule in self.rules:
            if owner and rule.pattern.search(owner):
                return rule.agency
        return self.default


def load_owners(path: Path, catalog: AgencyCatalog) -> Owners:
    """``deploy/device_owners.yaml``; :class:`ConfigError` with file:line for anything wrong."""
    doc = load_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("owners", []), list):
        raise ConfigError(path, None, "expected 'owners: [{match, agency}, ...]' and 'default'")

    def code(value: Any, line: int | None) -> str:
        if value == "town" or (isinstance(value, str) and value in catalog.codes):
            return str(value)
        raise ConfigError(path, line, f"unknown agency {value!r} (a code of agencies.yaml or 'town')")

    rules = []
    for i, raw in enumerate(doc.get("owners") or []):
        line = doc["owners"].line_of(i) if hasattr(doc["owners"], "line_of") else None
        if not isinstance(raw, dict) or not isinstance(raw.get("match"), str):
            raise ConfigError(path, line, "each owner rule needs 'match' (a regular expression) and 'agency'")
        try:
            pattern = re.compile(raw["match"])
        except re.error as exc:
            raise ConfigError(path, line, f"match: {exc}") from exc
        rules.append(OwnerRule(pattern, code(raw.get("agency"), line)))
    return Owners(tuple(rules), code(doc.get("default", "town"), line_of(doc, "default")))


def owners_beside(rules_path: Path, catalog: AgencyCatalog) -> Owners:
    """``device_owners.yaml`` next to the routing rules; without one, every device goes to its township.

    A rules file written elsewhere (tests, a shadow replay with edited rules) need not copy it.
    """
    path = Path(rules_path).parent / "device_owners.yaml"
    if not path.exists():
        from gridhub.core.logging import get_logger

        get_logger(__name__).warning("device_owners_missing", path=str(path), default="town")
        return Owners((), "town")
    return load_owners(path, catalog)


def device_case_id(device_id: str, kind: str, opened_by: str) -> str:
    return "D" + uuid.uuid5(_NS, f"{device_id}|{kind}|{opened_by}").hex


def _agency(owners: Owners, catalog: AgencyCatalog, ev: Mapping[str, Any]) -> str | None:
    county = ev.get("county_code") or (str(ev.get("street_code") or "")[:6] or None)
    if county is None or county not in catalog.counties:
        return None
    code = owners.agency_code(ev.get("owner"))
    if code == "town":
        street = ev.get("street_code")
        town = catalog.town(street) if street else None
        return town if town and catalog.exists(town) else catalog.centre(county)
    return catalog.county_agency(county, code)


def _case_event(case: Mapping[str, Any], event: str, ev: Mapping[str, Any], state: str,
                **detail: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid5(_NS, f"event|{case['case_id']}|{event}|{ev['event_id']}")),
        "case_id": case["case_id"], "county_code": case["county_code"], "event": event, "at": int(ev["at"]),
        "agency": case.get("agency"), "dispatch_id": case.get("dispatch_id"), "report_id": ev["event_id"],
        "state": state, "detail": json.dumps({"device_id": ev["device_id"], "device_event": ev["event_type"],
                                              "kind": case["kind"], **detail}, ensure_ascii=False, sort_keys=True),
    }


def _dispatch(case: Mapping[str, Any], ev: Mapping[str, Any], action: str = "dispatch") -> dict[str, Any]:
    return {
        "dispatchId": case["dispatch_id"], "caseId": case["case_id"], "agency": case["agency"],
        "countyCode": case["county_code"], "streetCode": ev.get("street_code"), "role": "lead",
        "reason": "device", "category": f"device_{case['kind']}", "severity": 1,
        "title": f"设备{LABEL[case['kind']]}：{ev['device_id']}",
        "description": ev.get("detail"), "address": ev.get("address"), "lng": None, "lat": None,
        "sources": ["sensors"], "reportCount": int(case.get("count", 1)), "reporterMasked": None,
        "dispatchedAt": int(case["opened_at"]), "signDeadline": int(case["opened_at"]) + SIGN_MS,
        "resolveDeadline": int(case["opened_at"]) + RESOLVE_MS, "escalationLevel": 0, "previousDispatchId": None,
        "action": action, "urgency": "一般", "orderNos": [], "eventIds": [], "photoUrls": [], "contactRelayId": None,
        "clock": "natural",
    }


def on_device_event(state: dict[str, Any] | None, ev: Mapping[str, Any], owners: Owners,
                    catalog: AgencyCatalog) -> tuple[dict[str, Any], Effects]:
    """Apply one DeviceEvent to the device's open cases."""
    state = copy_state(state) if state is not None else {"device_id": ev["device_id"], "open": {}, "seen": []}
    fx = Effects()
    if ev["event_id"] in state["seen"]:
        return state, fx
    state["seen"] = (state["seen"] + [ev["event_id"]])[-_SEEN_KEEP:]
    kind = str(ev["event_type"])
    open_cases: dict[str, Any] = state["open"]
    # the device is talking: an offline case ends; a self-test ends fault / low-battery cases too
    ending = [k for k in open_cases if k == "offline" and kind != "offline"
              or (kind == "selftest" and k in ("fault", "low_battery"))]
    for k in ending:
        case = open_cases.pop(k)
        fx.dispatches.append(_dispatch(case, ev, action="withdraw"))
        fx.events.append(_case_event(case, "closed", ev, "closed", reason=f"device {kind}"))
    if kind not in TROUBLES:
        return state, fx
    case = open_cases.get(kind)
    if case is not None:
        case["count"] = int(case.get("count", 1)) + 1
        case["last_at"] = int(ev["at"])
        fx.events.append(_case_event(case, "report_linked", ev, "dispatched", count=case["count"]))
        return state, fx
    agency = _agency(owners, catalog, ev)
    if agency is None:
        return state, fx  # no county: nobody to send it to (the fact still lands in device_events)
    case_id = device_case_id(str(ev["device_id"]), kind, str(ev["event_id"]))
    case = {"case_id": case_id, "kind": kind, "agency": agency, "county_code": agency.split(".")[0],
            "opened_at": int(ev["at"]), "last_at": int(ev["at"]), "count": 1,
            "dispatch_id": str(uuid.uuid5(_NS, f"dispatch|{case_id}|{agency}"))}
    open_cases[kind] = case
    fx.events.append(_case_event(case, "created", ev, "reported", owner=ev.get("owner")))
    fx.dispatches.append(_dispatch(case, ev))
    fx.events.append(_case_event(case, "dispatched", ev, "dispatched", role="lead", reason="device",
                                 resolve_deadline=case["opened_at"] + RESOLVE_MS))
    return state, fx
