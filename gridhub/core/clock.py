"""The hub's clock: wall time, or event time for compressed-time demos and backfills.

Routing fires 签收 / 办结 deadlines and ingest reports silent devices by
comparing stored times with "now".  Live, "now" is the wall clock
(``GRIDHUB_CLOCK=wall``, the default).  A demo that packs days of incidents
into a minute (``gridhub demo``), or a backfill of old data, needs "now" to
follow the data instead: with ``GRIDHUB_CLOCK=event`` it is the latest event
time this process has seen (case times, feedback times, 12345 updates,
heartbeats; never beyond the wall clock) minus ``GRIDHUB_CLOCK_LAG_MS``.  So a
worker that falls behind its input (a loaded machine) does not see deadlines
pass that its input has not reached yet, and the lag gives an agency's answer,
which needs a few seconds through Kafka, time to arrive before the deadline it
meets is due (DESIGN: "time in routing is event time during replay and
backfill, wall time live").

``GRIDHUB_CLOCK=auto`` (the default, issue 14) decides from the input: while the records it
processes are live, "now" is the wall clock; while they are more than
``GRIDHUB_CLOCK_REPLAY_AFTER_MS`` (1 h) behind the wall clock when processed, the input is a replay
or a backfill and "now" is the newest event time of that run of old records (minus the lag).  A
month-old log then fires what would have fired while its events happened, once, instead of every
deadline since then against today's wall clock (an ``overdue`` per deadline per day and the 督办
storm that follows).  When the replay ends the clock stays at the log's last event time until
live input arrives; the first live record makes it the wall clock again.  A late record among live
ones (an agency entering last week's 签收) holds "now" at the wall time of the last live record
until the next fresh one: deadlines wait a little, nothing fires early or twice.  So a replay
should run in a namespace of its own (``gridhub replay`` into a shadow namespace): live records
interleaved with it switch the clock back to the wall.

The simulator's own compressed clock (:func:`compressed_ms`) maps wall time to
simulated time for ``gridhub simulate --closed-loop``.  Kernel module: imports
nothing but the settings, does no work at import.
"""

from __future__ import annotations

import time
from typing import Callable

from gridhub.core.settings import Settings


def wall_ms() -> int:
    return int(time.time() * 1000)


class HubClock:
    """One process's "now": wall time, the event-time watermark minus a lag, or (auto) either."""

    def __init__(self, settings: Settings, wall: Callable[[], int] = wall_ms) -> None:
        self.mode = settings.clock
        self.event_time = settings.clock == "event"
        self.lag_ms = int(settings.clock_lag_ms)
        self.replay_after_ms = int(getattr(settings, "clock_replay_after_ms", 3_600_000))
        self.watermark = 0
        self.replaying = False  # auto: the last record processed was a replayed / backfilled one
        self._replay_watermark = 0  # auto: the newest event time of the current run of old records
        self._live_mark = 0  # auto: the wall time of the last live record (a late one never moves time back)
        self._wall = wall

    def observe(self, at_ms: int | float | None) -> None:
        """An event time this process processed (ignored on the wall clock; capped at wall time)."""
        if at_ms is None or self.mode == "wall":
            return
        wall = self._wall()
        at = min(int(at_ms), wall)
        self.watermark = max(self.watermark, at)
        if self.mode != "auto":
            return
        if wall - at > self.replay_after_ms:
            self._replay_watermark = max(self._replay_watermark, at) if self.replaying else at
            self.replaying = True
        else:  # a live record: the wall clock again
            self.replaying, self._replay_watermark, self._live_mark = False, 0, wall

    def now_ms(self) -> int:
        if self.mode == "wall" or (self.mode == "auto" and not self.replaying):
            return self._wall()
        if self.mode == "auto":
            # A late record in a live stream holds time where it was (deadlines wait for the next fresh
            # record; nothing fires early or twice); a replay in a namespace of its own follows its log.
            return max(self._replay_watermark - self.lag_ms, self._live_mark)
        return self.watermark - self.lag_ms if self.watermark else 0


def compressed_ms(wall: int, speed: float, sync_ms: int) -> int:
    """Simulated time at wall instant ``wall``: ``speed`` times faster, meeting wall time at ``sync_ms``.

    ``min(wall, sync - (sync - wall) * speed)``: always in the past (the broker refuses record
    times over an hour ahead, ingest documents over a day ahead of their receipt).
    """
    if speed <= 1.0:
        return wall
    return min(wall, int(sync_ms - (sync_ms - wall) * speed))


def wall_for(sim_ms: int, speed: float, sync_ms: int) -> float:
    """The wall instant (ms) at which :func:`compressed_ms` reads ``sim_ms``."""
    if speed <= 1.0 or sim_ms >= sync_ms:
        return float(sim_ms)
    return sync_ms - (sync_ms - sim_ms) / speed
