"""gridhub case show / find against the test's ClickHouse database (migrated with the real DDL)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from gridhub.core.settings import Settings
from helpers.cli import run_cli
from helpers.clickhouse import migrate_database

pytestmark = pytest.mark.integration

CASE = "c-7f3a"
T0 = int(time.time()) // 60 * 60 - 3 * 3600  # whole minute, three hours ago (epoch s)


def _dt(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _insert(ch: Any, table: str, rows: list[dict[str, Any]]) -> None:
    ch.execute(f"INSERT INTO {table} ({', '.join(rows[0])}) VALUES", rows)


def _load(settings: Settings, ch: Any) -> None:
    migrate_database(settings)
    db = settings.ch_database
    report = {"source": "hotline-12345", "source_ref": "12345-0042", "case_id": CASE, "county_code": "330502",
              "street_code": "330502001", "category": "street_vending", "reported_at": _dt(T0 + 60),
              "received_at": _dt(T0 + 61), "report_id": "r-2", "title": "占道经营", "version": 1}
    _insert(ch, f"{db}.reports", [
        {**report, "source": "four-platforms", "source_ref": "E-9", "report_id": "r-1", "reported_at": _dt(T0)},
        report,
        {**report, "version": 2, "title": "占道经营(更新)"},          # a later version: FINAL keeps this one
        {**report, "case_id": "c-other", "source_ref": "12345-0099", "report_id": "r-9"},
    ])
    _insert(ch, f"{db}.dispatches", [
        {"dispatch_id": "d-1", "case_id": CASE, "agency": "330502.zhzf", "role": "lead", "action": "dispatch",
         "dispatched_at": _dt(T0 + 120), "deadline": _dt(T0 + 86400), "version": 0},
    ])
    events = [("e1", "created", T0, "reported", ""), ("e2", "dispatched", T0 + 120, "dispatched", "330502.zhzf"),
              ("e3", "signed", T0 + 600, "signed", "330502.zhzf"), ("e4", "report_linked", T0 + 700, "", "")]
    _insert(ch, f"{db}.case_events", [
        {"event_id": eid, "case_id": CASE, "county_code": "330502", "event": ev, "at": _dt(at), "state": st,
         "agency": ag} for eid, ev, at, st, ag in events] + [
        {"event_id": "e2", "case_id": CASE, "county_code": "330502", "event": "dispatched", "at": _dt(T0 + 120),
         "state": "dispatched", "agency": "330502.zhzf"}])            # redelivered duplicate


def test_case_show_lists_reports_dispatches_and_clocks(settings: Settings, ch_client: Any) -> None:
    _load(settings, ch_client)
    result = run_cli(settings, "case", "show", CASE, "--json")
    assert result.exit_code == 0, result.output
    view = json.loads(result.output.strip().splitlines()[-1])
    assert [(r["source"], r["source_ref"]) for r in view["reports"]] == [("four-platforms", "E-9"),
                                                                        ("hotline-12345", "12345-0042")]
    assert view["reports"][1]["title"] == "占道经营(更新)"
    assert [(d["agency"], d["role"]) for d in view["dispatches"]] == [("330502.zhzf", "lead")]
    assert view["dispatches"][0]["dispatched_at"] == (T0 + 120) * 1000
    assert [e["event"] for e in view["timeline"]] == ["created", "dispatched", "signed", "report_linked"]
    assert [e["since_open_ms"] for e in view["timeline"]] == [0, 120_000, 600_000, 700_000]
    assert view["timeline"][1]["state_ms"] == 480_000
    assert view["clocks"]["state"] == "signed"
    assert view["clocks"]["state_ms"] == view["now"] - (T0 + 600) * 1000

    text = run_cli(settings, "case", "show", CASE)
    assert "330502.zhzf" in text.output and "since open" in text.output and "in state signed for" in text.output


def test_case_find_and_unknown_case(settings: Settings, ch_client: Any) -> None:
    _load(settings, ch_client)
    found = run_cli(settings, "case", "find", "--source", "hotline-12345", "--ref", "12345-0042")
    assert found.exit_code == 0 and found.output.strip() == CASE
    other = run_cli(settings, "case", "find", "--source", "hotline-12345", "--ref", "12345-0099")
    assert other.output.strip() == "c-other"
    missing = run_cli(settings, "case", "find", "--source", "sensors", "--ref", "nope@2026")
    assert missing.exit_code == 1
    unknown = run_cli(settings, "case", "show", "c-does-not-exist")
    assert unknown.exit_code == 1 and "unknown" in unknown.output


def test_case_show_falls_back_to_the_cases_kafka_partition(settings: Settings) -> None:
    """No ClickHouse rows (sink not running): the case is read from its partition of the keyed topics."""
    from gridhub.core.codec import codec
    from gridhub.core.kafka_admin import ensure_topics
    from helpers.kafka import produce

    ensure_topics(settings, ["reports.linked", "case-events", "cases"])
    t0 = T0 * 1000
    report = {"report_id": "r-1", "source": "sensors", "source_ref": "dev-1@2026-11-23T08:00:00+08:00",
              "kind": "incident", "county_code": "330502", "category": "fire_alarm", "text": "烟感报警",
              "reported_at": t0, "received_at": t0, "severity": 3, "version": 1, "case_id": CASE,
              "reporter_hash": "secret-hash"}
    event = {"case_id": CASE, "county_code": "330502"}
    key = CASE.encode()
    produce(settings, "reports.linked", [
        {"key": key, "value": codec("Report").encode(report)},
        {"key": key, "value": codec("Report").encode({**report, "version": 2, "severity": 2})},
        {"key": b"c-other", "value": codec("Report").encode({**report, "case_id": "c-other", "report_id": "r-9"})},
    ])
    produce(settings, "case-events", [
        {"key": key, "value": codec("CaseEvent").encode({**event, "event_id": "e1", "event": "created", "at": t0,
                                                          "state": "reported"})},
        {"key": key, "value": codec("CaseEvent").encode({**event, "event_id": "e2", "event": "dispatched",
                                                          "at": t0 + 60_000, "state": "dispatched",
                                                          "agency": "330502.xfjy", "dispatch_id": "d-1",
                                                          "detail": '{"role": "lead"}'})},
        {"key": key, "value": b"not avro"},
    ])
    result = run_cli(settings, "case", "show", CASE, "--json")
    assert result.exit_code == 0, result.output
    view = json.loads(result.output.strip().splitlines()[-1])
    assert view["source"] == "kafka"
    assert [(r["report_id"], r["severity"]) for r in view["reports"]] == [("r-1", 2)]
    assert "reporter_hash" not in view["reports"][0] and "text" not in view["reports"][0]
    assert [(d["agency"], d["role"]) for d in view["dispatches"]] == [("330502.xfjy", "lead")]
    assert [e["since_open_ms"] for e in view["timeline"]] == [0, 60_000]
    missing = run_cli(settings, "case", "show", "c-nowhere")
    assert missing.exit_code == 1 and "unknown" in missing.output
