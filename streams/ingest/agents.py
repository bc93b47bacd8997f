"""Faust wiring of ingest: raw.* -> reports / device-events, bad input -> dlq.

One agent per raw topic consumes *events* (not values) so that it has the
original bytes, key, headers, partition and offset of every record: a
document that :func:`streams.ingest.normalize.normalize` rejects is produced
to ``dlq`` byte for byte with ``error.*`` headers, and the partition moves
on.  Nothing a source sends can stop an agent: an unexpected exception in the
adapter is dead-lettered too (with the exception type in the reason).

Device registry (CONTRACTS.md 1.3, compacted topic ``registry.devices``):
held in memory by :class:`DeviceRegistry`, a ``mode.Service`` that reads the
whole topic from the beginning (no consumer group, every partition, like a
Kafka Streams GlobalKTable) and keeps following it.  Faust's own GlobalTable
documents an "infinite recovery loop with multiple app instances" unless it
has one partition, and the registry topic is the sources' to partition, so a
plain reader is the safer global view.  The sensors agent waits until the
reader has caught up with the topic's end offsets at start-up, so a device
registered before the worker started is always known.

Batches (issue 14): each agent takes Faust's ``take_events`` lists, processed one
partition at a time (``streams.delivery.partition_groups``); its reports, device
events and dead letters go through one ``Deliveries`` and are confirmed by the
broker before the next list is asked for (when Faust acknowledges the list).  A record Kafka
refuses stops the worker with status 70 without acknowledging the batch.

Liveness (heartbeat fast path): every sensor event proves the device is alive
(a heartbeat produces nothing else and never reaches fusion).  Last-seen times
live in memory (:data:`_live`); the table ``device-liveness`` (deviceId ->
last-seen ms) is only their copy for a restart: a device the table does not
know yet is written at once, a known one at most once per
``LIVENESS_SCAN_SECONDS`` (the partition's dirty devices are written together
at the end of the first batch after the interval), so 10,000 devices beating
every few seconds cost a few changelog records a second, not one per beat.  After a
crash the table can be up to one interval behind memory: a device that then stays
silent is reported offline at most that much early (the offline threshold is
``OFFLINE_FACTOR`` x its heartbeat interval, minutes).  A timer reports a
*registered* device offline once silent for ``OFFLINE_FACTOR`` x its
``heartbeatSeconds``: one ``offline`` DeviceEvent per silence episode, whose
``event_id`` is derived from the last-seen time, so a repeat after a restart
is recognisably the same episode.  (The timer does not write the table:
Faust tables written outside an agent need ``use_partitioner``, which fails
on changelog metadata in faust-streaming 0.15, and the RocksDB store picks its
database from the current event.)
Devices not in the registry are not watched: without a registry record the
hub does not know their interval, or that they should exist at all.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service
from prometheus_client import Counter

from gridhub.core import metrics
from gridhub.core.clock import HubClock
from gridhub.core.codec import codec
from gridhub.core.logging import get_logger
from gridhub.core.topics import DEVICE_EVENTS, DLQ, RAW, REGISTRY_DEVICES, REPORTS
from streams.app import app, dead_letter, ensure_topics, settings, stop_on_infrastructure_error, table_options, topic
from streams.delivery import Deliveries, current_event, partition_groups
from gridhub.core import pii
from streams.ingest.normalize import REPORT_NAMESPACE, Normalized, Rejected, normalize
from streams.ingest.taxonomy import OTHER

log = get_logger(__name__)

STAGE = "normalize"

#: A device is offline after 2.5 missed heartbeats: one lost heartbeat (NB-IoT radios drop some)
#: and the jitter of the next are tolerated, a dead battery or a cut cable is not.
OFFLINE_FACTOR = 2.5
#: How often the liveness timer scans (seconds): small against the shortest usual heartbeat (300 s).
LIVENESS_SCAN_SECONDS = 15.0

reports_topic = topic(REPORTS)
device_events_topic = topic(DEVICE_EVENTS)
# internal=True: Faust creates the raw topics (settings.partitions) if a source has not yet, so an
# agent never starts subscribed to nothing; configs come from deploy/topics.yaml (_ensure_topics).
raw_topics = {source: topic(name, internal=True) for source, name in RAW.items()}

#: deviceId -> {"last": ms, "p": raw.sensors partition}, JSON bytes; written only by the sensors
#: agent, so each key lives in the changelog partition of the raw.sensors partition it came from.
liveness = app.Table("device-liveness", key_type=bytes, value_type=bytes, options=table_options())

class _Live:
    """One device's liveness in memory (the table holds a copy at most one scan interval old)."""

    __slots__ = ("last", "partition", "written")

    def __init__(self, last: int, partition: int, written: int) -> None:
        self.last, self.partition, self.written = last, partition, written


