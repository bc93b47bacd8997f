"""The MQTT bridge against the real Mosquitto and Kafka: QoS 1, persistent session, restarts."""

from __future__ import annotations

import asyncio
import getpass
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from connectors.mqtt_bridge.service import MqttBridge, client_id_for, to_record
from gridhub.core.dlq import parse_dead_letter_headers
from gridhub.core.settings import Settings
from helpers.ports import free_port


def clear_session(host: str, port: int, client_id: str) -> None:
    """Drop a persistent session (a clean connect with its client id), so the shared broker
    does not keep queueing sensor messages for a test that is over."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    try:
        client.connect(host, port)
        client.disconnect()
    except OSError:
        pass


@pytest.fixture(autouse=True)
def _drop_bridge_session(request: pytest.FixtureRequest) -> Iterator[None]:
    # Requested at set-up, so the settings fixture is torn down after this one.
    settings: Settings | None = request.getfixturevalue("settings") if "settings" in request.fixturenames else None
    yield
    if settings is not None:
        clear_session(settings.mqtt_host, settings.mqtt_port, client_id_for(settings))


def publish(host: str, port: int, messages: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 and wait for every PUBACK from the broker."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{time.monotonic_ns()}")
    client.connect(host, port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


async def start_bridge(settings: Settings, **kwargs: Any) -> MqttBridge:
    bridge = MqttBridge(settings, **kwargs)
    await bridge.start()
    assert await bridge.producer.wait_ready(30)
    for _ in range(100):
        if bridge.connected:
            break
        await asyncio.sleep(0.1)
    assert bridge.connected, "bridge never connected to Mosquitto"
    await asyncio.sleep(0.3)  # the SUBACK
    return bridge


def event(device_id: str, n: int) -> bytes:
    return json.dumps({"deviceId": device_id, "deviceType": "smoke", "eventType": "alarm",
                       "eventTime": f"2025-06-16T09:00:{n:02d}.100+08:00"}).encode()


def test_to_record_keys_by_topic_device_and_refuses_a_mismatch(tmp_path: Path) -> None:
    settings = Settings(namespace="unit")
    ok = to_record(settings, "sensors/smoke/86001/events", event("86001", 1))
    assert (ok.topic, ok.key) == ("unit.raw.sensors", b"86001")
    not_json = to_record(settings, "sensors/smoke/86001/events", b"\x00garbage")
    assert (not_json.topic, not_json.key, not_json.value) == ("unit.raw.sensors", b"86001", b"\x00garbage")
    bad = to_record(settings, "sensors/smoke/86001/events", event("86002", 1))
    assert bad.topic == "unit.dlq" and bad.value == event("86002", 1)
    info = parse_dead_letter_headers(bad.headers)
    assert info.stage == "mqtt" and "86002" in info.reason and info.extra["mqtt_topic"] == "sensors/smoke/86001/events"


@pytest.mark.integration
async def test_qos1_messages_reach_raw_sensors(settings: Settings, consume: Callable[..., list[Any]]) -> None:
    bridge = await start_bridge(settings)
    try:
        await asyncio.to_thread(publish, settings.mqtt_host, settings.mqtt_port, [
            ("sensors/smoke/86001/events", event("86001", 1)),
            ("sensors/gas/86002/events", event("86002", 2)),
            ("sensors/gas/86003/events", event("86999", 3)),   # payload names another device
        ])
        records = await asyncio.to_thread(consume, "raw.sensors", 2, 20)
        dead = await asyncio.to_thread(consume, "dlq", 1, 20)
    finally:
        await bridge.stop()
    assert sorted((m.key, m.value) for m in records) == [(b"86001", event("86001", 1)), (b"86002", event("86002", 2))]
    assert [m.value for m in dead] == [event("86999", 3)]
    assert parse_dead_letter_headers(dead[0].headers).stage == "mqtt"


@pytest.mark.integration
async def test_messages_published_while_the_bridge_is_down_arrive_after_restart(
        settings: Settings, consume: Callable[..., list[Any]]) -> None:
    first = await start_bridge(settings)      # creates the persistent session and its subscription
    await first.stop()
    await asyncio.to_thread(publish, settings.mqtt_host, settings.mqtt_port,
                            [(f"sensors/smoke/8610{i}/events", event(f"8610{i}", i)) for i in range(5)])
    second = await start_bridge(settings)
    try:
        records = await asyncio.to_thread(consume, "raw.sensors", 5, 20)
    finally:
        await second.stop()
    assert sorted(m.key for m in records) == [f"8610{i}".encode() for i in range(5)]


# --- a private broker we may restart -------------------------------------------------------------


class PrivateMosquitto:
    """A Mosquitto with persistence in a temp dir, on its own port (the shared one is never restarted)."""

    def __init__(self, home: Path, extra: str = "") -> None:
        self.home = home
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        (home / "data").mkdir(parents=True, exist_ok=True)
        (home / "mosquitto.conf").write_text(
            # user: run as ourselves (as root, mosquitto would switch to 'mosquitto' and lose the tmp dir).
            f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {home / 'data'}/\nlog_dest file {home / 'mosquitto.log'}\n{extra}")

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(self.home / "mosquitto.conf")])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()   # SIGTERM: mosquitto writes its persistence file on the way out
            self.proc.wait(timeout=10)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: no persistence file written, connections dropped without a goodbye (a crash)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    broker = PrivateMosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@pytest.mark.integration
async def test_queued_messages_survive_a_broker_restart(
        settings: Settings, private_broker: PrivateMosquitto, consume: Callable[..., list[Any]]) -> None:
    first = await start_bridge(settings, port=private_broker.port)
    await first.stop()
    await asyncio.to_thread(publish, "127.0.0.1", private_broker.port,
                            [(f"sensors/manhole/8620{i}/events", event(f"8620{i}", i)) for i in range(3)])
    private_broker.stop()
    private_broker.start()
    second = await start_bridge(settings, port=private_broker.port)
    try:
        records = await asyncio.to_thread(consume, "raw.sensors", 3, 20)
    finally:
        await second.stop()
    assert sorted(m.key for m in records) == [f"8620{i}".encode() for i in range(3)]


@pytest.mark.integration
async def test_bridge_reconnects_after_the_broker_went_away(
        settings: Settings, private_broker: PrivateMosquitto, consume: Callable[..., list[Any]]) -> None:
    bridge = await start_bridge(settings, port=private_broker.port)
    try:
        private_broker.stop()
        for _ in range(50):
            if not bridge.connected:
                break
            await asyncio.sleep(0.1)
        assert not bridge.connected
        private_broker.start()
        for _ in range(150):   # paho reconnects with backoff (1 s, doubling)
            if bridge.connected:
                break
            await asyncio.sleep(0.1)
        assert bridge.connected
        await asyncio.sleep(0.3)
        await asyncio.to_thread(publish, "127.0.0.1", private_broker.port,
                                [("sensors/smoke/86301/events", event("86301", 1))])
        records = await asyncio.to_thread(consume, "raw.sensors", 1, 20)
    finally:
        await bridge.stop()
    assert [m.key for m in records] == [b"86301"]


@pytest.mark.integration
async def test_a_message_kafka_never_acknowledged_is_not_acknowledged_to_mqtt(
        settings: Settings, consume: Callable[..., list[Any]]) -> None:
    """Kafka unreachable: the bridge holds the message unacknowledged; the next bridge gets it again."""
    first = await start_bridge(settings)            # the persistent session exists
    await first.stop()
    no_kafka = settings.model_copy(update={"kafka_port": free_port()})
    blind = MqttBridge(no_kafka)
    await blind.start()
    try:
        for _ in range(100):
            if blind.connected:
                break
            await asyncio.sleep(0.1)
        assert blind.connected and not blind.producer.ready
        await asyncio.to_thread(publish, settings.mqtt_host, settings.mqtt_port,
                                [("sensors/gas/86501/events", event("86501", 1))])
        await asyncio.sleep(1.5)                    # received, retried against the missing Kafka
        assert blind.forwarded == 0
    finally:
        await blind.stop()                          # dies without having acknowledged it
    second = await start_bridge(settings)
    try:
        records = await asyncio.to_thread(consume, "raw.sensors", 1, 20)
    finally:
        await second.stop()
    assert [(m.key, m.value) for m in records] == [(b"86501", event("86501", 1))]


@pytest.mark.integration
async def test_a_sigkilled_broker_loses_nothing_published_after_it_is_back_and_in_flight_qos1_is_resent(
        settings: Settings, tmp_path: Path) -> None:
    """Issue 14 item 7: Mosquitto is SIGKILLed (no persistence written), not stopped.

    A sensor with a persistent session (paho, ``clean_session=False``) publishes at QoS 1: before the
    kill (acknowledged and forwarded), *during* the outage (not acknowledged: paho keeps them in flight
    and sends them again once it reconnects) and after the broker is back.  The bridge reconnects on
    its own and subscribes again.  The ledger's ``raw`` hop must hold every message of the three
    groups; redeliveries (the same sensor event twice on raw.sensors) are allowed.
    """
    from helpers.ledger import assert_no_loss, collect, expect, ref_key

    began = time.monotonic()

    def sensor_event(i: int) -> tuple[str, bytes, str]:
        device, at = f"8640{i:02d}", f"2025-06-16T10:{i // 60:02d}:{i % 60:02d}.250+08:00"
        doc = {"deviceId": device, "deviceType": "smoke", "eventType": "alarm", "eventTime": at}
        return f"sensors/smoke/{device}/events", json.dumps(doc).encode(), ref_key("sensors", f"{device}@{at}")

    before, during, after = ([sensor_event(i) for i in r] for r in (range(0, 10), range(10, 20), range(20, 30)))
    # A SIGKILLed Mosquitto comes back with the sessions of its last save: the bridge's subscription
    # must be on disk, or what sensors send before the bridge resubscribes has no subscriber and is
    # dropped (seen here: the 10 in-flight messages, resent by the sensor 1 s after the restart, were
    # lost while the bridge was still in its reconnect backoff).  Production saves every 60 s
    # (deploy/k8s/mosquitto.yaml autosave_interval), so a bridge connected for a minute is on disk;
    # here 1 s, and the kill waits for a save.
    private_broker = PrivateMosquitto(tmp_path / "mosquitto-kill", extra="autosave_interval 1\n")
    private_broker.start()
    sensor = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sensor-{settings.namespace}", clean_session=False)
    sensor.reconnect_delay_set(min_delay=1, max_delay=2)
    acked: set[int] = set()  # PUBACKed message ids (paho's MessageInfo refuses to wait on a message
    # published while disconnected, though it queues it and sends it after the reconnect)
    sensor.on_publish = lambda client, userdata, mid, reason_code, properties: acked.add(mid)
    sensor.connect("127.0.0.1", private_broker.port)
    sensor.loop_start()
    bridge = await start_bridge(settings, port=private_broker.port)
    try:
        await asyncio.sleep(2.5)  # an autosave with the bridge's session and subscription
        for topic, payload, _ in before:
            await asyncio.to_thread(sensor.publish(topic, payload, qos=1).wait_for_publish, 10)
        private_broker.kill()
        for _ in range(50):
            if not bridge.connected:
                break
            await asyncio.sleep(0.1)
        assert not bridge.connected, "the bridge did not notice the broker's death"
        in_flight = [sensor.publish(topic, payload, qos=1) for topic, payload, _ in during]
        await asyncio.sleep(1)
        assert not {info.mid for info in in_flight} & acked  # nobody acknowledged them
        private_broker.start()
        for _ in range(300):   # paho's backoff (the bridge: 1 s doubling to 30 s)
            if bridge.connected and sensor.is_connected():
                break
            await asyncio.sleep(0.1)
        assert bridge.connected and sensor.is_connected(), "bridge or sensor did not reconnect"
        await asyncio.sleep(0.5)  # the bridge's SUBACK
        for _ in range(200):  # sent again by the sensor's client after it reconnected
            if {info.mid for info in in_flight} <= acked:
                break
            await asyncio.sleep(0.1)
        assert {info.mid for info in in_flight} <= acked, "the in-flight QoS 1 messages were not acknowledged"
        for topic, payload, _ in after:
            await asyncio.to_thread(sensor.publish(topic, payload, qos=1).wait_for_publish, 10)
        want = {ref for _, _, ref in before + during + after}
        deadline = time.monotonic() + 30
        while True:
            ledger = await asyncio.to_thread(collect, settings, hops=("raw",), title="mosquitto SIGKILLed")
            if want <= set(ledger.hops["raw"].ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await bridge.stop()
        sensor.loop_stop()
        sensor.disconnect()
        private_broker.stop()
    print(f"mosquitto SIGKILLed: {len(want)} sensor messages (10 before, 10 in flight, 10 after); "
          f"test took {time.monotonic() - began:.0f} s")
    assert_no_loss(expect(ledger, source_refs=want))
