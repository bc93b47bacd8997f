"""Durations as operators write them in YAML (``30m``, ``24h``, ``5d``).

Kept apart from the rules so that the agency catalog and the webhook
delivery settings parse durations the same way.
"""

from __future__ import annotations

import re

_UNITS_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60 * 1000,
    "h": 60 * 60 * 1000,
    "d": 24 * 60 * 60 * 1000,
    "w": 7 * 24 * 60 * 60 * 1000,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration_ms(text: str | int | float) -> int:
    """``"1d12h"`` -> 129600000.  A bare number is seconds (YAML ``30`` reads as an int)."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"negative duration: {text!r}")
        return int(text * 1000)
    s = str(text).strip().replace(" ", "")
    if not s:
        raise ValueError("empty duration")
    pos = 0
    total = 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS_MS[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 24h, 5d, 1d12h, 2s)")
    return int(total)


def format_duration_ms(ms: int) -> str:
    """The inverse for messages: 90061000 -> ``1d1h1m1s``."""
    if ms <= 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s"):
        n, ms = divmod(ms, _UNITS_MS[unit])
        if n:
            out.append(f"{n}{unit}")
    if ms:
        out.append(f"{ms}ms")
    return "".join(out)