#: deviceId -> liveness, for every device this worker has seen or recovered from the table
_live: dict[str, _Live] = {}
#: raw.sensors partition -> devices whose last-seen changed since it was last written to the table
_dirty: dict[int, set[str]] = {}
#: raw.sensors partition -> monotonic time of its last liveness write-out (seconds)
_last_write_out: dict[int, float] = {}

#: deviceId -> last-seen ms of the silence episode already reported offline (this process).  After a
#: restart an episode may be reported again: its event_id is the same, so consumers dedupe on it.
_reported_offline: dict[str, int] = {}

_pii_key = settings.secret("pii_key").encode("utf-8")

UNMAPPED_CATEGORIES = Counter("gridhub_unmapped_categories_total",
                              "Reports whose source category maps to 'other'", ["source"])


# --------------------------------------------------------------------------- device registry


class DeviceRegistry(Service):
    """The whole ``registry.devices`` topic in memory: deviceId -> registry record dict.

    One instance per worker (:data:`device_registry`), read by this process's agents; ``ready`` is
    set once the topic has been read to its end, so no sensor document is normalised against a
    half-loaded registry.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.records: dict[str, dict[str, Any]] = {}
        self.ready = asyncio.Event()

    async def on_start(self) -> None:
        self.add_future(self._follow())

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one registry record (a tombstone removes the device)."""
        if key is None:
            return
        device_id = key.decode("utf-8", "replace")
        if value is None:
            self.records.pop(device_id, None)
            return
        try:
            record = json.loads(value)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            log.warning("registry_record_invalid", device_id=device_id)
            return
        self.records[device_id] = record

    async def _follow(self) -> None:
        name = settings.topic(REGISTRY_DEVICES)
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    **settings.kafka_client_options())
        await consumer.start()
        try:
            partitions = await self._partitions(consumer, name)
            tps = [TopicPartition(name, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps) if tps else {}
            behind = {tp for tp, off in end.items() if off > 0}
            if not behind:
                self.ready.set()
            while not self.should_stop:
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, records in batch.items():
                    for rec in records:
                        self.apply(rec.key, rec.value)
                for tp in list(behind):
                    if await consumer.position(tp) >= end[tp]:
                        behind.discard(tp)
                if not behind and not self.ready.is_set():
                    log.info("registry_loaded", devices=len(self.records))
                    self.ready.set()
        finally:
            await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer, name: str) -> set[int]:
        """The topic's partitions, creating it (compacted) through Faust if nobody has yet."""
        partitions = consumer.partitions_for_topic(name)
        if not partitions:
            await ensure_topics([REGISTRY_DEVICES])
            for _ in range(30):  # metadata propagation takes a few hundred ms on one broker
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(name)
                if partitions:
                    break
                await asyncio.sleep(0.2)
        return set(partitions or ())


device_registry = DeviceRegistry()
# Faust starts service instances as well as classes (App._prepare_subservice).
app.service(device_registry)  # type: ignore[arg-type]




@app.task
async def declare_ingest_topics() -> None:
    await ensure_topics([*RAW.values(), REGISTRY_DEVICES, REPORTS, DEVICE_EVENTS, DLQ])


# --------------------------------------------------------------------------- agents




def _received_ms(event: Any) -> int:
    """The raw record's Kafka timestamp: a replay of the raw topic reproduces the same versions."""
    ts = event.message.timestamp
    return int(ts * 1000) if ts else int(time.time() * 1000)


async def _emit(source: str, deliveries: Deliveries, out: Normalized, partition: int) -> None:
    if out.report is not None:
        report = out.report
        await deliveries.send(reports_topic, key=report["county_code"].encode(), value=codec("Report").encode(report))
        metrics.REPORTS_OUT.labels(source=source).inc()
        if report["category"] == OTHER and report.get("source_category_name") not in (None, "其他", "其它"):
            # Not dropped: counted, so the taxonomy table can be extended (docs/ingest.md).
            UNMAPPED_CATEGORIES.labels(source=source).inc()
            log.info("category_unmapped", source=source, source_category_code=report["source_category_code"],
                     source_category_name=report["source_category_name"])
    if out.device_event is not None:
        ev = out.device_event
        await deliveries.send(device_events_topic, key=ev["device_id"].encode(),
                              value=codec("DeviceEvent").encode(ev))
    if out.heartbeat is not None:
        device_id, at = out.heartbeat
        hub_clock.observe(at)
        if _seen(device_id, at, partition) and _reported_offline.get(device_id, at) < at:
            # issue 15: a silent device is back online
            await _send_online(deliveries, device_id, int(_reported_offline.pop(device_id)), at)


