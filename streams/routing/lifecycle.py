"""The closed loop as pure functions: ``(state, input) -> (state, effects)``.

One JSON-able ``state`` per case (the Faust table value) holds what was
dispatched to whom, the two clocks (``opened_at`` for the whole case,
``state_entered_at`` for the current state, as eGov DIGIT PGR keeps them)
and every deadline, so that the stream agent only decodes input, calls one
of :func:`on_case`, :func:`on_feedback`, :func:`on_review`, :func:`on_tick`
and produces the returned effects.  Nothing here touches Kafka or the wall
clock: time is always an argument, so replaying the same inputs gives the
same dispatch ids, event ids and deadlines.

Case states: reported -> dispatched -> signed -> in_progress -> resolved ->
reviewed -> closed.  The case state follows its *lead* dispatch; assisting
and supervising (督办) dispatches are recorded per dispatch.

Illegal feedback raises :class:`Rejected` and leaves the state untouched;
the agent dead-letters the original bytes with the reason.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

import orjson

from gridhub.core.errors import Rejected
from gridhub.core.topics import FEEDBACK_ACTIONS
from gridhub.core.yamlconf import format_duration_ms
from gridhub.core.pii import mask_text
from streams.routing import businesstime as bt
from streams.routing import status as st
from streams.routing.rules import Assignment, RuleSet

ACTIONS = FEEDBACK_ACTIONS
OPEN_STATES = ("dispatched", "signed", "in_progress")
FINISHED_STATES = ("resolved", "reviewed", "closed")
ACTIVE_DISPATCH = ("dispatched", "signed", "in_progress")
ESCALATION = "escalation"
UNSATISFIED = "不满意"  # the 12345 回访 answer that reopens a case (review.reopen_unsatisfied)
CENTRE_REASON = "centre"  # Dispatch.reason of an agency the county centre assigned by hand (issue 15)
_NS = uuid.UUID("5f0c6a52-6a1e-4c38-9f7e-2a5b1d0c9e41")  # gridhub routing ids (fixed forever: ids must not change)
_APPLIED_KEEP = 50  # feedback keys remembered per dispatch for redelivery dedupe; agencies send a handful


@dataclass
class Effects:
    """What one transition produces, in order."""

    dispatches: list[dict[str, Any]] = field(default_factory=list)  # Avro Dispatch records
    events: list[dict[str, Any]] = field(default_factory=list)  # Avro CaseEvent records for case-events
    lifecycle: list[dict[str, Any]] = field(default_factory=list)  # Avro CaseEvent records for case-lifecycle
    status: list[dict[str, Any]] = field(default_factory=list)  # JSON replies for status.<source> (status.py)
    commands: list[dict[str, Any]] = field(default_factory=list)  # JSON follow-ups for case-commands (centre.py)

    def __bool__(self) -> bool:
        return bool(self.dispatches or self.events or self.lifecycle or self.status or self.commands)

    def as_doc(self) -> dict[str, list[dict[str, Any]]]:
        """The lists as a document for the state's outbox, not copied: the caller encodes the state at
        once (``dataclasses.asdict`` deep-copied every record, most of the outbox's cost)."""
        return {"dispatches": list(self.dispatches), "events": list(self.events), "lifecycle": list(self.lifecycle),
                "status": list(self.status), "commands": list(self.commands)}


def encode_state(state: Mapping[str, Any]) -> bytes:
    """A state as the routing tables hold it: compact UTF-8 JSON, as ``json.dumps(ensure_ascii=False,
    separators=(",", ":"))`` wrote it before (byte for byte on every routing state ``gridhub bench json``
    tried), at about a third of its CPU; the old and the new bytes decode alike, so a changelog written
    by either stays readable."""
    return orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS)


def decode_state(raw: bytes | None) -> dict[str, Any] | None:
    return orjson.loads(raw) if raw else None


def copy_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a state, as the table would give it back: the transitions stay pure (the caller's
    state is never changed).  A state is JSON (the table holds it encoded), so the table's own round trip
    is the copy; it took a third of ``copy.deepcopy``'s time on routing states (docs/benchmarks.md)."""
    return orjson.loads(encode_state(state))


# --------------------------------------------------------------------------- ids
def dispatch_id(case_id: str, agency: str, slot: str, generation: int) -> str:
    """Deterministic: a replayed or redelivered case gets the same id (the agencies' idempotency key)."""
    return str(uuid.uuid5(_NS, f"dispatch|{case_id}|{agency}|{slot}|{generation}"))


