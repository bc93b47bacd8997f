"""The two clocks of a case timeline (pure)."""

from __future__ import annotations

from gridhub.ops.case import with_clocks

MIN = 60_000


def _ev(at_min: int, event: str, state: str | None) -> dict:
    return {"at": at_min * MIN, "event": event, "state": state, "event_id": f"{event}-{at_min}"}


def test_time_since_open_and_time_in_each_state() -> None:
    events = [_ev(0, "created", "reported"), _ev(2, "dispatched", "dispatched"), _ev(3, "report_linked", None),
              _ev(10, "signed", "signed"), _ev(25, "progress", "in_progress")]
    timeline, clocks = with_clocks(list(reversed(events)), now_ms=40 * MIN)
    assert [e["since_open_ms"] for e in timeline] == [0, 2 * MIN, 3 * MIN, 10 * MIN, 25 * MIN]
    assert [e["state_ms"] for e in timeline] == [2 * MIN, 8 * MIN, None, 15 * MIN, 15 * MIN]
    assert clocks["state"] == "in_progress" and clocks["state_ms"] == 15 * MIN
    assert clocks["case_ms"] == 40 * MIN and not clocks["closed"]


def test_a_closed_case_stops_both_clocks() -> None:
    events = [_ev(0, "created", "reported"), _ev(5, "resolved", "resolved"), _ev(65, "closed", "closed")]
    timeline, clocks = with_clocks(events, now_ms=1000 * MIN, opened_at=-1 * MIN)
    assert timeline[0]["since_open_ms"] == 1 * MIN          # the case row says it opened earlier
    assert timeline[1]["state_ms"] == 60 * MIN and timeline[2]["state_ms"] is None
    assert clocks["closed"] and clocks["case_ms"] == 66 * MIN and clocks["state_ms"] is None


def test_no_events_no_clocks() -> None:
    assert with_clocks([], now_ms=0) == ([], {})
