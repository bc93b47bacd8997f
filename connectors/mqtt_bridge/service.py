"""MQTT -> Kafka bridge for IoT platforms publishing on ``sensors/{deviceType}/{deviceId}/events``.

Delivery guarantee: no message the broker handed us is lost, because

1. we subscribe at QoS 1 with a *persistent session* (``clean_session=False``,
   a fixed client id): while the bridge is down, the broker queues messages for
   it (Mosquitto keeps up to ``max_queued_messages``, 1000 by default, and with
   ``persistence true`` across a broker restart);
2. paho runs with ``manual_ack=True``: a message is acknowledged (PUBACK) only
   after Kafka acknowledged the record with ``acks=all``; a message received but
   not yet acknowledged when the bridge dies is redelivered by the broker on the
   next connection of the same session.

So delivery is at-least-once; a redelivered message produces the same record
again, which fusion treats as the same report (``deviceId@eventTime``).

Threads: paho's network loop runs in its own thread (``loop_start``, which also
reconnects with backoff).  Its ``on_message`` only hands the message to the
asyncio loop (``call_soon_threadsafe``); producing and acknowledging happen on
the event loop, in arrival order, which MQTT requires for PUBACKs.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Iterable, Sequence

import paho.mqtt.client as mqtt
from mode import Service, ServiceT

from connectors.base import RawRecord, RetriableError, Source
from connectors.kafka_io import RawProducer
from gridhub.dlq import dead_letter_headers
from gridhub.logging import get_logger
from gridhub.settings import Settings
from gridhub.topics import DLQ, RAW

log = get_logger(__name__)

TOPIC_FILTER = "sensors/+/+/events"
#: Largest batch handed to Kafka at once; Mosquitto's default max_inflight_messages (20)
#: bounds what is unacknowledged anyway, this only caps a burst after a long outage.
MAX_BATCH = 500


def client_id_for(settings: Settings) -> str:
    """Fixed per namespace: the broker finds the same persistent session after a restart."""
    return "gridhub-mqtt-bridge" + (f"-{settings.namespace}" if settings.namespace else "")


def to_record(settings: Settings, mqtt_topic: str, payload: bytes) -> RawRecord:
    """The Kafka record for one MQTT message: raw.sensors keyed by the topic's deviceId, or a dead letter.

    Deep validation is the normalize stage's; here only what keys the record is checked: the topic
    must name the device, and a JSON payload naming another device is refused (a misconfigured
    device or platform would otherwise file its events under someone else's id).
    """
    raw_topic = settings.topic(RAW["sensors"])

    def dead(reason: str) -> RawRecord:
        return RawRecord(settings.topic(DLQ), None, payload,
                         dead_letter_headers("mqtt", reason, raw_topic, extra={"mqtt_topic": mqtt_topic}))

    parts = mqtt_topic.split("/")
    if len(parts) != 4 or parts[0] != "sensors" or parts[3] != "events" or not parts[2]:
        return dead(f"MQTT topic '{mqtt_topic}' is not sensors/{{deviceType}}/{{deviceId}}/events")
    device_id = parts[2]
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        doc = None  # not JSON: forwarded as-is, the normalize stage dead-letters it with the reason
    if isinstance(doc, dict) and "deviceId" in doc and str(doc["deviceId"]) != device_id:
        return dead(f"payload deviceId '{doc['deviceId']}' differs from the topic's '{device_id}'")
    return RawRecord(raw_topic, device_id.encode("utf-8"), payload)


class MqttBridge(Source):
    """Subscribes to the sensor topics and forwards every message to ``raw.sensors``."""

    def __init__(self, settings: Settings, *, host: str | None = None, port: int | None = None,
                 client_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.host = host or settings.mqtt_host
        self.port = port or settings.mqtt_port
        self.client_id = client_id or client_id_for(settings)
        self.producer = RawProducer(settings, client_id="gridhub-mqtt-bridge")
        self._queue: asyncio.Queue[mqtt.MQTTMessage] = asyncio.Queue()
        self._client: mqtt.Client | None = None
        self.connected = False
        self.forwarded = 0
        self.dead_lettered = 0

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        return [self.producer]

    async def deliver(self, records: Sequence[RawRecord]) -> None:
        """Produce with acks=all; returns once Kafka acknowledged all (then the MQTT acks may go)."""
        await self.producer.deliver(records)

    # --- paho thread ---------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("mqtt_connect_refused", reason=str(reason_code))
            return
        self.connected = True
        # Re-subscribing is harmless with a persistent session and needed after a broker lost its state.
        client.subscribe(TOPIC_FILTER, qos=1)
        log.info("mqtt_connected", host=self.host, port=self.port, client_id=self.client_id,
                 session_present=bool(getattr(flags, "session_present", False)))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self.connected = False
        if reason_code.is_failure:
            log.warning("mqtt_disconnected", reason=str(reason_code))  # paho's loop reconnects with backoff
        else:
            log.info("mqtt_disconnected", reason=str(reason_code))

    def _on_message_thread(self, loop: asyncio.AbstractEventLoop) -> Any:
        def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            loop.call_soon_threadsafe(self._queue.put_nowait, msg)
        return on_message

    # --- lifecycle -----------------------------------------------------------------
    async def on_started(self) -> None:
        loop = asyncio.get_running_loop()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv311, clean_session=False, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message_thread(loop)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        # keepalive 30 s: a dead TCP connection is noticed within ~45 s and the loop reconnects.
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()
        self._client = client
        self.add_future(self._forward())

    async def on_stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            # Messages still queued here are not acknowledged: the broker redelivers them next time.
            client.disconnect()
            await asyncio.get_running_loop().run_in_executor(None, client.loop_stop)

    async def _forward(self) -> None:
        while not self.should_stop:
            try:
                first = await asyncio.wait_for(self._queue.get(), timeout=1.0)
            except asyncio.TimeoutError:
                continue
            batch = [first]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            records = [to_record(self.settings, m.topic, bytes(m.payload)) for m in batch]
            delay = 0.5
            while not self.should_stop:
                try:
                    await self.deliver(records)
                    break
                except RetriableError as exc:
                    log.warning("mqtt_bridge_kafka_retry", error=str(exc), pending=len(records), delay=delay)
                    await self.sleep(delay)
                    delay = min(delay * 2, 30.0)  # back off up to 30 s while Kafka is away
            else:
                return  # stopping: nothing acknowledged, the broker keeps the messages
            client = self._client
            if client is None:
                return
            for m in batch:  # in arrival order (MQTT 3.1.1 4.6.0-2)
                if m.qos > 0:
                    client.ack(m.mid, m.qos)
            dead = sum(1 for r in records if r.key is None)
            self.forwarded += len(records) - dead
            self.dead_lettered += dead
            log.debug("mqtt_bridge_batch", messages=len(batch), dead_lettered=dead)


def create(app: Any, settings: Settings) -> Service | None:
    """``gridhub run`` factory (runner.SERVICES).  Disabled with ``GRIDHUB_MQTT_PORT=0``."""
    from gridhub.shadow import is_shadow

    if settings.mqtt_port == 0 or is_shadow():  # issue 15: a shadow never ingests the live MQTT feed
        return None
    return MqttBridge(settings)
