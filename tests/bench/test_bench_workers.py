"""bench/e2e.py ``Workers``: several worker processes measured as one (``bench e2e --workers N``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench.e2e import Process, Workers
from gridhub.core.settings import get_settings

#: A child that burns CPU for a moment, holds ~40 MB more than the other, then waits to be stopped.
BUSY = "import time; x = bytearray({mb} * 2**20); t = time.process_time() + {cpu}\nwhile time.process_time() < t: pass\ntime.sleep(60)"


def _proc(tmp_path: Path, name: str, mb: int, cpu: float) -> Process:
    return Process(get_settings(), [sys.executable, "-c", BUSY.format(mb=mb, cpu=cpu)], tmp_path / f"{name}.log")


def test_cpu_is_the_sum_rss_the_largest_and_stop_ends_all(tmp_path: Path) -> None:
    small, big = _proc(tmp_path, "a", 1, 0.3), _proc(tmp_path, "b", 40, 0.6)
    workers = Workers([small, big])
    try:
        deadline = time.monotonic() + 30
        while (small.cpu_seconds() < 0.3 or big.cpu_seconds() < 0.6) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert workers.cpu_seconds() == small.cpu_seconds() + big.cpu_seconds() >= 0.9
        assert workers.peak_rss_mb() == big.peak_rss_mb() > small.peak_rss_mb() + 30
        assert workers.log_path == small.log_path
    finally:
        workers.stop()
    assert small.proc.returncode is not None and big.proc.returncode is not None
