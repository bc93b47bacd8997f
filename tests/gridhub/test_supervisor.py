"""gridhub/supervisor.py: a worker that stopped itself (exit 70) is restarted; any other exit is a crash."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gridhub.core.errors import EXIT_FAIL_STOP
from gridhub.core.settings import Settings
from gridhub.supervisor import WorkerProcess


def _exited(code: int, settings: Settings, tmp_path: Path) -> WorkerProcess:
    w = WorkerProcess(settings, command=[sys.executable, "-c", f"raise SystemExit({code})"], log_dir=tmp_path)
    w.start(wait=False)
    assert w.proc is not None
    w.proc.wait(30)
    return w


def test_a_fail_stopped_worker_is_started_again(settings: Settings, tmp_path: Path) -> None:
    w = _exited(EXIT_FAIL_STOP, settings, tmp_path)
    assert w.restart_if_fail_stopped() is True
    assert w.starts == 2
    assert w.proc is not None
    w.proc.wait(30)
    time.sleep(0.1)
    assert w.log_text().count("--- start #") == 2


def test_a_running_worker_is_left_alone(settings: Settings, tmp_path: Path) -> None:
    w = WorkerProcess(settings, command=[sys.executable, "-c", "import time; time.sleep(30)"], log_dir=tmp_path)
    w.start(wait=False)
    try:
        assert w.restart_if_fail_stopped() is False and w.starts == 1
    finally:
        w.kill()


def test_a_crash_is_not_restarted(settings: Settings, tmp_path: Path) -> None:
    w = _exited(3, settings, tmp_path)
    with pytest.raises(RuntimeError, match="crashed with exit status 3"):
        w.restart_if_fail_stopped()
    assert w.starts == 1


def test_two_lookers_restart_a_fail_stop_once(settings: Settings, tmp_path: Path) -> None:
    """The test fixture's keeper and a test may both see the exit: only one start may follow."""
    import threading

    w = _exited(EXIT_FAIL_STOP, settings, tmp_path)
    w._command = [sys.executable, "-c", "import time; time.sleep(30)"]  # the restarted one keeps running
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(w.restart_if_fail_stopped())) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sorted(results) == [False, False, False, True] and w.starts == 2
    finally:
        w.kill()


def test_the_worker_fixture_restarts_a_fail_stop_unless_told_not_to(worker: Any) -> None:
    exits_70 = [sys.executable, "-c", f"raise SystemExit({EXIT_FAIL_STOP})"]
    kept = worker(command=exits_70, wait=False, ensure_topics=False)
    left = worker(command=exits_70, wait=False, ensure_topics=False, restart_on_fail_stop=False)
    deadline = time.monotonic() + 20
    while kept.starts < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kept.starts >= 3, kept.log_text()
    assert "restarted by the test fixture" in kept.log_text()
    assert left.starts == 1 and left.proc is not None and left.proc.poll() == EXIT_FAIL_STOP
