"""gridhub/supervisor.py: a worker that stopped itself (exit 70) is restarted; any other exit is a crash."""

from __future__ import annotations

import sys
import time
from pathlib import Path

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
