"""bench/logic.py: the hub's transforms over the e2e mix, in process; every stage sees what the last one made."""

from __future__ import annotations

from bench.logic import run_logic


def test_each_stage_takes_the_previous_stages_records() -> None:
    run = run_logic(400, seed=141)

    assert run.documents == 400
    assert run.reports, "the e2e mix has reports among its first 400 documents"
    # fusion linked every report it was given, but for those it says it had no case for
    linked = {r["report_id"] for r in run.linked}
    assert linked <= {r["report_id"] for r in run.reports}
    unlinked = {r["report_id"] for r in run.reports} - linked
    assert {run.outcomes[rid] for rid in unlinked} <= {"stale", "orphan_recover", "ignored"}
    # routing saw every case fusion emitted, and dispatched only those
    case_ids = {c["case_id"] for c in run.cases}
    assert {r["case_id"] for r in run.linked} == case_ids
    assert run.dispatches and {d["caseId"] for d in run.dispatches} <= case_ids
    assert set(run.cpu_s) == {"ingest", "fusion", "routing", "avro", "total"}
    assert abs(run.cpu_s["total"] - sum(v for k, v in run.cpu_s.items() if k != "total")) < 1e-9
    assert all(seconds >= 0 for seconds in run.cpu_s.values())
    assert run.ms_per_doc()["total"] == round(run.cpu_s["total"] * 1000 / 400, 4)
