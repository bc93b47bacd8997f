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

No message can stop the bridge: one larger than a dead letter can hold
(gridhub/core/dlq.py, 900,000 bytes), or one Kafka refuses for its content
(record too large for the topic, corrupt, invalid), is dead-lettered as a
*reference* (MQTT topic, size, sha256 and its first KiB), acknowledged and
never retried.  Only unavailability (network, leader election, timeouts) is
retried, with backoff, because waiting fixes it (it used to retry everything:
one oversized message stopped all sensor ingestion for good).

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

from aiokafka.errors import (CorruptRecordException, InvalidTopicError, MessageSizeTooLargeError,
                             RecordListTooLargeError, RecordTooLargeError, UnsupportedForMessageFormatError)

from connectors.base import RawRecord, RetriableError, Source
from connectors.kafka_io import RawProducer
from gridhub.core.dlq import DLQ_MAX_VALUE, PREVIEW_BYTES, dead_letter_headers, reference_headers
from gridhub.core.logging import get_logger
from gridhub.core.settings import Settings
from gridhub.core.topics import DLQ, RAW

log = get_logger(__name__)

TOPIC_FILTER = "sensors/+/+/events"
#: Largest batch handed to Kafka at once; Mosquitto's default max_inflight_messages (20)
#: bounds what is unacknowledged anyway, this only caps a burst after a long outage.
MAX_BATCH = 500


def client_id_for(settings: Settings) -> str:
    """Fixed per namespace: the broker finds the same persistent session after a restart."""
    return "gridhub-mqtt-bridge" + (f"-{settings.namespace}" if settings.namespace else "")


#: Kafka's answers about a record's *content*: sending it again cannot succeed.
CONTENT_ERRORS = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, CorruptRecordException,
                  InvalidTopicError, UnsupportedForMessageFormatError)


def refused_for_content(exc: BaseException) -> bool:
    """Did Kafka refuse the record itself (vs. being unavailable)?  Looks through RetriableError's cause."""
    cause = exc.__cause__ if isinstance(exc, RetriableError) else exc
    return isinstance(cause, CONTENT_ERRORS)


def reference_record(settings: Settings, mqtt_topic: str, payload: bytes, reason: str) -> RawRecord:
    """A dead letter that stands for a message too big (or refused) to store: its first KiB,
    the MQTT topic, size and sha256 (``gridhub dlq show`` prints them)."""
    headers = dead_letter_headers("mqtt", reason, settings.topic(RAW["sensors"]), extra={"mqtt_topic": mqtt_topic})
    return RawRecord(settings.topic(DLQ), None, payload[:PREVIEW_BYTES], headers + reference_headers(payload))


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

    if len(payload) > DLQ_MAX_VALUE:
        return reference_record(settings, mqtt_topic, payload,
                                f"MQTT message of {len(payload)} bytes exceeds the {DLQ_MAX_VALUE}-byte limit")
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


def configure_connection(client: mqtt.Client, settings: Settings) -> None:
    """The broker login and TLS from settings (production Mosquitto refuses anonymous clients)."""
    if settings.mqtt_username:
        client.username_pw_set(settings.mqtt_username, settings.mqtt_password or None)
    if settings.mqtt_tls:
        # Verifies the broker's certificate and host name against the CA (system CAs when none is given).
        client.tls_set(ca_certs=settings.mqtt_ca_file or None)


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
        configure_connection(client, self.settings)
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
                    records = await self._deliver_or_reference(batch, records)
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
            dead = sum(1 for r in records if r.topic == self.settings.topic(DLQ))
            self.forwarded += len(records) - dead
            self.dead_lettered += dead
            log.debug("mqtt_bridge_batch", messages=len(batch), dead_lettered=dead)


    async def _deliver_or_reference(self, batch: list[mqtt.MQTTMessage], records: list[RawRecord]) -> list[RawRecord]:
        """Deliver ``records``; those Kafka refuses for their content become references in ``dlq``.

        The batch is tried whole (the usual case); after a content refusal, one by one, so only the
        offending messages are replaced.  Unavailability raises :class:`RetriableError` (retried whole:
        already sent records are sent again, as at-least-once allows).  Returns what was delivered.
        """
        try:
            await self.deliver(records)
            return records
        except RetriableError as exc:
            if not refused_for_content(exc):
                raise
        sent: list[RawRecord] = []
        for message, record in zip(batch, records):
            try:
                await self.deliver([record])
                sent.append(record)
            except RetriableError as exc:
                if not refused_for_content(exc):
                    raise
                cause = exc.__cause__
                ref = reference_record(self.settings, message.topic, bytes(message.payload),
                                       f"Kafka refused the record: {type(cause).__name__}")
                log.warning("mqtt_message_refused", mqtt_topic=message.topic, size=len(message.payload),
                            error=type(cause).__name__)
                await self.deliver([ref])
                sent.append(ref)
        return sent


def create(app: Any, settings: Settings) -> Service | None:
    """``gridhub run`` factory (runner.SERVICES).  Disabled with ``GRIDHUB_MQTT_PORT=0``."""
    from gridhub.core.shadow import is_shadow

    if settings.mqtt_port == 0 or is_shadow():  # issue 15: a shadow never ingests the live MQTT feed
        return None
    return MqttBridge(settings)
