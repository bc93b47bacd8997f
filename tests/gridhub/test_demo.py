"""``gridhub demo`` end to end: its figures are measured from real outputs, not made up."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gridhub.core.settings import REPO_ROOT, Settings
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


def test_a_recover_is_expected_only_from_a_device_that_alarmed(tmp_path: Path) -> None:
    from gridhub.demo import _expected_reports

    rows = [
        {"source": "sensors", "source_ref": "SMK-1@2026-11-23T08:00:00.000+08:00", "incident": "I1", "kind": "report"},
        {"source": "sensors", "source_ref": "SMK-1@2026-11-23T08:20:00.000+08:00", "incident": "I1", "kind": "recover"},
        # SMK-2 belongs to I1 too, but its own alarm fell before the window: no case to recover
        {"source": "sensors", "source_ref": "SMK-2@2026-11-23T08:21:00.000+08:00", "incident": "I1", "kind": "recover"},
        {"source": "hotline-12345", "source_ref": "Z1", "incident": "I1", "kind": "report"},
        {"source": "sensors", "source_ref": "SMK-3@2026-11-23T08:00:00.000+08:00", "incident": None, "kind": "heartbeat"},
    ]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert set(_expected_reports(labels)) == {("sensors", "SMK-1@2026-11-23T08:00:00.000+08:00"),
                                              ("sensors", "SMK-1@2026-11-23T08:20:00.000+08:00"),
                                              ("hotline-12345", "Z1")}
