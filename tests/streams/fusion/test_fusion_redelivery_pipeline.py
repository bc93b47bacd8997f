"""Redeliveries as sources make them, through the REAL pipeline (issue 13, item 7).

The hand-written dev set (tests/data/devset) is fed to the raw topics of a real worker
(ingest, fusion, routing, ClickHouse sink), then fed again, identically, later: every
ClickHouse count and the full sets of report, case and case-event ids must stay exactly the
same (an identical document changes nothing: fusion recognises its content fingerprint).
Then an older 12345 version (待派发) is redelivered after the newer ones: the order's row
must keep its newest status and nothing else may change.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import pytest

from gridhub.evaluation.fusion import doc_time_ms, read_jsonl
from streams.health import LagProbe
from gridhub.core.kafka_admin import ensure_topics
from gridhub.core.settings import Settings
from gridhub.core.topics import RAW, REGISTRY_DEVICES
from helpers.clickhouse import migrate_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEVSET = Path(__file__).resolve().parents[2] / "data" / "devset"
KEY_FIELD = {"four-platforms": "eventId", "hotline-12345": "orderNo", "sensors": "deviceId"}
#: Escalations and overdue events come from the SLA clock (wall time), not from the input.
_CLOCK = "event NOT IN ('overdue', 'escalated')"
COUNTS = {
    "reports": "SELECT count() FROM {db}.reports FINAL",
    "cases": "SELECT count() FROM {db}.cases FINAL",
    "case_events": "SELECT event, count() FROM {db}.case_events FINAL WHERE " + _CLOCK
                   + " GROUP BY event ORDER BY event",
    "dispatches": "SELECT role, count() FROM {db}.dispatches FINAL WHERE reason != 'escalation' "
                  "GROUP BY role ORDER BY role",
    "dead_letters": "SELECT count() FROM {db}.dead_letters",
}
IDS = {
    "report_ids": "SELECT report_id FROM {db}.reports FINAL",
    "case_ids": "SELECT case_id FROM {db}.cases FINAL",
    "event_ids": "SELECT event_id FROM {db}.case_events FINAL WHERE " + _CLOCK,
    "report_case_map": "SELECT source, source_ref, case_id FROM {db}.report_case_map",
}


def _caught_up(settings: Settings, timeout: float) -> None:
    """The worker's group and the ClickHouse sink's group at the log end, three probes in a row."""
    probes = [LagProbe(settings), LagProbe(settings, f"{settings.faust_app_id}.clickhouse-sink")]
    deadline = time.monotonic() + timeout
    in_a_row, lags = 0, []
    try:
        while time.monotonic() < deadline:
            lags = [p.measure() for p in probes]
            in_a_row = in_a_row + 1 if all(lag and sum(lag.values()) == 0 for lag in lags) else 0
            if in_a_row >= 3:
                return
            time.sleep(3)
    finally:
        for p in probes:
            p.close()
    raise TimeoutError(f"pipeline not caught up after {timeout:.0f} s: {lags}")


def _shift(source: str, doc: dict[str, Any], days: int) -> dict[str, Any]:
    """The document dated ``days`` earlier (every time field; a sensor's ``eventTime`` is part of
    its source_ref, so both feeds must shift alike).  The dev set is dated in December 2026;
    a broker refuses record timestamps more than an hour ahead of its clock and ingest refuses
    documents dated more than a day after their receipt, so the set is moved into the past."""
    d = dict(doc)
    delta = timedelta(days=days)
    if source == "four-platforms":
        for name in ("reportTime", "occurTime"):
            if isinstance(d.get(name), int):
                d[name] = d[name] - days * 86_400_000
    elif source == "hotline-12345":
        for name in ("acceptTime", "deadline"):
            if d.get(name):
                d[name] = (datetime.strptime(d[name], "%Y-%m-%d %H:%M:%S") - delta).strftime("%Y-%m-%d %H:%M:%S")
    elif source == "sensors" and d.get("eventTime"):
        at = datetime.fromisoformat(d["eventTime"]) - delta
        text = at.isoformat(timespec="milliseconds" if "." in d["eventTime"] else "seconds")
        d["eventTime"] = text
    return d


def _days_back(records: list[dict[str, Any]]) -> int:
    """Whole days that put the set's last document two days before now."""
    last = max(doc_time_ms(r["source"], r["doc"]) or 0 for r in records)
    return max(0, math.ceil((last - time.time() * 1000) / 86_400_000) + 2)


