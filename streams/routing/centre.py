"""The county centre's actions on a case, as pure transitions of the routing state.

A 县级社会治理中心 steers cases by hand: 指派/转办 (``assign``), re-categorise or
re-locate (``recategorise``), ``merge`` two cases that are one incident,
``split`` a report off into a case of its own, and 重办 (``reopen``).  Every
action arrives as one JSON command on ``case-commands`` keyed by the case
id (from ``gridhub case ...``, ``POST /v1/cases/{caseId}/actions`` or any
producer)::

    {"commandId"?, "caseId", "action", "operator", "reason", "time"?, ...action fields}

and becomes an auditable ``CaseEvent`` (``event = centre_<action>``, the
operator id and the reason in ``detail``) plus its consequences: dispatches
and withdrawals on the agency topics, status replies, and on
``case-lifecycle`` the facts fusion must respect (``merged``, ``split``,
``recategorised``: see :mod:`streams.centre.fusion_hook`).

Decisions stick: ``state['pinned']`` keeps a manual category, township and
lead, and :func:`streams.routing.lifecycle.on_case` applies them over later
case versions; a merged case stays merged (``merged_into``) and no later
version re-routes it.  An illegal command raises :class:`Rejected` (the
agent dead-letters it with the reason; nothing changes).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Mapping

from streams.routing import lifecycle as lc
from streams.routing.lifecycle import Effects, Rejected
from streams.routing.rules import Assignment, RuleSet

ACTIONS = ("assign", "recategorise", "merge", "split", "reopen")
COMMANDS_TOPIC = "case-commands"  # CONTRACTS.md section 5
#: Internal follow-up: the target of a merge learns what it absorbed (sent by the agent, keyed by the target).
ABSORB = "absorb"
_NS = uuid.UUID("3c8e1f0a-7b42-4d6e-9a15-c2d4e6f80b17")  # gridhub centre command ids (fixed forever)
_MAX_TEXT = 500  # characters of an operator's reason kept: an audit line, not a document


def command_id(doc: Mapping[str, Any]) -> str:
    """Deterministic when the caller gave none: the same command resent is the same command."""
    if isinstance(doc.get("commandId"), str) and doc["commandId"]:
        return str(doc["commandId"])
    return str(uuid.uuid5(_NS, json.dumps(doc, ensure_ascii=False, sort_keys=True, default=str)))


def parse_command(value: bytes | Mapping[str, Any], now_ms: int | None = None) -> dict[str, Any]:
    """Validate a command's shape (what it names is checked against the state in :func:`on_command`)."""
    if isinstance(value, (bytes, bytearray)):
        try:
            doc: Any = json.loads(bytes(value).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise Rejected(f"malformed case command: not JSON ({exc.__class__.__name__})") from exc
    else:
        doc = dict(value)
    if not isinstance(doc, dict):
        raise Rejected("malformed case command: expected a JSON object")
    out: dict[str, Any] = {}
    for name in ("caseId", "action", "operator", "reason"):
        v = doc.get(name)
        if not isinstance(v, str) or not v.strip():
            raise Rejected(f"malformed case command: '{name}' is required (a non-empty string)")
        out[name] = v.strip()[:_MAX_TEXT]
    if out["action"] not in ACTIONS + (ABSORB,):
        raise Rejected(f"malformed case command: unknown action {out['action']!r} (one of {', '.join(ACTIONS)})")
    if doc.get("time") is None and now_ms is None:
        raise Rejected("malformed case command: 'time' is required")
    out["time"] = lc._to_ms(doc["time"], "time") if doc.get("time") is not None else int(now_ms or 0)
    out["commandId"] = command_id(doc)
    action = out["action"]
    for name in ("agency", "role", "category", "streetCode", "address", "intoCaseId", "reportId", "source",
                 "sourceRef", "fromCaseId"):
        v = doc.get(name)
        if v is not None and not isinstance(v, str):
            raise Rejected(f"malformed case command: '{name}' must be a string")
        out[name] = v.strip() if isinstance(v, str) and v.strip() else None
    out["deadline"] = lc._to_ms(doc["deadline"], "deadline") if doc.get("deadline") is not None else None
    for name in ("lng", "lat"):
        v = doc.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise Rejected(f"malformed case command: '{name}' must be a number")
        out[name] = float(v) if v is not None else None
    out["refs"] = doc.get("refs") if isinstance(doc.get("refs"), dict) else {}
    if action == "assign":
        if not out["agency"]:
            raise Rejected("malformed case command: assign needs 'agency' (e.g. zhzf or 330502.zhzf)")
        out["role"] = out["role"] or "lead"
        if out["role"] not in ("lead", "assist"):
            raise Rejected("malformed case command: role must be lead or assist")
    elif action == "recategorise" and not (out["category"] or out["streetCode"]):
        raise Rejected("malformed case command: recategorise needs 'category' and/or 'streetCode'")
    elif action == "merge" and not out["intoCaseId"]:
        raise Rejected("malformed case command: merge needs 'intoCaseId' (the case that stays)")
    elif action == "merge" and out["intoCaseId"] == out["caseId"]:
        raise Rejected("malformed case command: a case cannot be merged into itself")
    elif action == "split" and not out["reportId"]:
        raise Rejected("malformed case command: split needs 'reportId' (the report to move off)")
    return out


def split_case_id(case_id: str, report_id: str) -> str:
    """The id of the case a split creates: deterministic, so a resent split creates the same case."""
    return "C" + uuid.uuid5(_NS, f"split|{case_id}|{report_id}").hex


def _audit(state: Mapping[str, Any], cmd: Mapping[str, Any], at: int, **detail: Any) -> dict[str, Any]:
    body = {"operator": cmd["operator"], "reason": cmd["reason"], "command_id": cmd["commandId"], **detail}
    return lc._event(state, f"centre_{cmd['action']}", at, agency=detail.get("agency"),
                     discriminator=cmd["commandId"], detail=body)


def _agency(rules: RuleSet, state: Mapping[str, Any], code: str) -> str:
    county = str(state["county_code"])
    full = code if "." in code else rules.catalog.county_agency(county, code)
    if not rules.catalog.exists(full):
        raise Rejected(f"unknown agency {code!r} in county {county}")
    return full


def _assignment(rules: RuleSet, state: Mapping[str, Any], agency: str, role: str) -> Assignment:
    """The centre's own assignment: the deadlines of the rule that matches the case (or the defaults)."""
    plan = rules.plan(lc._case_view(state))
    base = plan.lead if plan is not None else None
    sign = base.sign_ms if base else rules.default_sign_ms
    resolve = base.resolve_ms if base else rules.default_resolve_ms
    return Assignment(agency, role, lc.CENTRE_REASON, base.rule if base else None, sign, resolve,
                      base.clock if base else "natural")


def _withdraw_lead(state: dict[str, Any], fx: Effects, at: int, why: str) -> str | None:
    lead = state.get("lead")
    for did, d in list(state["dispatches"].items()):
        if d["status"] in lc.ACTIVE_DISPATCH and (did == lead or d["reason"] == lc.ESCALATION):
            lc._withdraw(state, fx, did, at, why)
    state["escalation_level"] = 0
    return lead


def on_command(state: dict[str, Any] | None, cmd: Mapping[str, Any],
               rules: RuleSet) -> tuple[dict[str, Any], Effects]:
    """Apply one centre command; :class:`Rejected` when it cannot apply (state unchanged)."""
    if state is None or state.get("placeholder"):
        raise Rejected(f"unknown case {cmd['caseId']}: routing has not seen it")
    if cmd["commandId"] in state.get("commands", []):
        return state, Effects()  # the same command redelivered
    action, at = cmd["action"], int(cmd["time"])
    if state.get("merged_into") and action != ABSORB:
        raise Rejected(f"case {state['case_id']} was merged into {state['merged_into']}: act on that case")
    state = lc.copy_state(state)
    fx = Effects()
    pins = state.setdefault("pinned", {})

    if action == "assign":
        agency = _agency(rules, state, str(cmd["agency"]))
        if cmd["role"] == "lead":
            current = state["dispatches"].get(state.get("lead") or "")
            if current is not None and current["agency"] == agency and current["status"] in lc.ACTIVE_DISPATCH:
                raise Rejected(f"{agency} already leads case {state['case_id']}")
            previous = _withdraw_lead(state, fx, at, "assigned by the county centre")
            state["generation"] = int(state["generation"]) + 1
            lc._set_status(state, "dispatched", at)
            state["closed_at"] = state["resolved_at"] = None
            fx.events.append(_audit(state, cmd, at, agency=agency, role="lead", previous_lead=(
                state["dispatches"][previous]["agency"] if previous else None)))
            pins["lead"] = agency
            lc._dispatch(state, fx, _assignment(rules, state, agency, "lead"), at, reason=lc.CENTRE_REASON,
                         previous=previous, rules=rules)
        else:
            if any(d["agency"] == agency and d["status"] in lc.ACTIVE_DISPATCH for d in state["dispatches"].values()):
                raise Rejected(f"{agency} already has case {state['case_id']}")
            fx.events.append(_audit(state, cmd, at, agency=agency, role="assist"))
            lc._dispatch(state, fx, _assignment(rules, state, agency, "assist"), at, reason=lc.CENTRE_REASON,
                         rules=rules)
    elif action == "recategorise":
        changes: dict[str, Any] = {}
        if cmd.get("category"):
            if cmd["category"] not in rules.categories:
                raise Rejected(f"unknown category {cmd['category']!r}")
            changes["category"] = cmd["category"]
        if cmd.get("streetCode"):
            street = str(cmd["streetCode"])
            if street not in rules.catalog.townships or not street.startswith(str(state["county_code"])):
                raise Rejected(f"township {street!r} is not a township of county {state['county_code']}")
            changes["street_code"] = street
        for name in ("address", "lng", "lat"):
            if cmd.get(name) is not None:
                changes[name] = cmd[name]
        before = {k: state.get(k) for k in changes}
        pins.update({k: v for k, v in changes.items() if k in ("category", "street_code")})
        state.update(changes)
        fx.events.append(_audit(state, cmd, at, before=before, after=changes))
        fx.lifecycle.append(dict(fx.events[-1], event="recategorised", state=state["status"]))  # fusion pins it
        if state["status"] not in lc.FINISHED_STATES and state.get("dispatchable", True):
            _reroute(state, fx, at, rules)
    elif action == "reopen":
        reopen(state, fx, at, rules, cmd=cmd)
    elif action == "merge":
        target = str(cmd["intoCaseId"])
        for did, d in list(state["dispatches"].items()):
            if d["status"] in lc.ACTIVE_DISPATCH:
                lc._withdraw(state, fx, did, at, f"merged into {target}")
        state["merged_into"] = target
        fx.events.append(_audit(state, cmd, at, into=target, refs=state.get("refs") or {}))
        lc._set_status(state, "closed", at)
        state["closed_at"] = at
        fx.events.append(lc._event(state, "closed", at, discriminator=cmd["commandId"],
                                   detail={"reason": f"merged into {target}"}))
        # fusion: the reports of this case belong to the target from now on (streams.centre.fusion_hook)
        fx.lifecycle.append(dict(fx.events[-2], event="merged", state="closed"))
        # the target learns the source records it now answers for (status replies)
        fx.commands.append({"commandId": f"{cmd['commandId']}:absorb", "caseId": target, "action": ABSORB,
                            "operator": cmd["operator"], "reason": cmd["reason"], "time": at,
                            "fromCaseId": state["case_id"], "refs": state.get("refs") or {}})
    elif action == "split":
        report_id = str(cmd["reportId"])
        new_case = split_case_id(state["case_id"], report_id)
        fx.events.append(_audit(state, cmd, at, report_id=report_id, new_case_id=new_case,
                                source=cmd.get("source"), source_ref=cmd.get("sourceRef")))
        detail = json.loads(fx.events[-1]["detail"])
        detail.update({k: cmd.get(k) for k in ("category", "streetCode", "address", "lng", "lat")})
        fx.lifecycle.append(dict(fx.events[-1], event="split", report_id=report_id,
                                 detail=json.dumps(detail, ensure_ascii=False, sort_keys=True)))
        refs = state.get("refs") or {}
        if cmd.get("source") in refs and cmd.get("sourceRef") in refs[cmd["source"]]:
            refs[cmd["source"]].remove(cmd["sourceRef"])  # its replies now come from the new case
    elif action == ABSORB:
        from streams.routing import status as st

        for source, ids in (cmd.get("refs") or {}).items():
            for ref in ids if isinstance(ids, list) else []:
                st.remember_ref(state, str(source), str(ref))
        fx.events.append(lc._event(state, "merged_in", at, discriminator=cmd["commandId"],
                                   detail={"from": cmd.get("fromCaseId"), "operator": cmd["operator"],
                                           "reason": cmd["reason"]}))
    state["commands"] = (list(state.get("commands", [])) + [cmd["commandId"]])[-50:]  # recent ids: redelivery
    return state, fx


def _reroute(state: dict[str, Any], fx: Effects, at: int, rules: RuleSet) -> None:
    """Re-plan after a manual category / township: withdraw what the rules no longer want, dispatch the rest."""
    plan = rules.plan(lc._case_view(state), skip=state["returned"])
    if plan is None:
        return
    pinned_lead = (state.get("pinned") or {}).get("lead")
    desired = {(a.agency, a.role): a for a in plan.assignments if not (pinned_lead and a.role == "lead")}
    active = {slot: did for slot, did in lc._active(state).items() if not (pinned_lead and slot[1] == "lead")}
    to_withdraw = [did for slot, did in active.items() if slot not in desired]
    to_add = [a for slot, a in desired.items() if slot not in active]
    state["routed"] = [state["category"], state.get("street_code")]
    if not to_withdraw and not to_add:
        return
    state["generation"] = int(state["generation"]) + 1
    for did in to_withdraw:
        lc._withdraw(state, fx, did, at, "recategorised by the county centre")
    if any(a.role == "lead" for a in to_add):
        for did, d in state["dispatches"].items():
            if d["reason"] == lc.ESCALATION and d["status"] in lc.ACTIVE_DISPATCH:
                lc._withdraw(state, fx, did, at, "rerouted")
        state["escalation_level"] = 0
        lc._set_status(state, "dispatched", at)
    fx.events.append(lc._event(state, "rerouted", at, discriminator=f"gen{state['generation']}", detail={
        "category": state["category"], "street_code": state.get("street_code"), "generation": state["generation"],
        "withdrawn": [state["dispatches"][d]["agency"] for d in to_withdraw], "to": [a.agency for a in to_add],
        "by": "centre"}))
    for a in to_add:
        lc._dispatch(state, fx, a, at, reason="reroute", rules=rules)


def reopen(state: dict[str, Any], fx: Effects, at: int, rules: RuleSet, *, cmd: Mapping[str, Any] | None = None,
           why: str | None = None) -> None:
    """重办: the last lead agency gets the case again (new dispatch, new deadline), on 不满意 or by hand."""
    if state["status"] not in lc.FINISHED_STATES:
        raise Rejected(f"case {state['case_id']} is {state['status']}, not finished: nothing to reopen")
    last = state["dispatches"].get(state.get("lead") or "")
    plan = rules.plan(lc._case_view(state), skip=state["returned"])
    agency = last["agency"] if last else (plan.lead.agency if plan else rules.catalog.centre(state["county_code"]))
    state["generation"] = int(state["generation"]) + 1
    state["reopened"] = int(state.get("reopened", 0)) + 1
    lc._set_status(state, "dispatched", at)
    state["closed_at"] = state["resolved_at"] = None
    state["pending_review"] = None
    state["reply_text"] = None
    detail: dict[str, Any] = {"agency": agency, "reopened": state["reopened"]}
    if cmd is not None:
        fx.events.append(_audit(state, cmd, at, **detail))
    else:
        fx.events.append(lc._event(state, "centre_reopen", at, agency=agency, discriminator=f"auto{state['reopened']}",
                                   detail={"operator": "hub", "reason": why, **detail}))
    fx.lifecycle.append(dict(fx.events[-1], event="reopened", state="dispatched"))  # fusion: open again
    a = _assignment(rules, state, agency, "lead")
    did = lc._dispatch(state, fx, a, at, reason="reopen", previous=state.get("lead"), rules=rules)
    deadline = cmd.get("deadline") if cmd is not None else None
    if deadline is not None:
        if int(deadline) <= at:
            raise Rejected("reopen: the new deadline must be in the future")
        state["dispatches"][did]["resolve_deadline"] = int(deadline)
        fx.dispatches[-1]["resolveDeadline"] = int(deadline)
        ev = json.loads(fx.events[-1]["detail"])
        ev["resolve_deadline"] = int(deadline)
        fx.events[-1]["detail"] = json.dumps(ev, ensure_ascii=False, sort_keys=True)
