"""``gridhub simulate``: files, registry and raw topics agree with each other."""

from __future__ import annotations

import collections
import csv
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gridhub.core.settings import Settings

GRIDHUB = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "gridhub"


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(GRIDHUB), "simulate", *args, "--no-progress"], env={**os.environ, **(env or {})},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out


def test_dry_run_with_fixed_start_is_reproducible(tmp_path: Path) -> None:
    args = ["--rate", "30", "--duration", "20", "--speed", "10", "--seed", "11", "--start", "2025-06-16T09:00:00",
            "--dry-run"]
    run([*args, "--out", str(tmp_path / "a")])
    run([*args, "--out", str(tmp_path / "b")])
    for name in ("records.jsonl", "labels.jsonl", "devices.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    lines = (tmp_path / "a" / "records.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) > 300
    assert {json.loads(line)["source"] for line in lines} == {"four-platforms", "hotline-12345", "sensors"}


@pytest.mark.integration
def test_simulate_produces_what_it_records(settings: Settings, consume: Callable[..., list[Any]],
                                           tmp_path: Path) -> None:
    out = run(["--rate", "60", "--duration", "5", "--speed", "20", "--seed", "5", "--no-pace", "--out", str(tmp_path),
               "--records", str(tmp_path / "records.jsonl")], settings.as_env())
    assert "labels:" in out.stdout
    lines = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text(encoding="utf-8").splitlines()]
    expected: dict[str, collections.Counter[tuple[bytes, bytes]]] = collections.defaultdict(collections.Counter)
    key_field = {"four-platforms": "eventId", "hotline-12345": "orderNo", "sensors": "deviceId"}
    for line in lines:
        doc = line["doc"]
        value = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        expected[line["source"]][(str(doc[key_field[line["source"]]]).encode(), value)] += 1
    for source, want in expected.items():
        got = consume(f"raw.{source}", sum(want.values()), timeout=30)
        assert collections.Counter((m.key, m.value) for m in got) == want, source

    with (tmp_path / "devices.csv").open(encoding="utf-8") as f:
        device_ids = {row["deviceId"] for row in csv.DictReader(f)}
    registry = consume("registry.devices", len(device_ids), timeout=30)
    assert {m.key.decode() for m in registry} == device_ids
    assert all(json.loads(m.value)["deviceId"] == m.key.decode() for m in registry)

    labels = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    refs = {(lb["source"], lb["source_ref"]) for lb in labels}
    assert len(refs) == len(labels)     # one label per source record
    sensor_refs = {f"{line['doc']['deviceId']}@{line['doc']['eventTime']}" for line in lines
                   if line["source"] == "sensors"}
    assert sensor_refs == {ref for src, ref in refs if src == "sensors"}