def _live_state(device_id: str, partition: int) -> _Live | None:
    """The device's liveness: memory, else the table (after a restart: the recovered copy)."""
    live = _live.get(device_id)
    if live is None:
        raw = liveness.get(device_id.encode())
        if raw:
            state = json.loads(raw)
            live = _live[device_id] = _Live(int(state.get("last", 0)), int(state.get("p", partition)),
                                            int(state.get("last", 0)))
    return live


def _seen(device_id: str, at: int, partition: int) -> bool:
    """Record that the device was alive at ``at`` (in memory); False for a late, older event."""
    live = _live_state(device_id, partition)
    if live is None:
        _live[device_id] = _Live(at, partition, written=-1)  # not in the table yet: written this batch
    elif at > live.last:  # a late, older event proves nothing about now
        live.last, live.partition = at, partition
    else:
        return False
    _dirty.setdefault(partition, set()).add(device_id)
    return True


def _write_liveness(deliveries: Deliveries, partition: int) -> None:
    """Copy the partition's changed last-seen times to the table: new devices at once, the rest at most
    once per LIVENESS_SCAN_SECONDS (the changelog records are confirmed with the batch)."""
    dirty = _dirty.get(partition)
    if not dirty:
        return
    now = time.monotonic()
    due = now - _last_write_out.get(partition, float("-inf")) >= LIVENESS_SCAN_SECONDS
    if due:
        _last_write_out[partition] = now
        devices = list(dirty)
        dirty.clear()
    else:
        devices = [d for d in dirty if _live[d].written < 0]
        dirty.difference_update(devices)
    for device_id in devices:
        live = _live[device_id]
        live.written = live.last
        deliveries.table_write(liveness, partition, device_id.encode(),
                               json.dumps({"last": live.last, "p": live.partition}).encode())


async def _process_group(source: str, deliveries: Deliveries, events: list[Any]) -> None:
    """One partition's events: normalise, send, write the partition's liveness."""
    partition = events[0].message.partition
    for event in events:
        metrics.DOCUMENTS_IN.labels(source=source).inc()
        try:
            out = normalize(source, event.message.value or b"", registry=device_registry.records,
                            received_at_ms=_received_ms(event), pii_key=_pii_key)
        except Rejected as exc:
            await dead_letter(event, STAGE, exc.reason, deliveries)
        except Exception as exc:  # a bug must cost one document, not the partition
            log.exception("normalize_failed", source=source, topic=event.message.topic,
                          partition=event.message.partition, offset=event.message.offset)
            await dead_letter(event, STAGE, f"internal error {type(exc).__name__}: {exc}"[:500], deliveries)
        else:
            if out.report is not None and _historical(event):  # issue 15: --historical import / replay
                out.report["historical"] = True
            with stop_on_infrastructure_error(event, STAGE):
                await _emit(source, deliveries, out, partition)
    with stop_on_infrastructure_error(events[-1], STAGE):
        _write_liveness(deliveries, partition)


async def _process(source: str, stream: Any) -> AsyncIterator[None]:
    """Faust's ``take_events`` lists, grouped by partition, each confirmed whole before the next is asked
    for (when Faust acknowledges it): one broker round trip per list."""
    deliveries = Deliveries(STAGE)
    async for groups in partition_groups(stream, max_events=settings.batch_max_events,
                                         within_s=settings.batch_within_ms / 1000):
        if source == "sensors" and not device_registry.ready.is_set():
            await device_registry.ready.wait()
        for group in groups:
            with current_event(group[-1]):
                await _process_group(source, deliveries, group)
        await deliveries.confirm([event for group in groups for event in group])
        yield None


#: Issue 15: the raw-record header that `gridhub import --historical` and `gridhub replay --historical` set.
HISTORICAL_HEADER = "gridhub.historical"


def _historical(event: Any) -> bool:
    for key, value in event.message.headers or ():
        if key == HISTORICAL_HEADER and value in (b"1", "1"):
            return True
    return False


@app.agent(raw_topics["four-platforms"], name="ingest-four-platforms")
async def ingest_four_platforms(stream: Any) -> AsyncIterator[None]:
    async for _ in _process("four-platforms", stream):
        yield None


