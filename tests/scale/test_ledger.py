"""The fault tests' ledger (tests/helpers/ledger.py) on hand-made hop contents, without Kafka: it must
report a lost id and a duplicate under a new id, and let a plain redelivery pass."""

from __future__ import annotations

import json

import pytest

from helpers.ledger import Ledger, assert_no_loss, expect, incidents, observe, raw_source_ref, ref_key

FP = "four-platforms"


def run(reports: dict[str, list[str]], links: list[tuple[str, str]], cases: list[str],
        dispatches: list[tuple[str, str, str]], agency_copies: list[tuple[str, str, str]] | None = None) -> Ledger:
    """A ledger filled by hand: ``reports`` source_ref -> report ids (one entry per record),
    ``links`` (source_ref, case id) records, ``cases`` case id records, ``dispatches`` (case, agency,
    dispatch id) records on ``dispatches`` (and the agency topics: the same unless given)."""
    ledger = Ledger(title="hand-made")
    observe(ledger, "raw", [(ref_key(FP, ref), ref_key(FP, ref)) for ref in reports])
    observe(ledger, "reports", [(ref_key(FP, ref), rid) for ref, rids in reports.items() for rid in rids])
    hop = ledger.hop("reports.linked")
    for ref, case_id in links:
        hop.add(ref_key(FP, ref), case_id)
        ledger.link(ref_key(FP, ref), case_id)
    observe(ledger, "cases", [(c, c) for c in cases])
    observe(ledger, "dispatches", [(f"{c}|{a}", d) for c, a, d in dispatches])
    observe(ledger, "dispatch.<agency>", [(f"{c}|{a}", d) for c, a, d in
                                          (dispatches if agency_copies is None else agency_copies)])
    return ledger


CLEAN = dict(reports={"E1": ["r1"], "E2": ["r2"], "E3": ["r3"]},
             links=[("E1", "c1"), ("E2", "c1"), ("E3", "c3")], cases=["c1", "c3"],
             dispatches=[("c1", "330502.zhzf", "d1"), ("c3", "330502.scjg", "d3")])
SENT = {ref_key(FP, ref) for ref in ("E1", "E2", "E3")}


def test_a_clean_run_passes_and_prints_every_hop(capsys: pytest.CaptureFixture[str]) -> None:
    ledger = expect(run(**CLEAN), source_refs=SENT)  # type: ignore[arg-type]
    assert_no_loss(ledger)
    table = capsys.readouterr().out
    for hop in ("raw", "reports", "reports.linked", "cases", "dispatches", "dispatch.<agency>"):
        assert f"\n{hop} " in table
    assert ledger.hops["cases"].expected == {"c1", "c3"}
    assert ledger.hops["reports.linked"].expected == SENT


def test_a_redelivery_is_allowed_and_counted() -> None:
    ledger = run(reports={"E1": ["r1", "r1"], "E2": ["r2"], "E3": ["r3"]},
                 links=[("E1", "c1"), ("E1", "c1"), ("E2", "c1"), ("E3", "c3")], cases=["c1", "c1", "c3"],
                 dispatches=[("c1", "330502.zhzf", "d1"), ("c1", "330502.zhzf", "d1"), ("c3", "330502.scjg", "d3")])
    expect(ledger, source_refs=SENT)
    assert_no_loss(ledger)
    assert {n: h.redelivered for n, h in ledger.hops.items()} == {
        "raw": 0, "reports": 1, "reports.linked": 1, "cases": 1, "dispatches": 1, "dispatch.<agency>": 1}


def test_a_lost_report_fails_at_the_hop_where_it_went_missing() -> None:
    ledger = run(**{**CLEAN, "reports": {"E1": ["r1"], "E2": ["r2"]}})  # type: ignore[arg-type]
    expect(ledger, source_refs=SENT)
    assert ledger.hops["reports"].lost == {ref_key(FP, "E3")}
    assert ledger.hops["raw"].lost == {ref_key(FP, "E3")}  # the raw hop saw only what `run` was given
    with pytest.raises(AssertionError) as failure:
        assert_no_loss(ledger)
    message = str(failure.value)
    assert "reports: 1 lost" in message and "four-platforms|E3" in message
    assert "dup-new-id" in message  # the table is in the message