def event_id(case_id: str, event: str, dispatch: str | None, discriminator: str = "") -> str:
    return str(uuid.uuid5(_NS, f"event|{case_id}|{event}|{dispatch or ''}|{discriminator}"))


# --------------------------------------------------------------------------- feedback parsing
def _to_ms(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise Rejected(f"malformed feedback: {what} must be epoch milliseconds or ISO-8601")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):  # JSON NaN / Infinity (Python's json accepts them)
            raise Rejected(f"malformed feedback: {what} must be a finite number")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            try:
                if parsed.tzinfo is None:  # no zone: Beijing time, as the 12345 feed writes it
                    parsed = parsed.replace(tzinfo=timezone.utc) - (datetime(2000, 1, 1, 8) - datetime(2000, 1, 1))
                return int(parsed.timestamp() * 1000)
            except (OverflowError, ValueError):  # year 1 minus 8 h, and other ends of the calendar
                raise Rejected(f"malformed feedback: {what} is out of range: {value!r}") from None
    raise Rejected(f"malformed feedback: {what} must be epoch milliseconds or ISO-8601, got {value!r}")


def parse_feedback(value: bytes) -> dict[str, Any]:
    """JSON ``{dispatchId, caseId, agency, action, time, note, deadline?}`` or Avro ``Feedback`` (C3 01 marker)."""
    from gridhub.core.codec import MAGIC, DecodeError, codec

    if value[:2] == MAGIC:
        try:
            doc: Any = codec("Feedback").decode(value)
        except DecodeError as exc:
            raise Rejected(f"malformed feedback: {exc}") from exc
    else:
        try:
            doc = json.loads(value.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise Rejected(f"malformed feedback: not JSON ({exc.__class__.__name__})") from exc
    if not isinstance(doc, dict):
        raise Rejected("malformed feedback: expected a JSON object")
    out: dict[str, Any] = {}
    for name in ("dispatchId", "caseId", "agency", "action"):
        v = doc.get(name)
        if not isinstance(v, str) or not v:
            raise Rejected(f"malformed feedback: '{name}' is required (a non-empty string)")
        out[name] = v
    if out["action"] not in ACTIONS:
        raise Rejected(f"malformed feedback: unknown action {out['action']!r} (one of {', '.join(ACTIONS)})")
    if doc.get("time") is None:
        raise Rejected("malformed feedback: 'time' is required")
    out["time"] = _to_ms(doc["time"], "time")
    note = doc.get("note")
    if note is not None and not isinstance(note, str):
        raise Rejected("malformed feedback: 'note' must be a string")
    out["note"] = note
    out["deadline"] = _to_ms(doc["deadline"], "deadline") if doc.get("deadline") is not None else None
    if out["action"] == "extend" and out["deadline"] is None:
        raise Rejected("malformed feedback: an extend needs 'deadline' (the new 办结 deadline)")
    if out["action"] == "return" and not (note or "").strip():
        raise Rejected("malformed feedback: a return (退单) needs 'note' giving the reason")
    return out


# --------------------------------------------------------------------------- helpers
def _case_view(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: state.get(k) for k in ("category", "county_code", "street_code", "sources", "severity")}


def _ages(state: Mapping[str, Any], at: int) -> dict[str, int]:
    """The two clocks: age of the case, and time spent in the state the event found the case in."""
    since = state["state_entered_at"]
    if state.get("status_changed_at") == at and state.get("prev_entered_at") is not None:
        since = state["prev_entered_at"]  # this event moved the case: report the state it left
    return {"case_age_ms": max(0, at - int(state["opened_at"])), "state_age_ms": max(0, at - int(since))}


def _event(state: Mapping[str, Any], event: str, at: int, *, agency: str | None = None,
           dispatch: str | None = None, discriminator: str = "", detail: Mapping[str, Any] | None = None,
           report_id: str | None = None) -> dict[str, Any]:
    body = dict(detail or {})
    body.update(_ages(state, at))
    return {
        "event_id": event_id(state["case_id"], event, dispatch, discriminator),
        "case_id": state["case_id"],
        "county_code": state["county_code"],
        "event": event,
        "at": at,
        "agency": agency,
        "dispatch_id": dispatch,
        "report_id": report_id,
        "state": state["status"],
        "detail": json.dumps(body, ensure_ascii=False, sort_keys=True),
    }


def _set_status(state: dict[str, Any], status: str, at: int) -> None:
    if state["status"] != status:
        if state.get("status_changed_at") != at:
            state["prev_entered_at"] = state["state_entered_at"]
        state["status"] = status
        state["state_entered_at"] = at
        state["status_changed_at"] = at


def dispatch_record(state: Mapping[str, Any], did: str, action: str = "dispatch") -> dict[str, Any]:
    """The Avro ``Dispatch`` for dispatch ``did``. A Case carries no personal data, so neither does this."""
    d = state["dispatches"][did]
    return {
        "dispatchId": did,
        "caseId": state["case_id"],
        "agency": d["agency"],
        "countyCode": state["county_code"],
        "streetCode": state.get("street_code"),
        "role": d["role"],
        "reason": d["reason"],
        "category": state["category"],
        "severity": int(state["severity"]),
        "title": state.get("title"),
        "description": None,
        "address": state.get("address"),
        "lng": state.get("lng"),
        "lat": state.get("lat"),
        "sources": list(state.get("sources") or []),
        "reportCount": int(state.get("report_count") or 1),
        "reporterMasked": None,
        "dispatchedAt": d["dispatched_at"],
        "signDeadline": d.get("sign_deadline"),
        "resolveDeadline": d.get("resolve_deadline"),
        "escalationLevel": int(d.get("escalation_level", 0)),
        "previousDispatchId": d.get("previous"),
        "action": action,
        **_enrichment(state, d),
    }


URGENCY = {1: "一般", 2: "紧急", 3: "特急"}  # Report.severity 1 | 2 | 3, as 12345 and the four platforms name them
_PHOTOS_KEEP = 10  # photo URLs carried per dispatch: enough to see the scene, bounded for the state and topic
_DESCRIPTION_CHARS = 1000  # of the first report's text: a work order's 诉求内容 fits easily


def _enrichment(state: Mapping[str, Any], d: Mapping[str, Any]) -> dict[str, Any]:
    """Dispatch v2 fields (issue 15): what an agency needs to act without calling the hub back."""
    brief = state.get("brief") or {}
    refs = state.get("refs") or {}
    return {
        "description": brief.get("description"),
        "reporterMasked": brief.get("reporter_masked"),
        "urgency": URGENCY.get(int(state.get("severity") or 1)),
        "orderNos": list(refs.get("hotline-12345", [])),
        "eventIds": list(refs.get("four-platforms", [])),
        "photoUrls": list(brief.get("photos", [])),
        "contactRelayId": brief.get("relay"),
        "clock": d.get("clock") or "natural",
    }


def _remember_brief(state: dict[str, Any], report: Mapping[str, Any]) -> None:
    """Keep what dispatches carry from the reports: masked text, photos, the reporter's relay id."""
    brief = state.setdefault("brief", {})
    text = report.get("text") or report.get("title")
    if text and not brief.get("description"):
        brief["description"] = mask_text(str(text))[:_DESCRIPTION_CHARS]  # masked upstream; again, defensively
    photos = brief.setdefault("photos", [])
    for url in report.get("attachments") or []:
        if isinstance(url, str) and url.startswith(("http://", "https://")) and url not in photos \
                and len(photos) < _PHOTOS_KEEP:
            photos.append(url)
    if report.get("reporter_hash") and not brief.get("relay"):
        # A relay id, not the contact: the source system connects the agency to the reporter on request.
        brief["relay"] = f"{report.get('source')}:{str(report['reporter_hash'])[:16]}"
        brief["reporter_masked"] = report.get("reporter_masked")


def deadlines(state: Mapping[str, Any], a: Assignment, at: int,
              rules: RuleSet | None) -> tuple[int, int, dict[str, Any]]:
    """(sign, resolve, detail) deadlines of assignment ``a`` dispatched at ``at``, in the rule's clock.

    特急 (severity >= major) always runs in natural time, whatever the rule says.  A
    working-time deadline the holiday calendar cannot compute (a year it has no data for)
    falls back to natural time and says why in ``detail['clock_fallback']``.  A 12345
    order's own 办理时限 (``order_deadline``) wins when it is earlier than the rule's.
    """
    clock = a.clock
    major = rules.major_severity if rules is not None else 3
    if int(state.get("severity") or 1) >= major:
        clock = bt.NATURAL
    detail: dict[str, Any] = {"deadline_clock": clock}
    hours = rules.working_hours if rules is not None else bt.DEFAULT_HOURS
    try:
        sign, resolve = (bt.deadline(at, a.sign_ms, clock, hours), bt.deadline(at, a.resolve_ms, clock, hours))
    except bt.CalendarRangeError as exc:
        detail.update(deadline_clock=bt.NATURAL, clock_fallback=str(exc))
        sign, resolve = at + a.sign_ms, at + a.resolve_ms
    order = state.get("order_deadline")
    if a.role == "lead" and order is not None and int(order) < resolve:
        resolve = max(int(order), at)
        detail["resolve_deadline_from"] = "order"  # the 12345 order's own 办理时限
    return sign, resolve, detail


def _dispatch(state: dict[str, Any], fx: Effects, a: Assignment, at: int, reason: str | None = None,
              previous: str | None = None, rules: RuleSet | None = None) -> str:
    slot = a.role
    did = dispatch_id(state["case_id"], a.agency, slot, int(state["generation"]))
    sign, resolve, clock_detail = deadlines(state, a, at, rules)
    state["dispatches"][did] = {
        "agency": a.agency, "role": a.role, "reason": reason or a.reason, "rule": a.rule,
        "generation": state["generation"], "dispatched_at": at,
        "sign_deadline": sign, "resolve_deadline": resolve, "clock": clock_detail["deadline_clock"],
        "status": "dispatched", "tracked": a.role == "lead", "extensions": 0, "fired": [],
        "escalation_level": int(state.get("escalation_level", 0)), "previous": previous, "applied": [],
    }
    if a.role == "lead":
        state["lead"] = did
        state["rule"] = a.rule
    fx.dispatches.append(dispatch_record(state, did))
    d = state["dispatches"][did]
    fx.events.append(_event(state, "dispatched", at, agency=a.agency, dispatch=did, detail={
        "role": a.role, "reason": d["reason"], "rule": a.rule, "generation": state["generation"],
        "sign_deadline": d["sign_deadline"], "resolve_deadline": d["resolve_deadline"],
        "previous_dispatch_id": previous, **clock_detail,
    }))
    return did


def _active(state: Mapping[str, Any], include_supervision: bool = False) -> dict[tuple[str, str], str]:
    """Active dispatches by (agency, role); 督办 and the centre's own assists are not the rules' to withdraw."""
    return {(d["agency"], d["role"]): did for did, d in state["dispatches"].items()
            if d["status"] in ACTIVE_DISPATCH
            and (include_supervision or d["reason"] not in (ESCALATION, CENTRE_REASON) or d["role"] == "lead")}


def _withdraw(state: dict[str, Any], fx: Effects, did: str, at: int, why: str) -> None:
    d = state["dispatches"][did]
    d["status"] = "withdrawn"
    fx.dispatches.append(dispatch_record(state, did, action="withdraw"))
    fx.events.append(_event(state, "withdrawn", at, agency=d["agency"], dispatch=did, detail={"reason": why}))


# --------------------------------------------------------------------------- cases
_SNAPSHOT = ("county_code", "street_code", "category", "title", "address", "lng", "lat", "severity", "sources",
             "report_count", "dispatchable")


def new_state(case: Mapping[str, Any]) -> dict[str, Any]:
    opened = int(case["first_seen"])
    return {
        "case_id": case["case_id"], "case_version": -1, "status": "reported",
        "opened_at": opened, "state_entered_at": opened, "generation": 0, "escalation_level": 0,
        "returned": [], "dispatches": {}, "lead": None, "rule": None, "routed": None,
        "resolved_at": None, "pending_review": None, "closed_at": None,
        **{k: case.get(k) for k in _SNAPSHOT},
    }


def on_case(state: dict[str, Any] | None, case: Mapping[str, Any], rules: RuleSet) -> tuple[dict[str, Any], Effects]:
    """Route a case the first time it is dispatchable; re-route when its category or township changes."""
    fx = Effects()
    if state is not None and int(case["version"]) <= int(state["case_version"]):
        return state, fx  # redelivery or replay of a version already seen: nothing to do
    if case.get("county_code") not in rules.catalog.counties:
        raise ValueError(f"county code {case.get('county_code')!r} is not a Zhejiang county: no agency to route to")
    state = copy_state(state) if state is not None else new_state(case)
    if state.pop("placeholder", False):  # created by on_linked before the case itself arrived
        state["opened_at"] = state["state_entered_at"] = int(case["first_seen"])
    at = int(case.get("updated_at") or case.get("last_seen") or case["first_seen"])
    previous_route = state.get("routed")
    state["case_version"] = int(case["version"])
    for key in _SNAPSHOT:
        state[key] = case.get(key) if key != "sources" else list(case.get("sources") or [])
    state["dispatchable"] = bool(case.get("dispatchable", True))
    pins = state.get("pinned") or {}
    for name in ("category", "street_code"):  # the county centre's decision outlives later reports
        if name in pins:
            state[name] = pins[name]
    state["historical"] = bool(case.get("historical", False))
    if state["status"] in FINISHED_STATES or not state["dispatchable"] or state.get("merged_into") \
            or state["historical"]:  # issue 15: a backfilled case is recorded, never dispatched
        return state, fx
    route = [state["category"], state.get("street_code")]
    if state["status"] == "reported" or previous_route is None:
        plan = rules.plan(_case_view(state), skip=state["returned"])
        if plan is None:
            return state, fx
        _set_status(state, "dispatched", at)
        for a in plan.assignments:
            _dispatch(state, fx, a, at, rules=rules)
        state["routed"] = route
        return state, fx
    plan = rules.plan(_case_view(state), skip=state["returned"])
    if plan is None:
        return state, fx
    desired = {(a.agency, a.role): a for a in plan.assignments}
    active = _active(state)
    if route == previous_route or pins.get("lead"):
        # Same category and township (or a lead the centre assigned): only add what a higher
        # severity now asks for (zzzx), never withdraw.
        for slot, a in desired.items():
            if slot not in active and a.role == "assist":
                _dispatch(state, fx, a, at, rules=rules)
        return state, fx
    state["routed"] = route
    to_withdraw = [did for slot, did in active.items() if slot not in desired]
    to_add = [a for slot, a in desired.items() if slot not in active]
    if not to_withdraw and not to_add:
        return state, fx
    state["generation"] = int(state["generation"]) + 1
    for did in to_withdraw:
        _withdraw(state, fx, did, at, "rerouted")
    lead_changed = any(a.role == "lead" for a in to_add)
    if lead_changed:
        for did, d in state["dispatches"].items():  # the old lead's 督办 no longer applies
            if d["reason"] == ESCALATION and d["status"] in ACTIVE_DISPATCH:
                _withdraw(state, fx, did, at, "rerouted")
        state["escalation_level"] = 0
        _set_status(state, "dispatched", at)
    fx.events.append(_event(state, "rerouted", at, discriminator=f"gen{state['generation']}", detail={
        "category": state["category"], "street_code": state.get("street_code"),
        "from": previous_route, "generation": state["generation"],
        "withdrawn": [state["dispatches"][d]["agency"] for d in to_withdraw],
        "to": [a.agency for a in to_add],
    }))
    for a in to_add:
        _dispatch(state, fx, a, at, reason="reroute", rules=rules)
    return state, fx


# --------------------------------------------------------------------------- feedback
def _announce(state: Mapping[str, Any], fx: Effects) -> None:
    fx.lifecycle.append(dict(fx.events[-1]))


def _close(state: dict[str, Any], fx: Effects, at: int, satisfaction: str | None, report_id: str | None,
           reason: str) -> None:
    if satisfaction is not None:
        _set_status(state, "reviewed", at)
        fx.events.append(_event(state, "reviewed", at, report_id=report_id, detail={"satisfaction": satisfaction}))
    _set_status(state, "closed", at)
    state["closed_at"] = at
    fx.events.append(_event(state, "closed", at, report_id=report_id, detail={"reason": reason}))
    _announce(state, fx)


def on_feedback(state: dict[str, Any] | None, fb: Mapping[str, Any], rules: RuleSet) -> tuple[dict[str, Any], Effects]:
    """Apply one agency action; :class:`Rejected` when it is illegal (state unchanged)."""
    if state is None:
        raise Rejected(f"unknown case {fb['caseId']}: nothing was dispatched for it")
    did = fb["dispatchId"]
    d0 = state["dispatches"].get(did)
    if d0 is None:
        raise Rejected(f"unknown dispatch {did} for case {fb['caseId']}")
    if fb["agency"] != d0["agency"]:
        raise Rejected(f"agency {fb['agency']} is not the addressee of dispatch {did} (sent to {d0['agency']})")
    action, at = fb["action"], int(fb["time"])
    key = f"{action}@{at}@{fb.get('deadline') or ''}"
    if key in d0.get("applied", []):
        return state, Effects()  # the same feedback redelivered: already applied
    if d0["status"] == "withdrawn":
        raise Rejected(f"dispatch {did} was withdrawn (the case was re-routed)")
    if d0["status"] == "returned":
        raise Rejected(f"dispatch {did} was already returned (退单)")
    if state["status"] == "closed":
        raise Rejected(f"case {state['case_id']} is closed")
    state = copy_state(state)
    d = state["dispatches"][did]
    fx = Effects()
    is_lead = did == state.get("lead")
    agency = d["agency"]
    note = fb.get("note")

    if action == "sign":
        if d["status"] != "dispatched":
            raise Rejected(f"dispatch {did} is already signed (status {d['status']})")
        d["status"] = "signed"
        d["signed_at"] = at
        if is_lead and state["status"] == "dispatched":
            _set_status(state, "signed", at)
        fx.events.append(_event(state, "signed", at, agency=agency, dispatch=did, discriminator=str(at), detail={
            "role": d["role"], "time_to_sign_ms": max(0, at - int(d["dispatched_at"])),
            "sign_deadline": d.get("sign_deadline"), "on_time": at <= int(d.get("sign_deadline") or at)}))
    elif action == "progress":
        if d["status"] not in ("signed", "in_progress"):
            raise Rejected(f"progress before sign: dispatch {did} is {d['status']}")
        d["status"] = "in_progress"
        if is_lead and state["status"] == "signed":
            _set_status(state, "in_progress", at)
        fx.events.append(_event(state, "progress", at, agency=agency, dispatch=did, discriminator=str(at),
                                detail={"role": d["role"], "note": note}))
    elif action == "resolve":
        if d["status"] == "dispatched":
            raise Rejected(f"resolve before sign: dispatch {did} was never signed")
        if d["status"] not in ("signed", "in_progress"):
            raise Rejected(f"dispatch {did} cannot be resolved in status {d['status']}")
        d["status"] = "resolved"
        d["resolved_at"] = at
        deadline = d.get("resolve_deadline")
        detail = {"role": d["role"], "note": note, "resolve_deadline": deadline,
                  "on_time": deadline is None or at <= int(deadline),
                  "time_to_resolve_ms": max(0, at - int(d["dispatched_at"]))}
        if is_lead:
            _set_status(state, "resolved", at)
            state["resolved_at"] = at
            state["reply_text"] = mask_text(note) if note else None  # masked before it is stored or replied
            fx.events.append(_event(state, "resolved", at, agency=agency, dispatch=did, discriminator=str(at),
                                    detail=detail))
            _announce(state, fx)
            if state.get("pending_review") is not None:
                review = state["pending_review"]
                _close(state, fx, max(at, int(review["at"])), review["satisfaction"], review.get("report_id"),
                       "reviewed")
                if rules.reopen_unsatisfied and review["satisfaction"] == UNSATISFIED:
                    from streams.routing.centre import reopen

                    reopen(state, fx, max(at, int(review["at"])), rules, why="不满意回访")
        else:
            # An assisting agency finishing its part is progress of the case, not its resolution.
            detail["action"] = "resolve"
            fx.events.append(_event(state, "progress", at, agency=agency, dispatch=did, discriminator=str(at),
                                    detail=detail))
    elif action == "return":
        if d["status"] not in ACTIVE_DISPATCH:
            raise Rejected(f"dispatch {did} cannot be returned in status {d['status']}")
        d["status"] = "returned"
        if is_lead:
            returned = list(state["returned"]) + [agency]
            plan = rules.plan(_case_view(state), skip=returned)
            if plan is None:
                raise Rejected(f"return from {agency}: every level up to the city centre has returned this case")
            state["returned"] = returned
            state["generation"] = int(state["generation"]) + 1
            _set_status(state, "dispatched", at)
            fx.events.append(_event(state, "returned", at, agency=agency, dispatch=did, discriminator=str(at),
                                    detail={"reason": note, "role": d["role"]}))
            active = _active(state)
            _dispatch(state, fx, plan.lead, at, reason="return", previous=did, rules=rules)
            for a in plan.assignments[1:]:
                if (a.agency, a.role) not in active:
                    _dispatch(state, fx, a, at, rules=rules)
        else:
            fx.events.append(_event(state, "returned", at, agency=agency, dispatch=did, discriminator=str(at),
                                    detail={"reason": note, "role": d["role"]}))
    elif action == "extend":
        if d["status"] not in ACTIVE_DISPATCH:
            raise Rejected(f"dispatch {did} cannot be extended in status {d['status']}")
        current = int(d["resolve_deadline"])
        new = int(fb["deadline"])
        if int(d.get("extensions", 0)) >= rules.max_extensions:
            raise Rejected(f"extend past the limit: dispatch {did} was already extended "
                           f"{d.get('extensions', 0)} times (at most {rules.max_extensions})")
        if new <= current:
            raise Rejected(f"extend must move the deadline later (current {current}, asked {new})")
        if new - current > rules.max_extension_ms:
            raise Rejected(f"extend past the limit: +{format_duration_ms(new - current)} is more than "
                           f"{format_duration_ms(rules.max_extension_ms)} per extension")
        d["resolve_deadline"] = new
        d["extensions"] = int(d.get("extensions", 0)) + 1
        fx.events.append(_event(state, "extended", at, agency=agency, dispatch=did, discriminator=f"{at}@{new}",
                                detail={"previous_deadline": current, "new_deadline": new, "note": note,
                                        "extensions": d["extensions"]}))
    d["applied"] = (list(d.get("applied", [])) + [key])[-_APPLIED_KEEP:]
    return state, fx


# --------------------------------------------------------------------------- linked reports
def on_linked(state: dict[str, Any] | None, report: Mapping[str, Any]) -> tuple[dict[str, Any] | None, Effects]:
    """A report joined the case: remember its source id (for the status replies) and a 12345 办理时限.

    A report can reach routing before its case (two topics): the state is then
    a placeholder that :func:`on_case` completes.  A 12345 order's ``deadline``
    earlier than the lead's 办结 deadline replaces it; an agency already holding
    the dispatch gets it again with ``action = "update"``.
    """
    source, ref = report.get("source"), report.get("source_ref")
    if source not in st.STATUS_TOPICS or not ref or not report.get("case_id") or report.get("historical"):
        return state, Effects()  # a backfilled report: nothing is answered or dispatched for it
    fx = Effects()
    original = state
    at = int(report.get("received_at") or report.get("reported_at") or 0)
    if state is None:
        state = new_state({"case_id": report["case_id"], "first_seen": at, "county_code": report.get("county_code"),
                           "street_code": report.get("street_code"), "category": report.get("category"),
                           "severity": report.get("severity") or 1, "sources": [source]})
        state["placeholder"] = True
    else:
        state = copy_state(state)
    new_ref = st.remember_ref(state, str(source), str(ref))
    if new_ref:
        _remember_brief(state, report)
    order = report.get("deadline") if source == "hotline-12345" else None
    earlier = order is not None and (state.get("order_deadline") is None or int(order) < int(state["order_deadline"]))
    if order is not None and earlier:
        # Kept even when no dispatch exists yet (the case is dispatched later with it): a state
        # that dropped it would apply it only when the same order came again (a redelivery).
        state["order_deadline"] = int(order)
        lead_id = state.get("lead")
        lead = state["dispatches"].get(lead_id) if lead_id else None
        if lead_id and lead is not None and lead["status"] in ACTIVE_DISPATCH \
                and int(order) < int(lead["resolve_deadline"]):
            previous = int(lead["resolve_deadline"])
            lead["resolve_deadline"] = max(int(order), int(lead["dispatched_at"]))
            fx.dispatches.append(dispatch_record(state, lead_id, action="update"))
            fx.events.append(_event(state, "deadline_changed", at, agency=lead["agency"], dispatch=lead_id,
                                    discriminator=f"order@{order}", report_id=report.get("report_id"),
                                    detail={"previous_deadline": previous, "new_deadline": lead["resolve_deadline"],
                                            "reason": "12345 order deadline (办理时限)", "source_ref": ref}))
    if not new_ref and not earlier and not fx and original is not None:
        return original, fx  # nothing new: no table write
    return state, fx


def with_replies(state: dict[str, Any] | None, fx: Effects, at: int | None = None) -> Effects:
    """Add the status replies that ``state`` (after a transition producing ``fx``) owes the sources."""
    if state is None or state.get("historical"):  # backfill: the sources answered long ago
        return fx
    when = at if at is not None else max([int(e["at"]) for e in fx.events], default=int(state["state_entered_at"]))
    st.add_replies(state, fx, when)
    return fx


# --------------------------------------------------------------------------- 回访
def on_review(state: dict[str, Any] | None, satisfaction: str, at: int,
              report_id: str | None = None, rules: RuleSet | None = None) -> tuple[dict[str, Any] | None, Effects]:
    """A 12345 回访 (satisfaction) for the case: reviewed then closed once the case is resolved.

    With ``review.reopen_unsatisfied`` in the rules, a 不满意 review reopens (重办) the case
    for its last lead agency instead of letting it stay closed.
    """
    fx = Effects()
    if state is None or state["status"] in ("reviewed", "closed"):
        return state, fx
    state = copy_state(state)
    if state["status"] == "resolved" or (state["status"] == "reported" and not state.get("dispatchable", True)):
        when = max(at, int(state["state_entered_at"]))
        _close(state, fx, when, satisfaction, report_id, "reviewed")
        if (rules is not None and rules.reopen_unsatisfied and satisfaction == UNSATISFIED
                and state.get("lead") is not None):
            from streams.routing.centre import reopen

            reopen(state, fx, when, rules, why="不满意回访")
    elif state.get("pending_review") is None:
        state["pending_review"] = {"satisfaction": satisfaction, "at": at, "report_id": report_id}
    return state, fx


# --------------------------------------------------------------------------- clocks
def next_due(state: Mapping[str, Any], rules: RuleSet) -> int | None:
    """The earliest wall-clock instant at which :func:`on_tick` has something to do."""
    status = state["status"]
    if status == "resolved" and state.get("resolved_at") is not None:
        return int(state["resolved_at"]) + rules.review_window_ms
    if status not in OPEN_STATES:
        return None
    lead = state["dispatches"].get(state.get("lead") or "")
    if lead is None or lead["status"] not in ACTIVE_DISPATCH:
        return None
    dues = []
    if lead["status"] == "dispatched" and lead.get("sign_deadline") is not None \
            and f"sign@{lead['sign_deadline']}" not in lead["fired"]:
        dues.append(int(lead["sign_deadline"]))
    if lead.get("resolve_deadline") is not None and f"resolve@{lead['resolve_deadline']}" not in lead["fired"]:
        dues.append(int(lead["resolve_deadline"]))
    return min(dues) if dues else None


def _escalate(state: dict[str, Any], fx: Effects, lead_id: str, clock: str, deadline: int,
              rules: RuleSet) -> None:
    lead = state["dispatches"][lead_id]
    fx.events.append(_event(state, "overdue", deadline, agency=lead["agency"], dispatch=lead_id,
                            discriminator=f"{clock}@{deadline}", detail={"clock": clock, "deadline": deadline}))
    lead["fired"].append(f"{clock}@{deadline}")
    new_deadline = deadline + rules.escalation_grace_ms
    lead[f"{clock}_deadline"] = new_deadline
    chain = rules.escalation_chain(_case_view(state))
    if lead["agency"] in chain:
        chain = chain[chain.index(lead["agency"]) + 1:]
    level = int(state.get("escalation_level", 0))
    if level >= len(chain):
        return  # already at the city centre: overdue is reported, nobody above to escalate to
    target = chain[level]
    level += 1
    state["escalation_level"] = level
    lead["escalation_level"] = level
    did = dispatch_id(state["case_id"], target, f"{ESCALATION}{level}", int(state["generation"]))
    state["dispatches"][did] = {
        "agency": target, "role": "assist", "reason": ESCALATION, "rule": lead.get("rule"),
        "generation": state["generation"], "dispatched_at": deadline,
        "sign_deadline": None, "resolve_deadline": lead.get("resolve_deadline"),
        "status": "dispatched", "tracked": False, "extensions": 0, "fired": [], "escalation_level": level,
        "previous": lead_id, "applied": [],
    }
    fx.dispatches.append(dispatch_record(state, did))
    fx.events.append(_event(state, "escalated", deadline, agency=target, dispatch=did, discriminator=str(level),
                            detail={"level": level, "to": target, "from": lead["agency"], "clock": clock,
                                    "overdue_dispatch_id": lead_id, "new_deadline": new_deadline}))


def on_tick(state: dict[str, Any], now: int, rules: RuleSet) -> tuple[dict[str, Any], Effects]:
    """Fire every deadline passed at wall-clock ``now``: each deadline fires ``overdue`` exactly once."""
    fx = Effects()
    due = next_due(state, rules)
    if due is None or due > now:
        return state, fx
    state = copy_state(state)
    for _ in range(8):  # a worker down for long may owe several deadlines; 8 bounds a pathological loop
        if state["status"] == "resolved":
            at = int(state["resolved_at"]) + rules.review_window_ms
            if at <= now:
                _close(state, fx, at, None, None, f"no review within {format_duration_ms(rules.review_window_ms)}")
            break
        lead_id = state.get("lead")
        if not lead_id:
            break
        lead = state["dispatches"][lead_id]
        fired = False
        for clock in ("sign", "resolve"):
            deadline = lead.get(f"{clock}_deadline")
            if deadline is None or int(deadline) > now or f"{clock}@{deadline}" in lead["fired"]:
                continue
            if clock == "sign" and lead["status"] != "dispatched":
                continue
            _escalate(state, fx, lead_id, clock, int(deadline), rules)
            fired = True
        if not fired:
            break
    return state, fx
