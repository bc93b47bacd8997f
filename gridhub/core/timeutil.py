"""Time in the hub: Beijing time for people and sources, epoch milliseconds on the wire.

One definition of the zone and of how a time without an offset is read: every zone-less time a
person or a source writes here (12345 ``acceptTime``, an operator's ``--from``) is Beijing time,
never the machine's local zone (the servers of a deployment may well run in UTC).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

#: China Standard Time, UTC+8 all year (no daylight saving since 1991).
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*(?:ago)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of ``moment``; a naive ``moment`` is Beijing time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=BEIJING)
    return int(moment.timestamp() * 1000)


def beijing(ms: int) -> datetime:
    """Epoch milliseconds as an aware Beijing-time datetime."""
    return datetime.fromtimestamp(ms / 1000, BEIJING)


def beijing_text(ms: int) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in Beijing time: the 12345 wire format."""
    return beijing(ms).strftime("%Y-%m-%d %H:%M:%S")


def parse_time(text: str, now: datetime | None = None) -> int:
    """Epoch ms of an operator-given time; raises ``ValueError`` with a readable message.

    Accepts ISO-8601 (``2026-11-23T08:00:00+08:00``, ``2026-11-23 08:00``, ``2026-11-23``; without
    an offset it is Beijing time), ``now``, and relative times (``90s``, ``15m``, ``1h``, ``2d``,
    ``1w``, optionally followed by ``ago``) meaning that long before ``now``.
    """
    now = now or datetime.now(timezone.utc)
    if text.strip().lower() == "now":
        return int(now.timestamp() * 1000)
    match = _RELATIVE.match(text.lower())
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return int((now - timedelta(seconds=seconds)).timestamp() * 1000)
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither ISO-8601 nor a relative time like 1h / 2d") from None
    return to_ms(parsed)