def _feed(producer: Any, settings: Settings, records: list[dict[str, Any]], shift_ms: int) -> None:
    """Produce the documents in order; the Kafka timestamp (ingest's receipt time) is the
    document's own time, kept increasing, plus ``shift_ms`` (a later redelivery).  Every send
    is checked: a refused record must fail the test, not vanish."""
    clock = 0
    futures = []
    for rec in records:
        source, doc = rec["source"], rec["doc"]
        clock = max(clock + 1, doc_time_ms(source, doc) or clock)
        futures.append(producer.send(settings.topic(RAW[source]), key=str(doc[KEY_FIELD[source]]).encode(),
                                     value=json.dumps(doc, ensure_ascii=False).encode(),
                                     timestamp_ms=clock + shift_ms))
    producer.flush()
    for future in futures:
        future.get(timeout=30)


def _snapshot(ch: Any, db: str) -> dict[str, Any]:
    out: dict[str, Any] = {name: ch.execute(sql.format(db=db)) for name, sql in COUNTS.items()}
    out.update({name: set(ch.execute(sql.format(db=db))) for name, sql in IDS.items()})
    return out


def _wait_for_reports(ch: Any, db: str, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n = ch.execute(f"SELECT count() FROM {db}.reports FINAL")[0][0]
        if n >= expected:
            return
        time.sleep(3)
    raise TimeoutError(f"{n} of {expected} reports in ClickHouse after {timeout:.0f} s")


def test_devset_twice_and_a_stale_version_change_nothing(settings: Settings, worker: Callable[..., Any],
                                                          kafka_producer: Any, ch_client: Any) -> None:
    migrate_database(settings)
    ensure_topics(settings)
    for device in read_jsonl(DEVSET / "registry.jsonl"):
        kafka_producer.send(settings.topic(REGISTRY_DEVICES), key=str(device["deviceId"]).encode(),
                            value=json.dumps(device, ensure_ascii=False).encode())
    kafka_producer.flush()
    dev = list(read_jsonl(DEVSET / "records.jsonl"))
    back = _days_back(dev)
    records = [{"source": r["source"], "doc": _shift(r["source"], r["doc"], back)} for r in dev]
    labels = list(read_jsonl(DEVSET / "labels.jsonl"))
    # every labelled incident / consultation record is a report (heartbeats and maintenance are not)
    expected_reports = len({(lab["source"], lab["source_ref"]) for lab in labels
                            if lab["kind"] in ("incident", "consultation")})
    worker(settings)

    _feed(kafka_producer, settings, records, shift_ms=0)
    _wait_for_reports(ch_client, settings.ch_database, expected_reports, timeout=600)
    _caught_up(settings, timeout=600)
    first = _snapshot(ch_client, settings.ch_database)
    assert first["reports"] == [(expected_reports,)]
    assert len(first["case_ids"]) > 50 and first["event_ids"] and first["dispatches"]

    _feed(kafka_producer, settings, records, shift_ms=3_600_000)  # the whole set again, an hour later
    _caught_up(settings, timeout=600)
    second = _snapshot(ch_client, settings.ch_database)
    for name in first:
        assert second[name] == first[name], name

    # A stale 12345 version after the newer ones: the first version of an order that has several.
    versions: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        if rec["source"] == "hotline-12345":
            versions.setdefault(rec["doc"]["orderNo"], []).append(rec["doc"])
    order, docs = next((o, d) for o, d in versions.items()
                       if len({x["status"] for x in d}) >= 3 and d[0]["status"] == "待派发")
    newest = ch_client.execute(f"SELECT status, version FROM {settings.ch_database}.reports FINAL "
                               f"WHERE source = 'hotline-12345' AND source_ref = %(ref)s", {"ref": order})
    assert newest and newest[0][0] == docs[-1]["status"]
    _feed(kafka_producer, settings, [{"source": "hotline-12345", "doc": docs[0]}], shift_ms=86_400_000)
    _caught_up(settings, timeout=600)
    after = ch_client.execute(f"SELECT status, version FROM {settings.ch_database}.reports FINAL "
                              f"WHERE source = 'hotline-12345' AND source_ref = %(ref)s", {"ref": order})
    assert after == newest  # nothing rolled back
    third = _snapshot(ch_client, settings.ch_database)
    for name in first:
        assert third[name] == first[name], name
