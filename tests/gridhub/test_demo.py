"""``gridhub demo`` end to end: its figures are measured from real outputs, not made up."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from gridhub.settings import REPO_ROOT, Settings
from gridhub.supervisor import GRIDHUB


@pytest.mark.integration
def test_demo_runs_the_hub_end_to_end(settings: Settings) -> None:
    proc = subprocess.run(
        [GRIDHUB, "demo", "--duration", "20", "--rate", "15", "--seed", "3", "--json",
         "--namespace", settings.namespace, "--drain-timeout", "240"],
        cwd=REPO_ROOT, env={**os.environ, **settings.as_env()}, capture_output=True, text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith('{"namespace"')))
    assert figures["namespace"] == settings.namespace
    assert figures["expected_reports"] > 50
    # every report the simulator's ground truth expects landed in ClickHouse, through the whole pipeline
    assert figures["missing_reports"] == 0
    assert figures["reports"] >= figures["expected_reports"]
    # fusion did fuse (fewer cases than reports) and did so well against the labels
    assert 0 < figures["cases"] < figures["reports"]
    assert figures["bcubed"]["f1"] >= 0.9
    assert figures["dispatches"] > 0
    assert "Reports by source" in proc.stdout and "Lifecycle events" in proc.stdout
