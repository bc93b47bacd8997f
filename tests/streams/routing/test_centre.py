"""The county centre's actions as routing transitions, and fusion's respect for them, without Kafka."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams.centre import fusion_hook
from streams.routing import centre
from streams.routing import lifecycle as lc
from streams.routing.rules import RuleSet, load_rules

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
T0 = 1_760_000_000_000  # 2025-10-09 (an arbitrary instant)
MIN = 60_000
DAY = 86_400_000


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(DEPLOY / "routing.yaml")


def case(version: int = 1, **kw: Any) -> dict[str, Any]:
    c = {"case_id": "c-1", "county_code": "330502", "street_code": "330502001", "category": "garbage",
         "severity": 1, "sources": ["four-platforms"], "report_ids": ["r1", "r2"], "report_count": 2,
         "first_seen": T0, "last_seen": T0, "status": "reported", "dispatchable": True, "device_ids": [],
         "version": version, "updated_at": T0 + version}
    c.update(kw)
    return c


def cmd(action: str, at: int, **kw: Any) -> dict[str, Any]:
    return centre.parse_command({"caseId": kw.pop("caseId", "c-1"), "action": action, "operator": "op-007",
                                 "reason": "测试理由", "time": at, **kw})


def names(fx: lc.Effects) -> list[str]:
    return [e["event"] for e in fx.events]


def test_assign_lead_and_assist_are_audited_and_stick(rules: RuleSet) -> None:
    s, _ = lc.on_case(None, case(), rules)
    s, fx = centre.on_command(s, cmd("assign", T0 + MIN, agency="scjg"), rules)
    assert names(fx) == ["withdrawn", "centre_assign", "dispatched"]
    audit = json.loads(fx.events[1]["detail"])
    assert (audit["operator"], audit["reason"], audit["previous_lead"]) == ("op-007", "测试理由", "330502.zhzf")
    assert [(d["agency"], d["action"], d["reason"]) for d in fx.dispatches] == [
        ("330502.zhzf", "withdraw", "rule:city-management"), ("330502.scjg", "dispatch", "centre")]
    # a later case version with another category does not take the lead away
    s, fx = lc.on_case(s, case(version=2, category="noise"), rules)
    assert [d["agency"] for d in fx.dispatches if d["action"] == "withdraw"] == []
    assert s["dispatches"][s["lead"]]["agency"] == "330502.scjg"
    s, fx = centre.on_command(s, cmd("assign", T0 + 2 * MIN, agency="330502.sthj", role="assist"), rules)
    assert [(d["agency"], d["role"]) for d in fx.dispatches] == [("330502.sthj", "assist")]
    same, fx = centre.on_command(s, cmd("assign", T0 + 2 * MIN, agency="330502.sthj", role="assist"), rules)
    assert same is s and not fx  # redelivered command
    with pytest.raises(lc.Rejected, match="unknown agency"):
        centre.on_command(s, cmd("assign", T0, agency="nope"), rules)


def test_recategorise_reroutes_and_survives_later_reports(rules: RuleSet) -> None:
    s, _ = lc.on_case(None, case(), rules)
    s, fx = centre.on_command(s, cmd("recategorise", T0 + MIN, category="food_safety"), rules)
    assert names(fx) == ["centre_recategorise", "withdrawn", "rerouted", "dispatched"]
    assert fx.dispatches[-1]["agency"] == "330502.scjg" and s["category"] == "food_safety"
    assert [e["event"] for e in fx.lifecycle] == ["recategorised"]
    s, fx = lc.on_case(s, case(version=2, category="garbage", report_count=3), rules)
    assert s["category"] == "food_safety" and not fx.dispatches
    with pytest.raises(lc.Rejected, match="unknown category"):
        centre.on_command(s, cmd("recategorise", T0, category="astrology"), rules)


def test_reopen_by_hand_and_on_unsatisfied_review(rules: RuleSet) -> None:
    s, _ = lc.on_case(None, case(), rules)
    lead = s["lead"]
    for action in ("sign", "resolve"):
        s, _ = lc.on_feedback(s, {"dispatchId": lead, "caseId": "c-1", "agency": "330502.zhzf", "action": action,
                                  "time": T0 + MIN, "note": None, "deadline": None}, rules)
    with pytest.raises(lc.Rejected, match="not finished"):
        centre.on_command(lc.on_case(None, case(), rules)[0], cmd("reopen", T0), rules)
    s2, fx = lc.on_review(s, "不满意", T0 + 2 * MIN, "r-rv", rules)
    assert names(fx) == ["reviewed", "closed", "centre_reopen", "dispatched"]
    assert [e["event"] for e in fx.lifecycle] == ["closed", "reopened"] and s2["status"] == "dispatched"
    assert fx.dispatches[0]["agency"] == "330502.zhzf" and fx.dispatches[0]["dispatchId"] != lead
    s3, fx = lc.on_review(s, "满意", T0 + 2 * MIN, "r-rv", rules)
    assert names(fx) == ["reviewed", "closed"]
    s4, fx = centre.on_command(s3, cmd("reopen", T0 + DAY, deadline=T0 + 3 * DAY), rules)
    assert names(fx) == ["centre_reopen", "dispatched"] and fx.dispatches[0]["resolveDeadline"] == T0 + 3 * DAY


def test_merge_and_split(rules: RuleSet) -> None:
    s, _ = lc.on_case(None, case(), rules)
    s["refs"] = {"hotline-12345": ["ORD-1"]}
    s, fx = centre.on_command(s, cmd("merge", T0 + MIN, intoCaseId="c-2"), rules)
    assert names(fx) == ["withdrawn", "centre_merge", "closed"] and s["merged_into"] == "c-2"
    assert [e["event"] for e in fx.lifecycle] == ["merged"]
    follow_up = fx.commands[0]
    assert (follow_up["caseId"], follow_up["action"], follow_up["refs"]) == ("c-2", "absorb",
                                                                            {"hotline-12345": ["ORD-1"]})
    _, fx = lc.on_case(s, case(version=5, category="noise"), rules)
    assert not fx  # a merged case never comes back
    with pytest.raises(lc.Rejected, match="was merged into c-2"):
        centre.on_command(s, cmd("assign", T0 + 2 * MIN, agency="scjg"), rules)
    t, _ = lc.on_case(None, case(case_id="c-2"), rules)
    t, fx = centre.on_command(t, centre.parse_command(follow_up), rules)
    assert names(fx) == ["merged_in"] and t["refs"] == {"hotline-12345": ["ORD-1"]}

    s, _ = lc.on_case(None, case(), rules)
    s, fx = centre.on_command(s, cmd("split", T0 + MIN, reportId="r2", source="four-platforms", sourceRef="E2",
                                     category="noise"), rules)
    assert names(fx) == ["centre_split"] and fx.lifecycle[0]["event"] == "split"
    assert json.loads(fx.lifecycle[0]["detail"])["new_case_id"] == centre.split_case_id("c-1", "r2")


class Dict:
    def __init__(self) -> None:
        self.d: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.d.get(key)

    def set(self, key: str, value: bytes) -> None:
        self.d[key] = value

    def delete(self, key: str) -> None:
        self.d.pop(key, None)


def test_fusion_respects_merge_split_and_category(rules: RuleSet) -> None:
    from streams.fusion.config import load_config
    from streams.fusion.engine import FusionEngine

    engine = FusionEngine(load_config())
    kv = Dict()

    def report(rid: str, ref: str, lng: float, text: str, version: int = 1, category: str = "garbage") -> dict[str, Any]:
        return {"report_id": rid, "source": "four-platforms", "source_ref": ref, "kind": "incident",
                "county_code": "330502", "street_code": "330502001", "category": category, "title": text,
                "text": text, "address": None, "lng": lng, "lat": 30.87, "occurred_at": T0, "reported_at": T0,
                "received_at": T0, "severity": 1, "version": version, "dispatchable": True}

    a = engine.process_report(kv, report("ra", "EA", 120.09, "某小区门口垃圾堆积")).cases[-1]["case_id"]
    b = engine.process_report(kv, report("rb", "EB", 120.20, "另一处道路破损严重", category="road_damage"))
    b_id = b.cases[-1]["case_id"]
    assert a != b_id
    merged, _ = lc.on_case(None, case(case_id=a), rules)
    _, fx = centre.on_command(merged, cmd("merge", T0 + MIN, caseId=a, intoCaseId=b_id), rules)
    res = engine.process_lifecycle(kv, fx.lifecycle[0])
    by_id = {c["case_id"]: c for c in res.cases}
    assert by_id[a]["status"] == "closed" and set(by_id[b_id]["report_ids"]) == {"ra", "rb"}
    # an update of the merged case's report lands in the target: merged cases never come apart
    res = engine.process_report(kv, report("ra", "EA", 120.09, "某小区门口垃圾堆积 仍未处理", version=2))
    assert [r["case_id"] for r in res.linked] == [b_id]
    # split rb off: a new case, and a later version of rb stays there
    s, _ = lc.on_case(None, case(case_id=b_id), rules)
    _, fx = centre.on_command(s, cmd("split", T0 + 2 * MIN, caseId=b_id, reportId="rb", source="four-platforms",
                                     sourceRef="EB", category="road_damage"), rules)
    res = engine.process_lifecycle(kv, fx.lifecycle[0])
    new_id = centre.split_case_id(b_id, "rb")
    assert {c["case_id"] for c in res.cases} == {b_id, new_id}
    assert next(c for c in res.cases if c["case_id"] == b_id)["report_ids"] == ["ra"]
    res = engine.process_report(kv, report("rb", "EB", 120.20, "另一处道路破损严重 更新", version=2,
                                           category="road_damage"))
    assert [r["case_id"] for r in res.linked] == [new_id]
    # a manual category is not overwritten by a later version of the opening report
    s, _ = lc.on_case(None, case(case_id=new_id), rules)
    _, fx = centre.on_command(s, cmd("recategorise", T0 + 3 * MIN, caseId=new_id, category="utilities"), rules)
    engine.process_lifecycle(kv, fx.lifecycle[0])
    res = engine.process_report(kv, report("rb", "EB", 120.20, "另一处道路破损严重 再更新", version=3,
                                           category="road_damage"))
    assert res.cases[-1]["category"] == "utilities"
