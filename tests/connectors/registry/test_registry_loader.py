"""Device registry loader: CSV -> compacted registry.devices keyed by deviceId."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from connectors.registry.loader import device_record
from gridhub.core.settings import Settings

CSV = """deviceId,deviceType,streetCode,villageCode,address,lng,lat,owner,ownerPhone,heartbeatSeconds
861234567890001,smoke,330502001,330502001001,湖州市吴兴区月河街道人民路1号3幢,120.0951,30.8712,物业,13800000001,300
861234567890002,gas,330502001,,湖州市吴兴区月河街道人民路2号,,,燃气公司,,
861234567890003,toaster,330502001,,,,,,,
"""


def test_device_record_types_values() -> None:
    record, reason = device_record({"deviceId": " 86001 ", "deviceType": "manhole", "lng": "120.5", "lat": "30",
                                    "heartbeatSeconds": "600", "address": ""})
    assert reason is None and record is not None
    assert record["deviceId"] == "86001" and record["lng"] == 120.5 and record["heartbeatSeconds"] == 600
    assert record["address"] is None and record["owner"] is None
    assert device_record({"deviceId": "x", "deviceType": "smoke", "lat": "north"})[1] is not None
    assert device_record({"deviceType": "smoke"})[1] == "missing deviceId"


def _cleanup_policy(settings: Settings, topic: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
        return str(described["topic"][topic]["cleanup.policy"]["value"])
    finally:
        admin.close()


@pytest.mark.integration
def test_registry_load_creates_compacted_topic(settings: Settings, consume: Callable[..., list[Any]],
                                               tmp_path: Path) -> None:
    path = tmp_path / "devices.csv"
    path.write_text(CSV, encoding="gb18030")
    gridhub = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "gridhub"
    out = subprocess.run([str(gridhub), "registry", "load", str(path)], env={**os.environ, **settings.as_env()},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "3 rows read, 2 devices produced" in out.stdout and "1 rejected" in out.stdout
    assert "row 4: deviceType 'toaster'" in out.stdout
    assert _cleanup_policy(settings, settings.topic("registry.devices")) == "compact"
    records = consume("registry.devices", 2, timeout=20)
    by_key = {m.key: json.loads(m.value) for m in records}
    assert set(by_key) == {b"861234567890001", b"861234567890002"}
    assert by_key[b"861234567890001"] == {
        "deviceId": "861234567890001", "deviceType": "smoke", "streetCode": "330502001",
        "villageCode": "330502001001", "address": "湖州市吴兴区月河街道人民路1号3幢", "lng": 120.0951, "lat": 30.8712,
        "owner": "物业", "ownerPhone": "13800000001", "heartbeatSeconds": 300}
    assert by_key[b"861234567890002"]["lng"] is None and by_key[b"861234567890002"]["heartbeatSeconds"] is None
