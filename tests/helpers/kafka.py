"""The tests' one way to read and write Kafka topics of a test namespace.

* :class:`TopicReader`: reads one namespaced topic from the beginning, keeps everything it read,
  and waits for a condition (``until``) or for silence (``settle``);
* :func:`read_topic`: the records of a namespaced topic once at least ``n`` are there (the
  ``consume`` fixture of tests/conftest.py);
* :func:`read_all`: a snapshot of a physical topic as comparable rows;
* :func:`produce`: records to a namespaced topic, acknowledged.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from gridhub.core.codec import codec
from gridhub.core.kafka_admin import make_producer
from gridhub.core.settings import Settings
from gridhub.ops.common import read_to_end

Row = tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes]], int]


class TopicReader:
    """Reads one namespaced topic from the beginning and keeps everything it read."""

    def __init__(self, settings: Settings, topic: str, decode: str | None = None) -> None:
        from kafka import KafkaConsumer

        self.name = settings.topic(topic)
        self.decode = decode
        self.records: list[Any] = []
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                      auto_offset_reset="earliest", group_id=None,
                                      **settings.kafka_client_options())  # the secured broker's login too
        self.assigned = False

    def values(self) -> list[Any]:
        if self.decode is None:
            return [r.value for r in self.records]
        return [codec(self.decode).decode(r.value) for r in self.records]

    def poll(self, seconds: float = 0.5) -> None:
        if not self.assigned:  # the topic may not exist yet (dispatch topics are created on first use)
            from kafka import TopicPartition

            partitions = self.consumer.partitions_for_topic(self.name)
            if not partitions:
                self.consumer.poll(timeout_ms=0)  # refreshes metadata
                time.sleep(seconds)
                return
            tps = [TopicPartition(self.name, p) for p in sorted(partitions)]
            self.consumer.assign(tps)
            self.consumer.seek_to_beginning(*tps)
            self.assigned = True
        for batch in self.consumer.poll(timeout_ms=int(seconds * 1000)).values():
            self.records.extend(batch)

    def until(self, predicate: Callable[[list[Any]], bool], timeout: float = 60.0, what: str = "") -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            values = self.values()
            if predicate(values):
                return values
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: timed out waiting for {what or predicate}; read {len(values)}: "
                                     f"{values[-10:]}")
            self.poll()

    def settle(self, seconds: float) -> list[Any]:
        """Everything read after waiting ``seconds`` more (to show that nothing else arrives)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.poll(0.3)
        return self.values()

    def close(self) -> None:
        self.consumer.close()


def read_topic(settings: Settings, topic: str, n: int, timeout: float = 30.0) -> list[Any]:
    """Every record of the namespaced ``topic`` read once at least ``n`` were read, or what was there
    when ``timeout`` seconds passed (duplicates and extra records stay visible); ``n=0`` reads for
    the whole timeout (to assert that nothing arrives)."""
    reader = TopicReader(settings, topic)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (n == 0 or len(reader.records) < n):
            reader.poll(min(0.5, max(0.05, deadline - time.monotonic())))
        return list(reader.records)
    finally:
        reader.close()


def produce(settings: Settings, topic: str, records: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """Produce to the namespaced ``topic``; returns (partition, offset) of each record."""
    producer = make_producer(settings)
    try:
        futures = [producer.send(settings.topic(topic), key=r.get("key"), value=r.get("value"),
                                 headers=r.get("headers") or [], partition=r.get("partition"),
                                 timestamp_ms=r.get("timestamp")) for r in records]
        producer.flush()
        return [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()


def read_all(settings: Settings, physical: str) -> list[Row]:
    """Every record of a physical topic as comparable rows, sorted by (partition, offset)."""
    return [(r.partition, r.offset, r.key, r.value, [(k, v) for k, v in r.headers or []], r.timestamp)
            for r in read_to_end(settings, [physical])]
