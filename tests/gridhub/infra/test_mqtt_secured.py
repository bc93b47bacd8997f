"""The MQTT bridge logs in over TLS, as against production Mosquitto (deploy/k8s/mosquitto.yaml).

A private Mosquitto (the project's infra code, own run dir and port) with
``allow_anonymous false``, a ``mosquitto_passwd`` file and a TLS listener whose
certificate a throw-away CA signed.  The bridge with ``GRIDHUB_MQTT_USERNAME``,
``_PASSWORD``, ``_TLS`` and ``_CA_FILE`` forwards a message into Kafka; without
the password, or without TLS, it never connects.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from connectors.mqtt_bridge.service import MqttBridge
from gridhub.infra.mosquitto import MosquittoServer
from gridhub.core.settings import Settings
from gridhub.supervisor import free_port

pytestmark = pytest.mark.integration

USER, PASSWORD = "gridhub-bridge", "s3cret-for-this-test"


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 (subjectAltName: the bridge checks the host)."""
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.crt", "server.key", "server.csr",
                                                        "server.crt"))

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=gridhub-test-ca",
        "-keyout", str(ca_key), "-out", str(ca))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
        "-extfile", str(ext), "-out", str(cert))
    return ca, cert, key


@pytest.fixture
def secured(tmp_path: Path, settings: Settings) -> Iterator[tuple[MosquittoServer, Settings]]:
    ca, cert, key = make_tls(tmp_path)
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), USER, PASSWORD], check=True, capture_output=True)
    passwd.chmod(0o600)
    s = settings.model_copy(update={"mqtt_port": free_port(), "mqtt_username": USER, "mqtt_password": PASSWORD,
                                    "mqtt_tls": True, "mqtt_ca_file": str(ca)})
    server = MosquittoServer(s.model_copy(update={"run_dir": tmp_path / "run"}), name="mosquitto-secured",
                             password_file=passwd, certfile=cert, keyfile=key)
    server.start()
    try:
        for _ in range(100):
            if server.healthy():
                break
            asyncio.run(asyncio.sleep(0.2))
        assert server.healthy(), "the secured Mosquitto did not pass its (logged-in, TLS) health check"
        yield server, s
    finally:
        server.stop()


def publish(s: Settings, topic: str, payload: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-secured-pub")
    client.username_pw_set(s.mqtt_username, s.mqtt_password)
    client.tls_set(ca_certs=s.mqtt_ca_file)
    client.connect(s.mqtt_host, s.mqtt_port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


async def connects(s: Settings, seconds: float = 4.0) -> MqttBridge | None:
    bridge = MqttBridge(s)
    await bridge.start()
    for _ in range(int(seconds / 0.1)):
        if bridge.connected:
            return bridge
        await asyncio.sleep(0.1)
    await bridge.stop()
    return None


async def test_bridge_logs_in_over_tls_and_forwards(secured: tuple[MosquittoServer, Settings], consume: Any) -> None:
    _, s = secured
    for wrong in ({"mqtt_password": "wrong"}, {"mqtt_username": ""}, {"mqtt_tls": False}):
        assert await connects(s.model_copy(update=wrong)) is None, f"connected with {wrong}"

    bridge = await connects(s, seconds=15)
    assert bridge is not None, "the bridge never logged in"
    try:
        assert await bridge.producer.wait_ready(30)
        await asyncio.sleep(0.3)  # the SUBACK
        doc = {"deviceId": "86001", "deviceType": "smoke", "eventType": "alarm",
               "eventTime": "2025-06-16T09:00:01.100+08:00"}
        await asyncio.get_running_loop().run_in_executor(
            None, publish, s, "sensors/smoke/86001/events", json.dumps(doc).encode())
        got = await asyncio.get_running_loop().run_in_executor(None, consume, "raw.sensors", 1, 60)
    finally:
        await bridge.stop()
    assert [(r.key, json.loads(r.value)) for r in got] == [(b"86001", doc)]
