"""The lifecycle transition functions, without Kafka."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gridhub.core.codec import codec
from streams.routing import lifecycle as lc
from streams.routing.rules import RuleSet, load_rules
from helpers.routing import T0, MIN, HOUR, DAY, write_rules


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return load_rules(write_rules(tmp_path_factory.mktemp("rules"), """
        escalation: {grace: 1h}
        review: {auto_close: 2d}
        rules:
          - id: fire-alarm
            match: {category: [fire], source: [sensors]}
            lead: xfjy
            assist: [yjgl]
            sign: 5m
            resolve: 4h
          - id: garbage
            match: {category: [garbage], area: ["330502"]}
            lead: zhzf
            sign: 30m
            resolve: 1d
          - id: garbage-town
            match: {category: [garbage]}
            lead: town
          - id: noise
            match: {category: [noise]}
            lead: zhzf
    """))


def make_case(version: int = 1, **kw: Any) -> dict[str, Any]:
    case: dict[str, Any] = {
        "case_id": "c-1", "county_code": "330502", "street_code": "330502001", "category": "garbage",
        "title": "垃圾乱堆", "address": "某路1号", "lng": 120.1, "lat": 30.8, "severity": 1,
        "sources": ["four-platforms"], "report_ids": ["r1"], "report_count": 1, "first_seen": T0,
        "last_seen": T0, "status": "reported", "dispatchable": True, "device_ids": [], "version": version,
        "updated_at": T0 + version * 1000,
    }
    case.update(kw)
    return case


def fb(state: dict[str, Any], action: str, at: int, agency: str | None = None, did: str | None = None,
       **kw: Any) -> dict[str, Any]:
    did = did or state["lead"]
    return {"dispatchId": did, "caseId": state["case_id"], "agency": agency or state["dispatches"][did]["agency"],
            "action": action, "time": at, "note": kw.pop("note", None), "deadline": kw.pop("deadline", None)}


def events(fx: lc.Effects) -> list[str]:
    return [e["event"] for e in fx.events]


def routed(rules: RuleSet, **kw: Any) -> dict[str, Any]:
    state, _ = lc.on_case(None, make_case(**kw), rules)
    return state


def test_transitions_leave_the_callers_state_as_it_was(rules: RuleSet) -> None:
    """Each transition works on a copy (``lc.copy_state``): the state handed in, which the processor
    may still need (a rejection keeps the old state), is the same value after the call."""
    state, _ = lc.on_case(None, make_case(1), rules)
    before = json.dumps(state, sort_keys=True)
    signed, fx = lc.on_feedback(state, fb(state, "sign", T0 + MIN), rules)
    assert fx.events and signed["status"] == "signed" and state["status"] != "signed"
    rerouted, _ = lc.on_case(signed, make_case(2, category="noise"), rules)
    assert json.dumps(state, sort_keys=True) == before
    assert rerouted is not signed and signed["status"] == "signed"


def test_copy_state_is_a_deep_json_copy() -> None:
    state = {"a": [1, {"b": [2.5, None, True]}], "c": {"d": "网格"}, 7: "int key, as JSON writes it"}
    copied = lc.copy_state(state)
    assert copied == {"a": [1, {"b": [2.5, None, True]}], "c": {"d": "网格"}, "7": "int key, as JSON writes it"}
    copied["a"][1]["b"].append("x")
    copied["c"]["d"] = "changed"
    assert state["a"] == [1, {"b": [2.5, None, True]}] and state["c"] == {"d": "网格"}


def test_first_version_dispatches_lead_with_deadlines(rules: RuleSet) -> None:
    state, fx = lc.on_case(None, make_case(), rules)
    assert state["status"] == "dispatched"
    assert [(d["agency"], d["role"], d["action"]) for d in fx.dispatches] == [("330502.zhzf", "lead", "dispatch")]
    d = fx.dispatches[0]
    at = T0 + 1000
    assert d["dispatchedAt"] == at and d["signDeadline"] == at + 30 * MIN and d["resolveDeadline"] == at + DAY
    assert d["reason"] == "rule:garbage" and d["reporterMasked"] is None
    codec("Dispatch").encode(d)  # schema-valid
    assert events(fx) == ["dispatched"]
    ev = fx.events[0]
    codec("CaseEvent").encode(ev)
    detail = json.loads(ev["detail"])
    assert detail["role"] == "lead" and detail["sign_deadline"] == at + 30 * MIN
    assert detail["resolve_deadline"] == at + DAY and detail["case_age_ms"] == 1000
    assert ev["agency"] == "330502.zhzf" and ev["dispatch_id"] == d["dispatchId"] and ev["state"] == "dispatched"


def test_redelivered_or_replayed_case_never_dispatches_twice(rules: RuleSet) -> None:
    state, fx = lc.on_case(None, make_case(), rules)
    again, fx2 = lc.on_case(state, make_case(), rules)
    assert not fx2 and again == state
    newer, fx3 = lc.on_case(state, make_case(version=2, report_count=2), rules)
    assert not fx3 and newer["report_count"] == 2  # nothing route-relevant changed
    # A replay from scratch gives the same dispatch id (idempotency key) and event ids.
    replay, fx4 = lc.on_case(None, make_case(), rules)
    assert [d["dispatchId"] for d in fx4.dispatches] == [d["dispatchId"] for d in fx.dispatches]
    assert [e["event_id"] for e in fx4.events] == [e["event_id"] for e in fx.events]


def test_consultation_is_never_dispatched(rules: RuleSet) -> None:
    state, fx = lc.on_case(None, make_case(category="consultation", dispatchable=False), rules)
    assert not fx and state["status"] == "reported" and state["dispatches"] == {}
    state, fx = lc.on_review(state, "满意", T0 + HOUR)
    assert events(fx) == ["reviewed", "closed"] and state["status"] == "closed"


def test_no_rule_triage_and_major_severity(rules: RuleSet) -> None:
    _, fx = lc.on_case(None, make_case(category="other"), rules)
    assert [(d["agency"], d["reason"]) for d in fx.dispatches] == [("330502.zzzx", "triage")]
    _, fx = lc.on_case(None, make_case(severity=3), rules)
    assert [(d["agency"], d["role"], d["reason"]) for d in fx.dispatches] == [
        ("330502.zhzf", "lead", "rule:garbage"), ("330502.zzzx", "assist", "severity")]


def test_severity_rising_later_adds_the_centre_without_withdrawing(rules: RuleSet) -> None:
    state = routed(rules)
    state, fx = lc.on_case(state, make_case(version=2, severity=3), rules)
    assert [(d["agency"], d["role"], d["action"]) for d in fx.dispatches] == [("330502.zzzx", "assist", "dispatch")]


def test_fire_alarm_dispatches_both_at_once(rules: RuleSet) -> None:
    _, fx = lc.on_case(None, make_case(category="fire", sources=["sensors"]), rules)
    assert [(d["agency"], d["role"]) for d in fx.dispatches] == [("330502.xfjy", "lead"), ("330502.yjgl", "assist")]
    assert fx.dispatches[0]["signDeadline"] == T0 + 1000 + 5 * MIN


def test_reroute_on_category_change_withdraws_previous(rules: RuleSet) -> None:
    state = routed(rules)
    old = state["lead"]
    same, fx = lc.on_case(state, make_case(version=2, category="noise"), rules)
    assert not fx and same["category"] == "noise"  # same agency and role: the dispatch stands
    state, fx = lc.on_case(same, make_case(version=3, category="other"), rules)
    assert events(fx) == ["withdrawn", "rerouted", "dispatched"]
    assert [(d["agency"], d["action"], d["reason"], d["dispatchId"] == old) for d in fx.dispatches] == [
        ("330502.zhzf", "withdraw", "rule:garbage", True), ("330502.zzzx", "dispatch", "reroute", False)]
    assert state["generation"] == 1 and state["dispatches"][old]["status"] == "withdrawn"
    # Feedback on the withdrawn dispatch is illegal.
    with pytest.raises(lc.Rejected, match="withdrawn"):
        lc.on_feedback(state, fb(state, "sign", T0 + 5000, did=old), rules)


def test_reroute_on_street_change(rules: RuleSet) -> None:
    state = routed(rules, category="garbage", county_code="330503", street_code="330503001")
    assert state["dispatches"][state["lead"]]["agency"] == "330503.town-330503001"
    state, fx = lc.on_case(state, make_case(version=2, county_code="330503", street_code="330503002"), rules)
    assert [(d["agency"], d["action"]) for d in fx.dispatches] == [
        ("330503.town-330503001", "withdraw"), ("330503.town-330503002", "dispatch")]


def test_full_happy_path_with_review(rules: RuleSet) -> None:
    state = routed(rules)
    state, fx = lc.on_feedback(state, fb(state, "sign", T0 + 10 * MIN), rules)
    assert events(fx) == ["signed"] and state["status"] == "signed"
    assert json.loads(fx.events[0]["detail"])["time_to_sign_ms"] == 10 * MIN - 1000
    state, fx = lc.on_feedback(state, fb(state, "progress", T0 + HOUR, note="到场"), rules)
    assert events(fx) == ["progress"] and state["status"] == "in_progress"
    state, fx = lc.on_feedback(state, fb(state, "resolve", T0 + 2 * HOUR), rules)
    assert events(fx) == ["resolved"] and state["status"] == "resolved"
    assert [e["event"] for e in fx.lifecycle] == ["resolved"]
    detail = json.loads(fx.events[0]["detail"])
    assert detail["on_time"] is True and detail["state_age_ms"] == HOUR and detail["case_age_ms"] == 2 * HOUR
    state, fx = lc.on_review(state, "满意", T0 + 3 * HOUR, "r-2")
    assert events(fx) == ["reviewed", "closed"] and state["status"] == "closed"
    assert json.loads(fx.events[0]["detail"]) ["satisfaction"] == "满意"
    assert [e["event"] for e in fx.lifecycle] == ["closed"]
    _, fx = lc.on_review(state, "满意", T0 + 3 * HOUR, "r-2")
    assert not fx  # a redelivered 回访 changes nothing


def test_review_before_resolve_waits_for_resolve(rules: RuleSet) -> None:
    state = routed(rules)
    state, _ = lc.on_feedback(state, fb(state, "sign", T0 + MIN), rules)
    state, fx = lc.on_review(state, "不满意", T0 + 2 * MIN)
    assert not fx and state["status"] == "signed"
    state, fx = lc.on_feedback(state, fb(state, "resolve", T0 + 3 * MIN), rules)
    assert events(fx) == ["resolved", "reviewed", "closed"]


def test_return_reroutes_to_next_rule_then_centre(rules: RuleSet) -> None:
    state = routed(rules)
    first = state["lead"]
    state, fx = lc.on_feedback(state, fb(state, "return", T0 + MIN, note="不属于本部门职责"), rules)
    assert events(fx) == ["returned", "dispatched"]
    assert json.loads(fx.events[0]["detail"])["reason"] == "不属于本部门职责"
    assert [(d["agency"], d["reason"], d["previousDispatchId"]) for d in fx.dispatches] == [
        ("330502.town-330502001", "return", first)]
    assert state["status"] == "dispatched" and state["dispatches"][first]["status"] == "returned"
    state, fx = lc.on_feedback(state, fb(state, "return", T0 + 2 * MIN, note="需县级协调"), rules)
    assert [d["agency"] for d in fx.dispatches] == ["330502.zzzx"]
    state, fx = lc.on_feedback(state, fb(state, "return", T0 + 3 * MIN, note="x"), rules)
    assert [d["agency"] for d in fx.dispatches] == ["330500.zzzx"]
    with pytest.raises(lc.Rejected, match="every level"):
        lc.on_feedback(state, fb(state, "return", T0 + 4 * MIN, note="x"), rules)


def test_extend_within_limits(rules: RuleSet) -> None:
    state = routed(rules)
    state, _ = lc.on_feedback(state, fb(state, "sign", T0 + MIN), rules)
    lead = state["lead"]
    deadline = state["dispatches"][lead]["resolve_deadline"]
    state, fx = lc.on_feedback(state, fb(state, "extend", T0 + 2 * MIN, deadline=deadline + 2 * DAY), rules)
    assert events(fx) == ["extended"] and state["dispatches"][lead]["resolve_deadline"] == deadline + 2 * DAY
    assert json.loads(fx.events[0]["detail"])["new_deadline"] == deadline + 2 * DAY
    state, _ = lc.on_feedback(state, fb(state, "extend", T0 + 3 * MIN, deadline=deadline + 9 * DAY), rules)
    with pytest.raises(lc.Rejected, match="already extended 2 times"):
        lc.on_feedback(state, fb(state, "extend", T0 + 4 * MIN, deadline=deadline + 10 * DAY), rules)


@pytest.mark.parametrize("mutate, reason", [
    (lambda s: fb(s, "sign", T0 + MIN, did="nope", agency="330502.zhzf"), "unknown dispatch"),
    (lambda s: fb(s, "sign", T0 + MIN, agency="330502.scjg"), "not the addressee"),
    (lambda s: fb(s, "resolve", T0 + MIN), "resolve before sign"),
    (lambda s: fb(s, "progress", T0 + MIN), "progress before sign"),
    (lambda s: fb(s, "extend", T0 + MIN, deadline=s["dispatches"][s["lead"]]["resolve_deadline"] + 8 * DAY),
     "extend past the limit"),
    (lambda s: fb(s, "extend", T0 + MIN, deadline=T0), "later"),
])
def test_illegal_feedback_is_rejected_and_state_unchanged(rules: RuleSet, mutate: Any, reason: str) -> None:
    state = routed(rules)
    before = json.dumps(state, sort_keys=True)
    with pytest.raises(lc.Rejected, match=reason):
        lc.on_feedback(state, mutate(state), rules)
    assert json.dumps(state, sort_keys=True) == before


def test_unknown_case_feedback_rejected(rules: RuleSet) -> None:
    with pytest.raises(lc.Rejected, match="unknown case"):
        lc.on_feedback(None, {"dispatchId": "d", "caseId": "c", "agency": "a", "action": "sign", "time": 1}, rules)


@pytest.mark.parametrize("raw, reason", [
    (b"not json", "not JSON"),
    (b"[1]", "JSON object"),
    (b'{"caseId": "c", "agency": "a", "action": "sign", "time": 1}', "'dispatchId' is required"),
    (b'{"dispatchId": "d", "caseId": "c", "agency": "a", "action": "approve", "time": 1}', "unknown action"),
    (b'{"dispatchId": "d", "caseId": "c", "agency": "a", "action": "sign"}', "'time' is required"),
    (b'{"dispatchId": "d", "caseId": "c", "agency": "a", "action": "sign", "time": "yesterday"}', "time must be"),
    (b'{"dispatchId": "d", "caseId": "c", "agency": "a", "action": "extend", "time": 1}', "needs 'deadline'"),
    (b'{"dispatchId": "d", "caseId": "c", "agency": "a", "action": "return", "time": 1}', "needs 'note'"),
    (b"\xc3\x01garbage!!", "malformed feedback"),
])
def test_malformed_feedback(raw: bytes, reason: str) -> None:
    with pytest.raises(lc.Rejected, match=reason):
        lc.parse_feedback(raw)


def test_feedback_json_and_avro_forms() -> None:
    doc = lc.parse_feedback(b'{"dispatchId": "d", "caseId": "c", "agency": "a", "action": "sign", '
                            b'"time": "2025-10-09T12:00:00+08:00"}')
    assert doc["time"] == 1759982400000
    avro = codec("Feedback").encode({"dispatchId": "d", "caseId": "c", "agency": "a", "action": "extend",
                                     "time": 5, "note": None, "deadline": 10})
    assert lc.parse_feedback(avro)["deadline"] == 10


def test_duplicate_feedback_is_a_no_op(rules: RuleSet) -> None:
    state = routed(rules)
    state, fx = lc.on_feedback(state, fb(state, "sign", T0 + MIN), rules)
    again, fx2 = lc.on_feedback(state, fb(state, "sign", T0 + MIN), rules)
    assert events(fx) == ["signed"] and not fx2 and again == state
    with pytest.raises(lc.Rejected, match="already signed"):
        lc.on_feedback(state, fb(state, "sign", T0 + 2 * MIN), rules)


def test_overdue_fires_once_per_deadline_and_escalates(rules: RuleSet) -> None:
    state = routed(rules)
    lead = state["lead"]
    sign_deadline = state["dispatches"][lead]["sign_deadline"]
    assert lc.next_due(state, rules) == sign_deadline
    same, fx = lc.on_tick(state, sign_deadline - 1, rules)
    assert not fx and same is state
    state, fx = lc.on_tick(state, sign_deadline + 10, rules)
    assert events(fx) == ["overdue", "escalated"]
    overdue, escalated = fx.events
    assert json.loads(overdue["detail"])["clock"] == "sign" and overdue["at"] == sign_deadline
    assert overdue["agency"] == "330502.zhzf" and overdue["dispatch_id"] == lead
    esc = json.loads(escalated["detail"])
    assert esc["level"] == 1 and esc["to"] == "330502.town-330502001"
    assert esc["new_deadline"] == sign_deadline + HOUR
    assert [(d["agency"], d["reason"], d["escalationLevel"]) for d in fx.dispatches] == [
        ("330502.town-330502001", "escalation", 1)]
    _, fx = lc.on_tick(state, sign_deadline + 20, rules)
    assert not fx  # once per deadline
    # The new (granted) deadline passes too: next level.
    state, fx = lc.on_tick(state, sign_deadline + HOUR + 1, rules)
    assert events(fx) == ["overdue", "escalated"] and json.loads(fx.events[1]["detail"])["to"] == "330502.zzzx"
    # Signing stops the sign clock; the resolve clock goes on.
    state, _ = lc.on_feedback(state, fb(state, "sign", sign_deadline + HOUR + 2), rules)
    resolve_deadline = state["dispatches"][lead]["resolve_deadline"]
    assert lc.next_due(state, rules) == resolve_deadline
    state, fx = lc.on_tick(state, resolve_deadline, rules)
    assert [json.loads(e["detail"]).get("clock") for e in fx.events] == ["resolve", "resolve"]
    assert json.loads(fx.events[1]["detail"])["to"] == "330500.zzzx"
    state, fx = lc.on_tick(state, resolve_deadline + HOUR, rules)
    assert events(fx) == ["overdue"]  # at the top: reported, nobody above


def test_resolved_case_without_review_closes_after_window(rules: RuleSet) -> None:
    state = routed(rules)
    state, _ = lc.on_feedback(state, fb(state, "sign", T0 + MIN), rules)
    state, _ = lc.on_feedback(state, fb(state, "resolve", T0 + 2 * MIN), rules)
    assert lc.next_due(state, rules) == T0 + 2 * MIN + 2 * DAY
    state, fx = lc.on_tick(state, T0 + 3 * DAY, rules)
    assert events(fx) == ["closed"] and state["status"] == "closed" and fx.lifecycle[0]["event"] == "closed"
    assert lc.next_due(state, rules) is None


def test_case_of_unknown_county_is_refused(rules: RuleSet) -> None:
    with pytest.raises(ValueError, match="not a Zhejiang county"):
        lc.on_case(None, make_case(county_code="110101", street_code=None), rules)