@app.agent(raw_topics["hotline-12345"], name="ingest-hotline-12345")
async def ingest_hotline(stream: Any) -> AsyncIterator[None]:
    async for _ in _process("hotline-12345", stream):
        yield None


@app.agent(raw_topics["sensors"], name="ingest-sensors")
async def ingest_sensors(stream: Any) -> AsyncIterator[None]:
    async for _ in _process("sensors", stream):
        yield None


# --------------------------------------------------------------------------- liveness


def offline_event(device_id: str, record: dict[str, Any], last_ms: int, now_ms: int) -> dict[str, Any]:
    """The DeviceEvent of one silence episode (its id is stable for the episode: last-seen time)."""
    street = record.get("streetCode") if isinstance(record.get("streetCode"), str) else None
    address = record.get("address") if isinstance(record.get("address"), str) else None
    # The registry is raw input: its address may name the owner or carry a phone (docs/security.md).
    names = pii.names_in({"deviceId": device_id}, {device_id: record})
    return {
        "event_id": str(uuid.uuid5(REPORT_NAMESPACE, f"sensors|{device_id}|offline|{last_ms}")),
        "device_id": device_id, "device_type": str(record.get("deviceType") or "unknown"),
        "event_type": "offline", "at": now_ms, "county_code": street[:6] if street else None,
        "street_code": street, "address": pii.mask_text(address, names) if address else None,
        "owner": None, "detail": f"silent since {last_ms} ms (> {OFFLINE_FACTOR} x heartbeat interval)",
    }


async def _send_online(deliveries: Deliveries, device_id: str, silent_since: int, at: int) -> None:
    """Issue 15: the DeviceEvent ``online`` that ends an offline episode (closes the device case)."""
    event = dict(offline_event(device_id, device_registry.records.get(device_id, {}), silent_since, at),
                 event_id=str(uuid.uuid5(REPORT_NAMESPACE, f"sensors|{device_id}|online|{silent_since}")),
                 event_type="online", detail=f"heartbeat again at {at} ms after silence since {silent_since} ms")
    await deliveries.send(device_events_topic, key=device_id.encode(), value=codec("DeviceEvent").encode(event))
    log.info("device_online", device_id=device_id, silent_since=silent_since)


def silent_devices(states: dict[str, dict[str, Any]], registry: dict[str, dict[str, Any]],
                   now_ms: int) -> list[str]:
    """Registered devices silent past OFFLINE_FACTOR x heartbeatSeconds, not yet reported offline."""
    out = []
    for device_id, state in states.items():
        interval = registry.get(device_id, {}).get("heartbeatSeconds")
        if state.get("offline") or not isinstance(interval, (int, float)) or interval <= 0:
            continue
        if now_ms - int(state.get("last", now_ms)) > OFFLINE_FACTOR * interval * 1000:
            out.append(device_id)
    return out


#: "now" for liveness: wall time, or event time in compressed-time demos (gridhub/core/clock.py).
hub_clock = HubClock(settings)


@app.timer(interval=LIVENESS_SCAN_SECONDS, name="ingest-liveness")
async def scan_liveness() -> None:
    now_ms = hub_clock.now_ms()  # wall time, or event time in compressed-time demos (gridhub/core/clock.py)
    # Every worker runs the timer and may hold standby copies of other workers' partitions:
    # only the owner of a key's partition reports it.
    changelog = liveness.changelog_topic.get_topic_name()
    actives = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == changelog}
    states: dict[str, dict[str, Any]] = {}
    # The table for devices this process has not seen since it started (recovered state), memory for the rest.
    # (max of both: after a partition moved away and back, the other worker's copy is the newer one)
    for key, value in list(liveness.items()):
        device_id = key.decode("utf-8", "replace")
        state = json.loads(value)
        last = int(state.get("last", 0))
        live = _live.get(device_id)
        if live is None:
            _live[device_id] = _Live(last, int(state.get("p", -1)), last)
        elif last > live.last:
            live.last, live.partition, live.written = last, int(state.get("p", live.partition)), last
    for device_id, live in _live.items():
        if live.partition not in actives:
            continue
        states[device_id] = {"last": live.last, "p": live.partition,
                             "offline": _reported_offline.get(device_id) == live.last}
    for device_id in silent_devices(states, device_registry.records, now_ms):
        state = states[device_id]
        event = offline_event(device_id, device_registry.records[device_id], int(state["last"]), now_ms)
        await device_events_topic.send(key=device_id.encode(), value=codec("DeviceEvent").encode(event))
        _reported_offline[device_id] = int(state["last"])
        log.info("device_offline", device_id=device_id, last_seen=state["last"])

