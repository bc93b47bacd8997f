"""Business-time deadlines over China's 2026 holiday weeks (State Council notice, via chinese-calendar).

2026 National Day: 10-01 (Thu) .. 10-07 off, Sunday 09-20 and Saturday 10-10 are working days.
2026 Spring Festival: 02-15 .. 02-23 off, Saturdays 02-14 and 02-28 are working days.
Working hours: 08:30-12:00 and 14:00-17:30 Beijing time (the default).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from streams.routing import businesstime as bt
from streams.routing import lifecycle as lc
from streams.routing.rules import RuleSet, load_rules
from gridhub.core.yamlconf import ConfigError
from helpers.routing import HOUR, DAY, write_rules

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def bj(text: str) -> int:
    """'2026-09-30 10:00' Beijing time -> epoch ms."""
    return int(datetime.fromisoformat(text).replace(tzinfo=bt.BEIJING).timestamp() * 1000)


def show(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, bt.BEIJING).strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize("start, duration, expected", [
    # National Day week 2026
    ("2026-09-30 10:00", DAY, "2026-10-08 10:00"),              # the whole holiday is skipped
    ("2026-09-30 16:00", 5 * DAY, "2026-10-13 16:00"),          # 10-08, 10-09, Sat 10-10 (调休), 10-12, 10-13
    ("2026-10-09 17:00", 2 * HOUR, "2026-10-10 10:00"),         # 30 min Friday, 1.5 h on the working Saturday
    ("2026-10-03 09:00", 2 * HOUR, "2026-10-08 10:30"),         # received on a holiday: counts from 10-08 08:30
    ("2026-09-19 09:00", 2 * HOUR, "2026-09-20 10:30"),         # Saturday off, Sunday 09-20 is a working day
    # Spring Festival 2026
    ("2026-02-13 11:00", DAY, "2026-02-14 11:00"),              # Saturday 02-14 is a working day
    ("2026-02-14 15:00", 3 * DAY, "2026-02-26 15:00"),          # 02-15..02-23 off: 02-24, 02-25, 02-26
    ("2026-02-27 12:30", HOUR, "2026-02-27 15:00"),             # lunch break is not working time
    ("2026-02-27 17:00", DAY + 12 * HOUR, "2026-03-03 15:00"),  # Sat 02-28 works; 12 working hours after it
])
def test_working_time_over_holiday_weeks(start: str, duration: int, expected: str) -> None:
    assert show(bt.add_working(bj(start), duration)) == expected


def test_natural_time_ignores_the_calendar() -> None:
    assert show(bt.deadline(bj("2026-10-01 10:00"), 5 * DAY, bt.NATURAL)) == "2026-10-06 10:00"


def test_outside_the_calendar_fails_clearly() -> None:
    first, last = bt.supported_years()
    assert first <= 2026 <= last
    with pytest.raises(bt.CalendarRangeError, match=rf"{first}-{last} only.*upgrade the pinned chinese-calendar"):
        bt.add_working(bj(f"{last + 1}-01-04 10:00"), HOUR)
    with pytest.raises(bt.CalendarRangeError):  # starts inside the range, ends after it
        bt.add_working(bj(f"{last}-12-31 10:00"), 3 * DAY)


def test_working_hours_are_configurable_and_validated() -> None:
    hours = bt.WorkingHours.parse(["09:00-17:00"])
    assert hours.minutes_per_day == 480
    assert show(bt.add_working(bj("2026-10-09 16:00"), 2 * HOUR, hours)) == "2026-10-10 10:00"
    for bad in (["12:00-08:00"], ["08:00-12:00", "11:00-13:00"], [], ["25:00-26:00"]):
        with pytest.raises(ValueError):
            bt.WorkingHours.parse(bad)


# --------------------------------------------------------------------------- rules and lifecycle
@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return load_rules(write_rules(tmp_path_factory.mktemp("rules"), """
        defaults: {clock: working}
        rules:
          - id: fire
            match: {category: [fire]}
            lead: xfjy
            sign: 30m
            resolve: 2d
            clock: natural
          - id: garbage
            match: {category: [garbage]}
            lead: zhzf
            sign: 2h
            resolve: 5d
    """))


def case(category: str, at: int, severity: int = 1) -> dict[str, Any]:
    return {"case_id": f"c-{category}-{severity}", "county_code": "330502", "street_code": "330502001",
            "category": category, "severity": severity, "sources": ["four-platforms"], "report_ids": ["r"],
            "report_count": 1, "first_seen": at, "last_seen": at, "status": "reported", "dispatchable": True,
            "device_ids": [], "version": 1, "updated_at": at}


def test_each_rule_chooses_its_clock(rules: RuleSet) -> None:
    at = bj("2026-09-30 16:00")
    _, fx = lc.on_case(None, case("garbage", at), rules)
    d = fx.dispatches[0]
    assert (show(d["signDeadline"]), show(d["resolveDeadline"])) == ("2026-10-08 09:00", "2026-10-13 16:00")
    assert json.loads(fx.events[0]["detail"])["deadline_clock"] == "working"
    _, fx = lc.on_case(None, case("fire", at), rules)  # fire: natural, straight through the holiday
    assert fx.dispatches[0]["resolveDeadline"] == at + 2 * DAY
    assert json.loads(fx.events[0]["detail"])["deadline_clock"] == "natural"
    _, fx = lc.on_case(None, case("garbage", at, severity=3), rules)  # 特急: natural whatever the rule says
    lead = next(d for d in fx.dispatches if d["role"] == "lead")
    assert lead["signDeadline"] == at + 2 * HOUR and lead["resolveDeadline"] == at + 5 * DAY


def test_calendar_gap_falls_back_to_natural_time_and_says_so(rules: RuleSet) -> None:
    _, last = bt.supported_years()
    at = bj(f"{last}-12-31 10:00")
    _, fx = lc.on_case(None, case("garbage", at), rules)
    assert fx.dispatches[0]["resolveDeadline"] == at + 5 * DAY
    detail = json.loads(fx.events[0]["detail"])
    assert detail["deadline_clock"] == "natural" and "upgrade the pinned chinese-calendar" in detail["clock_fallback"]


def test_bad_clock_in_rules_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(f"agencies: {DEPLOY / 'agencies.yaml'}\ncategories: {DEPLOY / 'categories.yaml'}\n"
                    "rules:\n  - id: g\n    match: {category: [garbage]}\n    lead: zhzf\n    clock: lunar\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"routing.yaml:7: clock: expected one of natural, working"):
        load_rules(path)
