"""Archive export -> import reproduces every record byte for byte (real Kafka)."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from gridhub.ops.archive import MANIFEST
from gridhub.core.kafka_admin import ensure_topics
from gridhub.core.settings import Settings
from helpers.kafka import produce, read_all
from helpers.cli import run_cli

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


def _records(n: int, now_ms: int) -> list[dict]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        key = None if i % 17 == 0 else f"dev-{i % 23}".encode()
        value = (json.dumps({"deviceId": f"dev-{i}", "温度": i}, ensure_ascii=False).encode()
                 if i % 5 else bytes(rng.randrange(256) for _ in range(20)))
        headers = [("trace", f"t{i}".encode()), ("bin", b"\x00\xff\xfe"), ("empty", b"")] if i % 3 else []
        # spread over three UTC days, out of timestamp order inside a partition
        out.append({"key": key, "value": value, "headers": headers, "partition": i % 4,
                    "timestamp": now_ms - (i * 7919 % 3) * DAY_MS - rng.randrange(3_600_000)})
    return out


def test_export_import_reproduces_every_record(settings: Settings, other_settings: Settings, tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    ensure_topics(settings, ["raw.sensors", "cases"])
    produce(settings, "raw.sensors", _records(300, now_ms))
    produce(settings, "cases", [{"key": b"case-1", "value": b"v1", "partition": 1, "timestamp": now_ms - 5},
                                {"key": b"case-1", "value": None, "partition": 1, "timestamp": now_ms}])
    out = tmp_path / "archive"

    result = run_cli(settings, "archive", "export", "--topics", "raw.sensors,cases", "--out", str(out),
                     "--no-progress")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / MANIFEST).read_text())
    sensors = settings.topic("raw.sensors")
    assert manifest["topics"][sensors]["records"] == 300
    assert len({f["day"] for f in manifest["files"] if f["topic"] == sensors}) >= 3  # one file per day

    verified = run_cli(settings, "archive", "verify", str(out))
    assert verified.exit_code == 0 and verified.output.startswith("ok:"), verified.output

    target = other_settings
    imported = run_cli(settings, "archive", "import", "--in", str(out), "--namespace", target.namespace,
                       "--no-progress")
    assert imported.exit_code == 0, imported.output
    for contract in ("raw.sensors", "cases"):
        original = read_all(settings, settings.topic(contract))
        copy = read_all(target, target.topic(contract))
        assert len(original) == len(copy) > 0
        assert copy == original   # partition, offset, key, value, headers, timestamp

    again = run_cli(settings, "archive", "import", "--in", str(out), "--namespace", target.namespace,
                       "--no-progress")
    assert again.exit_code != 0 and "not empty" in again.output


def test_verify_detects_a_changed_file(settings: Settings, tmp_path: Path) -> None:
    ensure_topics(settings, ["raw.hotline-12345"])
    produce(settings, "raw.hotline-12345", [{"key": f"o{i}".encode(), "value": b"x" * 50} for i in range(20)])
    out = tmp_path / "a"
    assert run_cli(settings, "archive", "export", "--topics", "raw.hotline-12345", "--out", str(out),
                   "--no-progress").exit_code == 0
    [entry] = json.loads((out / MANIFEST).read_text())["files"]
    path = out / entry["path"]
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    result = run_cli(settings, "archive", "verify", str(out))
    assert result.exit_code == 1
    assert "MISMATCH" in result.output and "sha256" in result.output
