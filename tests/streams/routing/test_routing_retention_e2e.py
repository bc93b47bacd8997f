"""Bounded routing state on the real broker (issue 14 item 4): a closed case leaves the routing table.

A `gridhub run --only routing` worker with `retention: {closed: 3s}`: a case closed by its 12345 回访
is deleted 3 s later - a tombstone for its key in the routing table's changelog, so a restarted worker
does not restore it - while an open case dispatched at the same time keeps its state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridhub.core.codec import codec
from helpers.kafka import TopicReader
from helpers.routing import events_for, feedback_doc, make_case, produce_case, review_report, send_feedback, write_rules

pytestmark = pytest.mark.integration


def test_a_closed_case_expires_and_an_open_one_stays(settings: Any, worker: Any, kafka_producer: Any,
                                                     tmp_path: Path) -> None:
    settings.routing_rules = write_rules(tmp_path, """
        clock: {scan_interval: 500ms}
        retention: {closed: 3s}
        rules:
          - id: garbage
            match: {category: [garbage]}
            lead: zhzf
            sign: 1h
            resolve: 1d
    """)
    worker(settings, only="routing")
    events = TopicReader(settings, "case-events", "CaseEvent")
    dispatches = TopicReader(settings, "dispatch.330502.zhzf", "Dispatch")
    produce_case(kafka_producer, settings, make_case("c-done", "garbage"))
    produce_case(kafka_producer, settings, make_case("c-open", "garbage"))
    got = dispatches.until(lambda vs: {v["caseId"] for v in vs} >= {"c-done", "c-open"}, what="both dispatched")
    done = next(v for v in got if v["caseId"] == "c-done")
    for action in ("sign", "resolve"):
        send_feedback(kafka_producer, settings, feedback_doc(done, action))
    events.until(lambda vs: "resolved" in events_for(vs, "c-done"), what="resolved")
    kafka_producer.send(settings.topic("reports.linked"), key=b"c-done",
                        value=codec("Report").encode(review_report("c-done", "满意"))).get(30)
    events.until(lambda vs: "closed" in events_for(vs, "c-done"), what="closed")

    changelog = TopicReader(settings, f"{settings.app_id}-routing-cases-changelog")

    def tombstoned(key: bytes) -> bool:
        last = [r for r in changelog.records if r.key == key]
        return bool(last) and last[-1].value is None

    changelog.until(lambda _: tombstoned(b"c-done"), timeout=60, what="the closed case's tombstone")
    changelog.settle(2)
    assert not tombstoned(b"c-open")
    assert any(r.key == b"c-open" and r.value for r in changelog.records)  # the open case's state is there
    assert events_for(events.values(), "c-done")[-1] == "closed"  # expiring produced no case event
