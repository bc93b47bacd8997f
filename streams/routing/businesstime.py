"""Business time: deadlines in working hours on China's working days.

Why a library: China's public holidays and the *adjusted working weekends*
(调休, e.g. Saturday 2026-02-28 after the Spring Festival) are announced by the
State Council each November for the next year; a hand-written table would be
wrong the first year nobody updates it.  ``chinese-calendar`` (pinned in
pyproject.toml) publishes each year's notice as data and is kept up to date;
upgrading it is how next year's holidays arrive.

Its data covers a fixed range of years (1.11.0: 2004-2026).  A deadline
that needs a day outside that range raises :class:`CalendarRangeError`
naming the range and the fix (upgrade the package); routing then falls back
to natural time for that deadline and says so in the ``dispatched`` event
(``clock_fallback``), so a case is never left undispatched because a
calendar is a year short.

How a duration counts in working time (``clock: working`` on a rule):

* whole days count as **working days**: ``5d`` ends at the same time of day
  on the fifth working day after the start (the way 12345 办理时限 "5个工作日"
  is read);
* the rest counts as **working hours** inside the configured working
  periods (default 08:30-12:00 and 14:00-17:30 Beijing time, the usual
  office hours of Zhejiang's county administrations);
* a start outside working time (a night, a weekend, a holiday) counts from
  the start of the next working period.

Time is Beijing time (UTC+8, no daylight saving), epoch milliseconds in and out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache

NATURAL = "natural"
WORKING = "working"
CLOCKS = (NATURAL, WORKING)
BEIJING = timezone(timedelta(hours=8))  # China Standard Time: UTC+8 all year, no DST
DAY_MS = 86_400_000
_MAX_DAYS_SCANNED = 3 * 366  # a deadline more than ~3 years of calendar away is a configuration mistake

#: 08:30-12:00 and 14:00-17:30: the common office hours of Zhejiang county
#: administrations (7 working hours a day); ``clock.working_hours`` overrides them.
DEFAULT_WORKING_HOURS: tuple[tuple[str, str], ...] = (("08:30", "12:00"), ("14:00", "17:30"))


class CalendarRangeError(ValueError):
    """The holiday calendar has no data for a year a deadline needs."""


@lru_cache(maxsize=1)
def supported_years() -> tuple[int, int]:
    """(first, last) year whose holidays the installed ``chinese-calendar`` knows."""
    from chinese_calendar.constants import holidays

    years = [d.year for d in holidays]
    return min(years), max(years)


def is_workday(day: date) -> bool:
    """China's working day: Monday-Friday except holidays, plus adjusted working weekends (调休)."""
    import chinese_calendar

    first, last = supported_years()
    if not first <= day.year <= last:
        raise CalendarRangeError(
            f"chinese-calendar knows China's holidays for {first}-{last} only; {day.isoformat()} is outside "
            "that range: upgrade the pinned chinese-calendar in pyproject.toml (a new release follows each "
            "November's State Council notice)")
    return bool(chinese_calendar.is_workday(day))


def _minutes(text: str) -> int:
    hh, mm = text.split(":")
    value = int(hh) * 60 + int(mm)
    if not 0 <= value <= 24 * 60:
        raise ValueError(f"not a time of day: {text!r}")
    return value


@dataclass(frozen=True)
class WorkingHours:
    """Working periods of one working day, as minutes after midnight (sorted, not overlapping)."""

    periods: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, spans: tuple[tuple[str, str], ...] | list[str] | list[tuple[str, str]]) -> WorkingHours:
        """``[("08:30", "12:00"), ...]`` or ``["08:30-12:00", ...]``; ValueError when malformed."""
        periods: list[tuple[int, int]] = []
        for span in spans:
            start, end = span.split("-") if isinstance(span, str) else span
            a, b = _minutes(str(start).strip()), _minutes(str(end).strip())
            if b <= a:
                raise ValueError(f"working period {start}-{end} ends before it starts")
            periods.append((a, b))
        periods.sort()
        if not periods:
            raise ValueError("at least one working period is needed")
        for (_, prev_end), (next_start, _) in zip(periods, periods[1:]):
            if next_start < prev_end:
                raise ValueError("working periods overlap")
        return cls(tuple(periods))

    @property
    def minutes_per_day(self) -> int:
        return sum(b - a for a, b in self.periods)


DEFAULT_HOURS = WorkingHours.parse(DEFAULT_WORKING_HOURS)


def _at(day: date, minute: int) -> datetime:
    return datetime.combine(day, time(0), BEIJING) + timedelta(minutes=minute)


def _align(moment: datetime, hours: WorkingHours) -> datetime:
    """The first working instant at or after ``moment``."""
    day = moment.date()
    for _ in range(_MAX_DAYS_SCANNED):
        if is_workday(day):
            for a, b in hours.periods:
                start, end = _at(day, a), _at(day, b)
                if moment < end:
                    return max(moment, start)
        day += timedelta(days=1)
        moment = _at(day, 0)
    raise CalendarRangeError(f"no working day within {_MAX_DAYS_SCANNED} days of {moment.isoformat()}")


def _next_workday(day: date) -> date:
    for _ in range(_MAX_DAYS_SCANNED):
        day += timedelta(days=1)
        if is_workday(day):
            return day
    raise CalendarRangeError(f"no working day within {_MAX_DAYS_SCANNED} days after {day.isoformat()}")


def add_working(start_ms: int, duration_ms: int, hours: WorkingHours = DEFAULT_HOURS) -> int:
    """``start_ms`` plus ``duration_ms`` of business time (whole days = working days, rest = working hours)."""
    if duration_ms <= 0:
        return start_ms
    moment = _align(datetime.fromtimestamp(start_ms / 1000, BEIJING), hours)
    days, rest_ms = divmod(duration_ms, DAY_MS)
    for _ in range(days):
        tod = moment - _at(moment.date(), 0)
        moment = _at(_next_workday(moment.date()), 0) + tod
    remaining = timedelta(milliseconds=rest_ms)
    for _ in range(_MAX_DAYS_SCANNED * len(hours.periods)):
        if not remaining:
            break
        moment = _align(moment, hours)
        period_end = next(_at(moment.date(), b) for a, b in hours.periods if moment < _at(moment.date(), b))
        step = min(remaining, period_end - moment)
        moment += step
        remaining -= step
        if remaining:
            moment = period_end  # the next _align jumps to the next period or working day
    return int(moment.timestamp() * 1000)


def deadline(start_ms: int, duration_ms: int, clock: str, hours: WorkingHours = DEFAULT_HOURS) -> int:
    """The deadline ``duration_ms`` after ``start_ms`` in the ``clock`` (natural or working) time."""
    if clock == WORKING:
        return add_working(start_ms, duration_ms, hours)
    return start_ms + duration_ms
