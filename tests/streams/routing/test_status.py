"""Status replies to the source systems and the 12345 order deadline, without Kafka."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams.routing import lifecycle as lc
from streams.routing import status as st
from streams.routing.rules import RuleSet, load_rules
from helpers.routing import T0, HOUR, DAY

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(DEPLOY / "routing.yaml")


def case(version: int = 1, **kw: Any) -> dict[str, Any]:
    c = {"case_id": "c-st", "county_code": "330502", "street_code": "330502001", "category": "garbage",
         "severity": 1, "sources": ["hotline-12345", "four-platforms"], "report_ids": ["r1", "r2"],
         "report_count": 2, "first_seen": T0, "last_seen": T0, "status": "reported", "dispatchable": True,
         "device_ids": [], "version": version, "updated_at": T0 + version}
    c.update(kw)
    return c


def report(source: str, ref: str, **kw: Any) -> dict[str, Any]:
    r = {"report_id": f"r-{ref}", "source": source, "source_ref": ref, "case_id": "c-st", "county_code": "330502",
         "street_code": "330502001", "category": "garbage", "severity": 1, "reported_at": T0, "received_at": T0,
         "deadline": None, "satisfaction": None}
    r.update(kw)
    return r


def step(state: dict[str, Any] | None, result: tuple[dict[str, Any] | None, lc.Effects]) -> tuple[Any, lc.Effects]:
    new, fx = result
    if new is not None and new is not state:
        lc.with_replies(new, fx)
    return new, fx


def replies(fx: lc.Effects) -> list[tuple[str, str, str | None]]:
    return [(r["sourceRef"], r["state"], r["leadAgency"]) for r in fx.status]


def fb(state: dict[str, Any], action: str, at: int, **kw: Any) -> dict[str, Any]:
    did = state["lead"]
    return {"dispatchId": did, "caseId": state["case_id"], "agency": state["dispatches"][did]["agency"],
            "action": action, "time": at, "note": kw.get("note"), "deadline": None}


def test_every_reply_state_in_order(rules: RuleSet) -> None:
    s, fx = step(None, lc.on_linked(None, report("hotline-12345", "ORD-1")))  # before the case itself
    assert replies(fx) == [("ORD-1", "受理", None)]
    s, fx = step(s, lc.on_case(s, case(), rules))
    assert replies(fx) == [("ORD-1", "已派发", "330502.zhzf")]
    assert fx.status[0]["deadline"] == T0 + 1 + 5 * DAY and s["opened_at"] == T0
    s, fx = step(s, lc.on_linked(s, report("four-platforms", "EV-9")))  # a second source joins
    assert replies(fx) == [("EV-9", "受理", "330502.zhzf"), ("EV-9", "已派发", "330502.zhzf")]
    assert {st.encode(r)[0] for r in fx.status} == {"status.four-platforms"}
    for action, expected in (("sign", "已签收"), ("progress", "办理中")):
        s, fx = step(s, lc.on_feedback(s, fb(s, action, T0 + HOUR), rules))
        assert replies(fx) == [("ORD-1", expected, "330502.zhzf"), ("EV-9", expected, "330502.zhzf")]
    s, fx = step(s, lc.on_feedback(s, fb(s, "return", T0 + 2 * HOUR, note="不属于本部门职责"), rules))
    assert replies(fx) == [("ORD-1", "退回", "330502.town-330502001"), ("ORD-1", "已派发", "330502.town-330502001"),
                           ("EV-9", "退回", "330502.town-330502001"), ("EV-9", "已派发", "330502.town-330502001")]
    assert fx.status[0]["reason"] == "不属于本部门职责"
    s, fx = step(s, lc.on_feedback(s, fb(s, "sign", T0 + 3 * HOUR), rules))
    s, fx = step(s, lc.on_feedback(s, fb(s, "resolve", T0 + 4 * HOUR, note="已清理，联系人张三 13812345678"), rules))
    assert {r["state"] for r in fx.status} == {"已办结"}
    text = fx.status[0]["replyText"]
    assert "13812345678" not in text and "138****5678" in text and text.startswith("已清理")
    key, value = st.encode(fx.status[0])[1:]
    assert key == b"ORD-1" and json.loads(value)["caseId"] == "c-st"
    # a 回访 closes the case: 已办结 was said already, nothing new
    s, fx = step(s, lc.on_review(s, "满意", T0 + 5 * HOUR))
    assert [e["event"] for e in fx.events] == ["reviewed", "closed"] and fx.status == []


def test_replies_are_remembered_and_ids_deterministic(rules: RuleSet) -> None:
    s, fx1 = step(None, lc.on_linked(None, report("hotline-12345", "ORD-1")))
    s2, fx2 = step(None, lc.on_linked(None, report("hotline-12345", "ORD-1")))
    assert [r["statusId"] for r in fx1.status] == [r["statusId"] for r in fx2.status]
    same, fx = lc.on_linked(s, report("hotline-12345", "ORD-1"))  # the same report again: no state write
    assert same is s and not fx


def test_order_deadline_earlier_than_the_rule_wins(rules: RuleSet) -> None:
    order = T0 + 2 * DAY
    s, _ = step(None, lc.on_linked(None, report("hotline-12345", "ORD-1", deadline=order)))
    s, fx = step(s, lc.on_case(s, case(), rules))
    lead = fx.dispatches[0]
    assert lead["resolveDeadline"] == order and json.loads(fx.events[0]["detail"])["resolve_deadline_from"] == "order"
    # after dispatch: the agency gets the dispatch again with the earlier deadline
    s, _ = step(None, lc.on_case(None, case(), rules))
    s, fx = step(s, lc.on_linked(s, report("hotline-12345", "ORD-2", deadline=order)))
    assert [(d["action"], d["resolveDeadline"]) for d in fx.dispatches] == [("update", order)]
    assert [e["event"] for e in fx.events] == ["deadline_changed"]
    assert s["dispatches"][s["lead"]]["resolve_deadline"] == order
    # a later order deadline changes nothing
    s, fx = step(s, lc.on_linked(s, report("hotline-12345", "ORD-3", deadline=order + DAY)))
    assert fx.dispatches == [] and s["dispatches"][s["lead"]]["resolve_deadline"] == order


def test_an_earlier_order_deadline_of_a_known_order_is_kept_before_dispatch(rules: RuleSet) -> None:
    """An order's update with an earlier 办理时限, before the case is dispatched: the state keeps it, so
    the dispatch uses it (and a redelivery of the same update later changes nothing)."""
    order = T0 + 2 * DAY
    s, _ = step(None, lc.on_linked(None, report("hotline-12345", "ORD-1")))  # first version: no deadline
    s, _ = step(s, lc.on_linked(s, report("hotline-12345", "ORD-1", deadline=order)))  # the update
    assert s["order_deadline"] == order
    s, fx = step(s, lc.on_case(s, case(), rules))
    assert fx.dispatches[0]["resolveDeadline"] == order
    again, fx = lc.on_linked(s, report("hotline-12345", "ORD-1", deadline=order))  # redelivered
    assert fx.dispatches == [] and fx.events == [] and again is s