def test_a_source_ref_under_two_report_ids_is_a_duplicate() -> None:
    ledger = expect(run(**{**CLEAN, "reports": {"E1": ["r1", "r1-bis"], "E2": ["r2"], "E3": ["r3"]}}),  # type: ignore[arg-type]
                    source_refs=SENT)
    assert ledger.hops["reports"].duplicated == {ref_key(FP, "E1"): {"r1", "r1-bis"}}
    with pytest.raises(AssertionError, match="reports: 1 duplicated under a new id"):
        assert_no_loss(ledger)


def test_a_lost_case_and_a_lost_agency_copy_are_reported() -> None:
    ledger = expect(run(**{**CLEAN, "cases": ["c1"],  # type: ignore[arg-type]
                           "agency_copies": [("c1", "330502.zhzf", "d1")]}), source_refs=SENT)
    assert ledger.hops["cases"].lost == {"c3"}
    assert ledger.hops["dispatch.<agency>"].lost == {"c3|330502.scjg"}
    assert ledger.hops["dispatches"].lost == set()
    assert not ledger.ok()


def test_one_case_agency_pair_with_two_dispatch_ids_is_a_duplicate() -> None:
    twice = [("c1", "330502.zhzf", "d1"), ("c1", "330502.zhzf", "d1-again"), ("c3", "330502.scjg", "d3")]
    ledger = expect(run(**{**CLEAN, "dispatches": twice}), source_refs=SENT)  # type: ignore[arg-type]
    assert ledger.hops["dispatches"].duplicated == {"c1|330502.zhzf": {"d1", "d1-again"}}
    with pytest.raises(AssertionError, match="dispatches: 1 duplicated under a new id"):
        assert_no_loss(ledger)


def test_a_second_case_for_one_incident_is_found_against_the_crash_free_run() -> None:
    reference = expect(run(**CLEAN), source_refs=SENT)  # type: ignore[arg-type]
    # The crashed run lost fusion state: E2 opened its own case c2 (each record seen once).
    crashed = run(reports=CLEAN["reports"], links=[("E1", "c1"), ("E2", "c2"), ("E3", "c3")],  # type: ignore[arg-type]
                  cases=["c1", "c2", "c3"], dispatches=[("c1", "330502.zhzf", "d1"), ("c2", "330502.zhzf", "d2"),
                                                        ("c3", "330502.scjg", "d3")])
    plain = expect(run(**{**CLEAN, "links": [("E1", "c1"), ("E2", "c2"), ("E3", "c3")],  # type: ignore[arg-type]
                          "cases": ["c1", "c2", "c3"]}), source_refs=SENT)
    assert plain.ok()  # without the reference, nothing is visibly wrong
    expect(incidents(crashed, reference), source_refs=SENT, reference=reference)
    assert crashed.hops["cases"].duplicated == {"c1": {"c1", "c2"}}
    assert crashed.hops["reports.linked"].duplicated == {ref_key(FP, "E2"): {"c2"}}
    assert crashed.hops["dispatches"].duplicated == {"c1|330502.zhzf": {"d1", "d2"}}
    with pytest.raises(AssertionError, match="cases: 1 duplicated under a new id"):
        assert_no_loss(crashed)


def test_the_same_run_against_its_reference_passes() -> None:
    reference = expect(run(**CLEAN), source_refs=SENT)  # type: ignore[arg-type]
    again = expect(incidents(run(**CLEAN), reference), source_refs=SENT, reference=reference)  # type: ignore[arg-type]
    assert_no_loss(again)
    lost = expect(incidents(run(**{**CLEAN, "dispatches": CLEAN["dispatches"][:1]}), reference),  # type: ignore[index]
                  source_refs=SENT, reference=reference)
    assert lost.hops["dispatches"].lost == {"c3|330502.scjg"}


def test_raw_source_ref_follows_ingest() -> None:
    assert raw_source_ref("four-platforms", json.dumps({"eventId": "E-1"}).encode()) == "E-1"
    assert raw_source_ref("hotline-12345", json.dumps({"orderNo": "ZJ1"}).encode()) == "ZJ1"
    assert raw_source_ref("sensors", json.dumps({"deviceId": "86001", "eventTime": "2025-06-16T09:00:01+08:00"})
                          .encode()) == "86001@2025-06-16T09:00:01+08:00"
    assert raw_source_ref("sensors", b"\x00garbage") is None
    assert raw_source_ref("hotline-12345", b"[1, 2]") is None
