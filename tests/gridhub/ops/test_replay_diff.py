"""`gridhub replay diff` comparison, without servers (tests/gridhub/ops/test_replay_diff_e2e.py runs it for real)."""

from __future__ import annotations

import json

from gridhub.ops import replay_diff as rd


def s(case_id: str, **kw: object) -> rd.CaseSummary:
    base = rd.CaseSummary(case_id, category="garbage", lead="330502.zhzf", assist=[], deadline=1000,
                          escalations=0, reports=[f"hotline-12345:{case_id}"])
    for k, v in kw.items():
        setattr(base, k, v)
    return base


def test_every_kind_of_difference_and_the_totals() -> None:
    live = {"A": s("A"), "B": s("B"), "C": s("C", reports=["hotline-12345:C", "four-platforms:E1"]), "D": s("D")}
    shadow = {"A": s("A"), "B": s("B", lead="330502.scjg", deadline=2000, assist=["330502.zzzx"], escalations=1),
              "C": s("C"), "E": s("E", reports=["four-platforms:E1"]), "D": s("D", category="noise")}
    diffs, totals = rd.diff(live, shadow)
    by_case = {d.case_id: d for d in diffs}
    assert set(by_case) == {"B", "C", "D", "E"}  # A is the same on both sides
    assert by_case["B"].changes == {"lead": {"live": "330502.zhzf", "shadow": "330502.scjg"},
                                    "assist": {"live": [], "shadow": ["330502.zzzx"]},
                                    "deadline": {"live": 1000, "shadow": 2000},
                                    "escalations": {"live": 0, "shadow": 1}}
    assert by_case["C"].changes == {"fusion": {"live": ["hotline-12345:C", "four-platforms:E1"],
                                               "shadow": ["hotline-12345:C"]}}
    assert by_case["D"].changes == {"category": {"live": "garbage", "shadow": "noise"}}
    assert by_case["E"].only_in == "shadow"
    assert (totals["cases_changed"], totals["only_shadow"], totals["lead"], totals["fusion"], totals["category"]) == (
        3, 1, 1, 2, 1)
    text = rd.render(diffs, totals, "gridhub", "gridhub_shadow")
    assert "330502.scjg" in text and "differences: lead 1, assist 1, category 1, deadline 1, escalations 1, fusion 2" \
        in text
    doc = json.loads(rd.as_json(diffs, totals, "gridhub", "gridhub_shadow"))
    assert doc["totals"] == totals and [c["case_id"] for c in doc["cases"]] == ["B", "C", "D", "E"]
