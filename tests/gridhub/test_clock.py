"""The hub's clock: wall time by default, event time minus a lag for compressed-time demos."""

from __future__ import annotations

import time

from gridhub.core.clock import HubClock, compressed_ms, wall_for
from gridhub.core.settings import Settings


def test_wall_clock_ignores_events() -> None:
    clock = HubClock(Settings(clock="wall"))
    clock.observe(1)
    assert abs(clock.now_ms() - time.time() * 1000) < 5_000


def test_event_clock_is_the_latest_event_minus_the_lag_and_never_ahead_of_the_wall() -> None:
    clock = HubClock(Settings(clock="event", clock_lag_ms=3_600_000))
    assert clock.now_ms() == 0  # nothing seen: no deadline can be due
    clock.observe(1_790_000_000_000)
    clock.observe(1_789_000_000_000)  # an older event does not move time back
    assert clock.now_ms() == 1_790_000_000_000 - 3_600_000
    clock.observe(int(time.time() * 1000) + 10 * 86_400_000)  # a bogus future time is capped at the wall
    assert clock.now_ms() <= time.time() * 1000


def test_compressed_clock_meets_the_wall_at_sync_and_inverts() -> None:
    sync = 1_800_000_000_000
    assert compressed_ms(sync, 3600, sync) == sync
    assert compressed_ms(sync - 1000, 3600, sync) == sync - 3_600_000
    assert compressed_ms(sync + 1000, 3600, sync) == sync + 1000  # after sync: wall time, never ahead
    assert wall_for(sync - 3_600_000, 3600, sync) == sync - 1000
    assert compressed_ms(123, 1.0, sync) == 123
