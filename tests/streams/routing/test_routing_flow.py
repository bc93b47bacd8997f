"""Routing and the closed loop on the real broker: a `gridhub run --only routing` worker.

Cases are produced straight to `cases` (the fusion output) so these tests
pin routing's own behaviour; tests/streams/routing/test_routing_e2e.py runs
the whole chain from raw documents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gridhub.core.codec import codec
from helpers.kafka import TopicReader
from helpers.routing import (dead_letters, events_for, feedback_doc, make_case, now_ms, produce_case, review_report,
                             send_feedback, write_rules)

pytestmark = pytest.mark.integration
DAY = 86_400_000


def _dispatches(settings: Any, agency: str) -> TopicReader:
    return TopicReader(settings, f"dispatch.{agency}", "Dispatch")


def _one(reader: TopicReader, case_id: str, action: str = "dispatch") -> dict[str, Any]:
    values = reader.until(lambda vs: any(v["caseId"] == case_id and v["action"] == action for v in vs),
                          what=f"{action} of {case_id}")
    return next(v for v in values if v["caseId"] == case_id and v["action"] == action)


def test_closed_loop_triage_severity_fire_return_extend(settings: Any, worker: Any, kafka_producer: Any) -> None:
    worker(settings, only="routing")
    events = TopicReader(settings, "case-events", "CaseEvent")
    zhzf, zzzx = _dispatches(settings, "330502.zhzf"), _dispatches(settings, "330502.zzzx")

    # --- the whole loop: dispatched -> signed -> progress -> resolved -> reviewed -> closed
    produce_case(kafka_producer, settings, make_case("c-loop", "garbage"))
    d = _one(zhzf, "c-loop")
    assert (d["role"], d["reason"], d["countyCode"], d["reporterMasked"]) == ("lead", "rule:city-management",
                                                                                "330502", None)
    assert d["signDeadline"] - d["dispatchedAt"] == 2 * 3_600_000 and d["resolveDeadline"] - d["dispatchedAt"] == 5 * DAY
    for action in ("sign", "progress", "resolve"):
        send_feedback(kafka_producer, settings, feedback_doc(d, action, note=f"{action} ok"))
    events.until(lambda vs: "resolved" in events_for(vs, "c-loop"), what="resolved")
    kafka_producer.send(settings.topic("reports.linked"), key=b"c-loop",
                        value=codec("Report").encode(review_report("c-loop", "满意"))).get(30)
    history = events.until(lambda vs: "closed" in events_for(vs, "c-loop"), what="closed")
    loop = [e for e in history if e["case_id"] == "c-loop"]
    assert [e["event"] for e in loop] == ["dispatched", "signed", "progress", "resolved", "reviewed", "closed"]
    assert [e["state"] for e in loop] == ["dispatched", "signed", "in_progress", "resolved", "reviewed", "closed"]
    assert all(e["agency"] == "330502.zhzf" and e["dispatch_id"] == d["dispatchId"] for e in loop[:4])
    assert json.loads(loop[4]["detail"])["satisfaction"] == "满意"
    detail = json.loads(loop[0]["detail"])
    assert detail["sign_deadline"] == d["signDeadline"] and detail["resolve_deadline"] == d["resolveDeadline"]
    assert all("case_age_ms" in json.loads(e["detail"]) and "state_age_ms" in json.loads(e["detail"]) for e in loop)
    lifecycle = TopicReader(settings, "case-lifecycle", "CaseEvent")
    lifecycle.until(lambda vs: [v["event"] for v in vs if v["case_id"] == "c-loop"] == ["resolved", "closed"],
                    what="case-lifecycle resolved+closed")
    assert {r.key for r in lifecycle.records} == {b"330502"}  # keyed by county: fusion's partitioning

    # --- no rule -> triage at zzzx; severity 3 -> also zzzx; fire alarm -> xfjy and yjgl at once
    produce_case(kafka_producer, settings, make_case("c-other", "other"))
    produce_case(kafka_producer, settings, make_case("c-major", "water_pollution", severity=3))
    produce_case(kafka_producer, settings, make_case("c-fire", "fire", sources=("sensors",), severity=2))
    produce_case(kafka_producer, settings, make_case("c-ask", "consultation", dispatchable=False))
    assert _one(zzzx, "c-other")["reason"] == "triage"
    assert _one(zzzx, "c-major")["reason"] == "severity" and _one(zzzx, "c-major")["role"] == "assist"
    assert _one(_dispatches(settings, "330502.sthj"), "c-major")["role"] == "lead"
    fire = _one(_dispatches(settings, "330502.xfjy"), "c-fire")
    assist = _one(_dispatches(settings, "330502.yjgl"), "c-fire")
    assert (fire["role"], assist["role"], fire["dispatchedAt"]) == ("lead", "assist", assist["dispatchedAt"])

    # --- 退单: the next matching rule (the township platform), with the previous dispatch named
    produce_case(kafka_producer, settings, make_case("c-ret", "garbage"))
    first = _one(zhzf, "c-ret")
    send_feedback(kafka_producer, settings, feedback_doc(first, "return", note="不属于本部门职责"))
    town = _one(_dispatches(settings, "330502.town-330502001"), "c-ret")
    assert (town["reason"], town["previousDispatchId"], town["role"]) == ("return", first["dispatchId"], "lead")
    ret = events.until(lambda vs: events_for(vs, "c-ret")[-2:] == ["returned", "dispatched"], what="return")
    assert json.loads([e for e in ret if e["event"] == "returned"][0]["detail"])["reason"] == "不属于本部门职责"

    # --- 延期: twice within the limit, the third is refused (dlq), the deadline stays
    produce_case(kafka_producer, settings, make_case("c-ext", "garbage"))
    ext = _one(zhzf, "c-ext")
    send_feedback(kafka_producer, settings, feedback_doc(ext, "sign"))
    for i, days in enumerate((2, 9, 10)):
        send_feedback(kafka_producer, settings,
                      feedback_doc(ext, "extend", deadline=ext["resolveDeadline"] + days * DAY, time=now_ms() + i))
    got = events.until(lambda vs: events_for(vs, "c-ext").count("extended") == 2, what="2 extensions")
    extended = [json.loads(e["detail"]) for e in got if e["case_id"] == "c-ext" and e["event"] == "extended"]
    assert [x["new_deadline"] - ext["resolveDeadline"] for x in extended] == [2 * DAY, 9 * DAY]
    dlq = TopicReader(settings, "dlq")
    dlq.until(lambda vs: len(vs) >= 1, what="dlq")
    assert any(stage == "feedback" and "extend past the limit" in reason for stage, reason, _ in dead_letters(dlq.records))

    # --- nothing for the consultation; no double dispatch for a redelivered / replayed case
    produce_case(kafka_producer, settings, make_case("c-loop", "garbage"))  # the same version again
    produce_case(kafka_producer, settings, make_case("c-fire", "fire", sources=("sensors",), severity=2, version=2))
    final = events.settle(4)
    assert events_for(final, "c-ask") == []
    assert [v["caseId"] for v in zhzf.settle(1)].count("c-loop") == 1
    assert events_for(final, "c-fire") == ["dispatched", "dispatched"]
    assert len({e["event_id"] for e in final}) == len(final)


def test_illegal_feedback_goes_to_dlq_and_changes_nothing(settings: Any, worker: Any, kafka_producer: Any) -> None:
    worker(settings, only="routing")
    events = TopicReader(settings, "case-events", "CaseEvent")
    zhzf = _dispatches(settings, "330502.zhzf")
    produce_case(kafka_producer, settings, make_case("c-bad", "garbage"))
    d = _one(zhzf, "c-bad")
    illegal: list[tuple[bytes, str]] = []

    def bad(doc: dict[str, Any] | bytes, reason: str, key: str | None = None) -> None:
        illegal.append((send_feedback(kafka_producer, settings, doc, key=key), reason))

    bad(feedback_doc(d, "sign", dispatchId="no-such-dispatch"), "unknown dispatch")
    bad(feedback_doc(d, "sign", agency="330502.scjg"), "not the addressee")
    bad(feedback_doc(d, "resolve"), "resolve before sign")
    bad(b"{not json", "malformed feedback: not JSON", key="c-bad")
    bad(feedback_doc(d, "approve"), "unknown action")
    bad(feedback_doc(d, "sign", caseId="c-unknown"), "unknown case", key="c-unknown")
    bad(feedback_doc(d, "extend", deadline=d["resolveDeadline"] + 8 * DAY), "extend past the limit")
    dlq = TopicReader(settings, "dlq")
    dlq.until(lambda vs: len(vs) >= len(illegal), what=f"{len(illegal)} dead letters")
    letters = dead_letters(dlq.records)
    # The original bytes, each with its reason (dlq partitions by the original key: compare unordered).
    assert sorted(raw for _, _, raw in letters) == sorted(raw for raw, _ in illegal)
    reasons = {raw: (stage, reason) for stage, reason, raw in letters}
    for raw, expected in illegal:
        stage, reason = reasons[raw]
        assert stage == "feedback" and expected in reason, (expected, reason)
    assert all(r.headers and dict(r.headers)["error.topic"] == settings.topic("feedback").encode() for r in dlq.records)
    # State unchanged: still waiting for 签收, and a legal sign is accepted.
    send_feedback(kafka_producer, settings, feedback_doc(d, "sign"))
    history = events.until(lambda vs: "signed" in events_for(vs, "c-bad"), what="signed")
    assert events_for(history, "c-bad") == ["dispatched", "signed"]


def test_overdue_escalates_once_across_sigkill(settings: Any, worker: Any, kafka_producer: Any,
                                              tmp_path: Path) -> None:
    rules = write_rules(tmp_path, """
        escalation: {grace: 1h}
        clock: {scan_interval: 500ms}
        rules:
          - id: garbage
            match: {category: [garbage]}
            lead: zhzf
            sign: 12s
            resolve: 1h
    """)
    settings.routing_rules = rules
    w = worker(settings, only="routing")
    events = TopicReader(settings, "case-events", "CaseEvent")
    produce_case(kafka_producer, settings, make_case("c-late", "garbage"))
    d = _one(_dispatches(settings, "330502.zhzf"), "c-late")
    events.settle(4)  # past Faust's commit interval (2.8 s): the dispatch and its table write are durable
    w.kill()  # SIGKILL: the deadline passes while no worker runs
    w.start()
    got = events.until(lambda vs: "escalated" in events_for(vs, "c-late"), timeout=90, what="overdue + escalated")
    overdue = [e for e in got if e["case_id"] == "c-late" and e["event"] == "overdue"]
    assert len(overdue) == 1 and overdue[0]["at"] == d["signDeadline"]
    assert json.loads(overdue[0]["detail"])["clock"] == "sign" and overdue[0]["dispatch_id"] == d["dispatchId"]
    esc = [e for e in got if e["case_id"] == "c-late" and e["event"] == "escalated"][0]
    assert esc["agency"] == "330502.town-330502001" and json.loads(esc["detail"])["level"] == 1
    sup = _one(_dispatches(settings, "330502.town-330502001"), "c-late")
    assert (sup["reason"], sup["escalationLevel"], sup["previousDispatchId"]) == ("escalation", 1, d["dispatchId"])
    events.settle(4)
    w.kill()  # after the overdue was committed: a restart must not fire it again
    w.start()
    final = events.settle(6)
    assert events_for(final, "c-late") == ["dispatched", "overdue", "escalated"]


def test_rules_reload_without_restart(settings: Any, worker: Any, kafka_producer: Any, tmp_path: Path) -> None:
    body = """
        clock: {scan_interval: 500ms}
        rules:
          - id: garbage
            match: {category: [garbage]}
            lead: %s
    """
    path = write_rules(tmp_path, body % "zhzf")
    settings.routing_rules = path
    w = worker(settings, only="routing")
    produce_case(kafka_producer, settings, make_case("c-r1", "garbage"))
    _one(_dispatches(settings, "330502.zhzf"), "c-r1")
    write_rules(tmp_path, body % "scjg")
    TopicReader(settings, "case-events").settle(3)  # the clock polls every second
    produce_case(kafka_producer, settings, make_case("c-r2", "garbage"))
    _one(_dispatches(settings, "330502.scjg"), "c-r2")
    write_rules(tmp_path, body % "nosuch")  # broken: logged, last good rules kept
    TopicReader(settings, "case-events").settle(3)
    produce_case(kafka_producer, settings, make_case("c-r3", "garbage"))
    _one(_dispatches(settings, "330502.scjg"), "c-r3")
    log = w.log_text()
    assert "routing_rules_reload_failed" in log and f"{path}:8: rule 'garbage': unknown agency 'nosuch'" in log
    assert w.running()


def test_broken_rules_stop_the_start(settings: Any, worker: Any, tmp_path: Path) -> None:
    settings.routing_rules = write_rules(tmp_path, """
        rules:
          - id: all
            lead: zzzx
          - id: garbage
            match: {category: [garbage]}
            lead: zhzf
    """)
    with pytest.raises(RuntimeError, match=r"routing.yaml:7: rule 'garbage' is unreachable"):
        worker(settings, only="routing", ready_timeout=60)
