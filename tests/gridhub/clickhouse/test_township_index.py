"""The 晾晒 township index of a hand-made set of cases, computed by hand, against the view and the report.

Two townships of 吴兴区 in November 2026 (Beijing time), facts written as the
sink writes them (``synthetic.rows``) into the real ClickHouse server:

| case | township | category       | first seen | lifecycle                                          |
|------|----------|----------------|------------|----------------------------------------------------|
| a1   | A        | street_vending | 11-02      | dispatched, resolved 11-03 in time, 回访 满意, closed |
| a2   | A        | noise          | 11-04      | resolved after an ``overdue`` (resolve clock), 回访 不满意, closed |
| a3   | A        | garbage        | 11-05      | dispatched, signed, open                           |
| a4   | A        | street_vending | 11-08      | resolved in time, no 回访 (recurs: a1 resolved 5 days before) |
| c1   | A        | consultation   | 11-06      | not dispatchable: excluded                         |
| b1   | B        | noise          | 11-10      | dispatched, open                                   |
| b2   | B        | garbage        | 11-11      | signed, open; a sign-clock ``overdue`` only        |
| a5   | A        | street_vending | 12-15      | 42 days after a1's 办结: not a recurrence (30-day window) |

By hand, November, township A: cases 4; closed-or-resolved 3 (a1, a2, a4): C = 0.75; resolved 3,
in time 2 (a2's resolve clock ran out): T = 0.6667; reviews 2, satisfied 1: S = 0.5; recurring 1
(a4): R = 0.25.  Index = 100 x (0.3 x 0.75 + 0.25 x 0.6667 + 0.25 x 0.5 + 0.2 x 0.75) / 1.0 = 66.7.
Township B: C = 0, nothing resolved or reviewed (T and S drop out), R = 0:
100 x (0.3 x 0 + 0.2 x 1) / (0.3 + 0.2) = 40.0.  December, A: a5 alone, open, not recurring: 40.0.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gridhub.core import topics
from connectors.clickhouse.backend import DriverBackend
from connectors.clickhouse.migrate import migrate
from gridhub.clickhouse.queries import TOWNSHIP_INDEX_SQL, Period
from gridhub.clickhouse.synthetic import FactSet, rows
from gridhub.core.settings import Settings

BJ = ZoneInfo("Asia/Shanghai")
COUNTY, A, B = "330502", "330502001", "330502002"
HOUR = 3_600_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=BJ).timestamp() * 1000)


def hand_made() -> FactSet:
    facts = FactSet()

    def case(cid: str, street: str, category: str, first: str, status: str, dispatchable: bool = True) -> str:
        facts.add(topics.CASES, cid, {
            "case_id": cid, "county_code": COUNTY, "street_code": street, "category": category, "severity": 1,
            "sources": ["hotline-12345"], "report_ids": [f"r-{cid}"], "report_count": 1, "first_seen": ms(first),
            "last_seen": ms(first), "status": status, "dispatchable": dispatchable, "version": 1,
            "updated_at": ms(first), "lng": 120.1, "lat": 30.87})
        return cid

    def event(cid: str, name: str, at: str, detail: dict[str, Any] | None = None, agency: str | None = None) -> None:
        facts.add(topics.CASE_EVENTS, cid, {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{cid}|{name}|{at}")), "case_id": cid,
            "county_code": COUNTY, "event": name, "at": ms(at), "agency": agency, "dispatch_id": f"d-{cid}",
            "state": None, "detail": json.dumps(detail) if detail else None})

    lead = f"{COUNTY}.zhzf"
    a1 = case("a1", A, "street_vending", "2026-11-02T09:00:00", "closed")
    event(a1, "dispatched", "2026-11-02T09:05:00", {"role": "lead"}, lead)
    event(a1, "signed", "2026-11-02T10:00:00", agency=lead)
    event(a1, "resolved", "2026-11-03T09:00:00", agency=lead)
    event(a1, "reviewed", "2026-11-03T12:00:00", {"satisfaction": "满意"})
    event(a1, "closed", "2026-11-03T12:00:00")
    a2 = case("a2", A, "noise", "2026-11-04T09:00:00", "closed")
    event(a2, "dispatched", "2026-11-04T09:05:00", {"role": "lead"}, lead)
    event(a2, "signed", "2026-11-04T10:00:00", agency=lead)
    event(a2, "overdue", "2026-11-09T09:05:00", {"clock": "resolve"}, lead)
    event(a2, "resolved", "2026-11-10T09:00:00", agency=lead)
    event(a2, "reviewed", "2026-11-10T12:00:00", {"satisfaction": "不满意"})
    event(a2, "closed", "2026-11-10T12:00:00")
    a3 = case("a3", A, "garbage", "2026-11-05T09:00:00", "signed")
    event(a3, "dispatched", "2026-11-05T09:05:00", {"role": "lead"}, lead)
    event(a3, "signed", "2026-11-05T10:00:00", agency=lead)
    a4 = case("a4", A, "street_vending", "2026-11-08T09:00:00", "resolved")
    event(a4, "dispatched", "2026-11-08T09:05:00", {"role": "lead"}, lead)
    event(a4, "signed", "2026-11-08T10:00:00", agency=lead)
    event(a4, "resolved", "2026-11-09T09:00:00", agency=lead)
    case("c1", A, "consultation", "2026-11-06T09:00:00", "closed", dispatchable=False)
    b1 = case("b1", B, "noise", "2026-11-10T09:00:00", "dispatched")
    event(b1, "dispatched", "2026-11-10T09:05:00", {"role": "lead"}, lead)
    b2 = case("b2", B, "garbage", "2026-11-11T09:00:00", "signed")
    event(b2, "dispatched", "2026-11-11T09:05:00", {"role": "lead"}, lead)
    event(b2, "overdue", "2026-11-11T11:05:00", {"clock": "sign"}, lead)
    event(b2, "signed", "2026-11-11T12:00:00", agency=lead)
    a5 = case("a5", A, "street_vending", "2026-12-15T09:00:00", "dispatched")
    event(a5, "dispatched", "2026-12-15T09:05:00", {"role": "lead"}, lead)
    return facts


BY_HAND = {  # (month, township) -> (cases, C, T, S, R, index)
    ("2026-11-01", A): (4, 0.75, 0.6667, 0.5, 0.25, 66.7),
    ("2026-11-01", B): (2, 0.0, None, None, 0.0, 40.0),
    ("2026-12-01", A): (1, 0.0, None, None, 0.0, 40.0),
}


@pytest.mark.integration
def test_township_index_by_hand_equals_the_view_and_the_report(settings: Settings) -> None:
    server = DriverBackend.from_settings(settings)
    db = settings.ch_database
    try:
        migrate(server, db)
        for table, table_rows in rows(hand_made(), settings).items():
            server.insert(f"{db}.{table}", table_rows)
        view = server.query(
            f"SELECT toString(month), street_code, cases, closure_rate, on_time_rate, satisfaction_rate, "
            f"recurrence_rate, township_index FROM {db}.township_index_monthly ORDER BY month, street_code").rows
        november = Period(ms("2026-11-01T00:00:00") // 1000, ms("2026-12-01T00:00:00") // 1000, (COUNTY,))
        report = DriverBackend.from_settings(settings, database=db)
        try:
            period_rows = report.query(TOWNSHIP_INDEX_SQL.format(where=november.where("first_seen"))).rows
        finally:
            report.close()
    finally:
        server.close()
    assert {(m, s): tuple(r) for m, s, *r in view} == BY_HAND
    by_period = {s: (n, c, t, sat, r, index) for _, s, n, _, c, _, _, t, _, _, sat, _, r, index in period_rows}
    assert by_period == {s: v for (m, s), v in BY_HAND.items() if m == "2026-11-01"}
