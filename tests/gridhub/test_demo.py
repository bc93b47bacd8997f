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
def test_demo_runs_the_hub_and_the_closed_loop_end_to_end(settings: Settings) -> None:
    # 30 s of feeds at 3600x (30 simulated hours) and 60 s of agencies and citizens afterwards:
    # about 100 lead dispatches, enough that every branch of the loop happens (P(no 退单) < 0.1 %).
    proc = subprocess.run(
        [GRIDHUB, "demo", "--duration", "30", "--rate", "20", "--tail", "60", "--seed", "3", "--json",
         "--namespace", settings.namespace, "--drain-timeout", "240"],
        cwd=REPO_ROOT, env={**os.environ, **settings.as_env()}, capture_output=True, text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith('{"namespace"')))
    assert figures["namespace"] == settings.namespace
    assert figures["expected_reports"] > 50
    # every report the simulator's ground truth expects landed in ClickHouse, through the whole pipeline,
    # but for a sensor recover arriving after the closed loop resolved its case (an orphan: no row)
    assert figures["missing_reports"] == figures["missing_recovers"] <= max(2, figures["expected_reports"] // 100)
    assert figures["reports"] >= figures["expected_reports"]
    # fusion did fuse (fewer cases than reports) and did so well against the labels
    assert 0 < figures["cases"] < figures["reports"]
    assert figures["bcubed"]["f1"] >= 0.9
    assert figures["dispatches"] > 0
    # the closed loop ran: agencies signed, returned, extended, resolved (most in time), missed deadlines
    # that the hub escalated, and citizens reviewed
    loop = figures["loop"]
    assert all(loop[k] > 0 for k in ("signed", "resolved", "on_time", "overdue", "escalated", "returned",
                                     "extended", "reviewed", "closed")), (loop, proc.stdout[-4000:], proc.stderr[-3000:])
    assert loop["on_time"] < loop["resolved"] <= loop["signed"]
    assert 0.5 < loop["satisfaction_rate"] < 1.0
    assert "Closed loop" in proc.stdout and "Lifecycle events" in proc.stdout
    # the county centre steered one case (recorded by routing), and the hub replied to a source system
    centre = figures["centre"]
    assert centre["centre_action"] and centre["centre_action"]["recorded"], centre
    assert centre["status_reply"] and centre["status_reply"]["state"], centre
    assert "County centre: centre action: assign" in proc.stdout
    page = (REPO_ROOT / "out" / settings.namespace / "report.html").read_text(encoding="utf-8")
    assert "乡镇（街道）晾晒指数排名" in page and "无数据" not in page

    # every section of the analysts' report has answers (the township index's parts included)
    report = subprocess.run([GRIDHUB, "report"], cwd=REPO_ROOT, env={**os.environ, **settings.as_env()},
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "(无数据)" not in report.stdout, report.stdout[:3000]
    index = report.stdout.split("== 乡镇（街道）晾晒指数排名")[1].split("==")[0]
    rows = [line.split() for line in index.splitlines()[3:] if line.strip()]
    # every part of the index has a value in some township: closure, on time, satisfaction, recurrence
    header = index.splitlines()[1].split()
    for column in ("closure_rate", "on_time_rate", "satisfaction_rate", "township_index"):
        values = [float(r[header.index(column)]) for r in rows if len(r) == len(header)]
        assert values and max(values) > 0, (column, index[:2000])


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
