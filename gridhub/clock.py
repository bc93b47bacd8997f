"""The hub's clock: wall time, or a compressed simulated clock for demos.

Routing fires 签收 / 办结 deadlines and ingest reports silent devices by
comparing stored times with "now".  In production "now" is the wall clock.
A demo that packs days of incidents into a minute (``gridhub demo``,
``gridhub simulate --closed-loop``) needs every process to agree on a
*simulated* now that runs ``clock_speed`` times faster than the wall clock and
reaches the wall clock at ``clock_sync_ms``::

    now = min(wall, sync - (sync - wall) * speed)

so simulated time is always in the past (the broker refuses record times more
than an hour ahead, and ingest refuses documents dated more than a day after
their receipt), and after ``sync`` it is plain wall time again.  The default
``clock_speed = 1`` is the wall clock, whatever ``clock_sync_ms`` says.
Kernel module: imports nothing but the settings, does no work at import.
"""

from __future__ import annotations

import time

from gridhub.settings import Settings


def compressed_ms(wall_ms: int, speed: float, sync_ms: int) -> int:
    """The simulated instant at wall instant ``wall_ms`` (pure; see the module docstring)."""
    if speed <= 1.0:
        return wall_ms
    return min(wall_ms, int(sync_ms - (sync_ms - wall_ms) * speed))


def wall_for(sim_ms: int, speed: float, sync_ms: int) -> float:
    """The wall instant (ms, float) at which the compressed clock reads ``sim_ms`` (inverse of the above)."""
    if speed <= 1.0 or sim_ms >= sync_ms:
        return float(sim_ms)
    return sync_ms - (sync_ms - sim_ms) / speed


def now_ms(settings: Settings) -> int:
    """The hub's "now" in epoch milliseconds."""
    return compressed_ms(int(time.time() * 1000), settings.clock_speed, settings.clock_sync_ms)
