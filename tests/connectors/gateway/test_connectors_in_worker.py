"""The gateway and the MQTT bridge as ``gridhub run`` services: up with the worker, down on SIGTERM."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from connectors.mqtt_bridge.service import client_id_for
from gridhub.core.settings import Settings
from helpers.ports import free_port



def _post(url: str, body: bytes, token: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


@pytest.mark.integration
def test_gridhub_run_serves_http_and_mqtt(settings: Settings, worker: Callable[..., Any],
                                          consume: Callable[..., list[Any]]) -> None:
    port = free_port()
    w = worker(settings, only="gateway,mqtt_bridge", env={"GRIDHUB_GATEWAY_PORT": str(port)})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    health: Any = None
    while time.monotonic() < deadline:   # the producer connects in the background
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as r:
                health = json.loads(r.read())
            if health["status"] == "ok":
                break
        except OSError:
            pass
        time.sleep(0.3)
    assert health is not None and health["status"] == "ok", health

    doc: dict[str, Any] = {"eventId": "SJ33050200120250616000001", "platform": "综治工作", "description": "测试",
           "reportTime": 1750035600000, "streetCode": "330502001"}
    status, results = _post(f"{base}/v1/ingest/four-platforms", json.dumps(doc, ensure_ascii=False).encode(),
                            "dev-four-platforms")
    assert status == 202 and results[0]["status"] == "accepted"

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-worker-pub")
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.loop_start()
    time.sleep(1.0)   # the bridge has subscribed by the time the worker is ready; margin for the SUBACK
    client.publish("sensors/smoke/86400/events", b'{"deviceId":"86400","eventType":"alarm"}', qos=1) \
        .wait_for_publish(10)
    client.disconnect()
    client.loop_stop()

    [fp] = consume("raw.four-platforms", 1, timeout=20)
    assert fp.key == doc["eventId"].encode()
    sensors = consume("raw.sensors", 1, timeout=20)
    assert [m.key for m in sensors] == [b"86400"]
    assert w.stop() == 0
    # Drop the bridge's persistent session: the shared broker would queue every later sensor message for it.
    cleaner = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id_for(settings), clean_session=True)
    cleaner.connect(settings.mqtt_host, settings.mqtt_port)
    cleaner.disconnect()
