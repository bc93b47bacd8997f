"""The one interface every connector implements, and the one loop that runs every sink.

Modelled on Kafka Connect's SourceTask / SinkTask split: a *Source* turns
documents from the outside world (HTTP, files, MQTT) into raw Kafka records
and acknowledges its origin only after Kafka acknowledged them; a *Sink*
takes batches of Kafka records out to a destination (ClickHouse, webhooks),
returns the records the destination refuses, and says, by exception type,
whether a failure is worth retrying.  A sink knows nothing about Kafka: the
:class:`SinkRunner` consumes, calls it, dead-letters and commits.

All are ``mode.Service``s: they are started and stopped by the worker (or a
CLI command) and own their clients' lifecycles.
"""

from __future__ import annotations

import abc
import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from mode import Service

from gridhub.core.dlq import dead_letter_headers
from gridhub.core.errors import DataError, RetriableError
from gridhub.core.logging import get_logger
from gridhub.core.metrics import DEAD_LETTERS, SINK_RETRIES
from gridhub.core.settings import Settings

__all__ = ["DataError", "RawRecord", "Refused", "RetriableError", "Sink", "SinkRunner", "Source"]

log = get_logger(__name__)


@dataclass(frozen=True)
class RawRecord:
    """One record for or from Kafka, bytes untouched."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None
    offset: int | None = None
    timestamp_ms: int | None = None


class Source(Service, abc.ABC):
    """Brings outside documents in as raw records on a ``raw.*`` topic."""

    @abc.abstractmethod
    async def deliver(self, records: Sequence[RawRecord]) -> None:
        """Produce ``records`` with ``acks=all``; return only when Kafka acknowledged all of them."""


#: A record the destination refused, with one human sentence saying why (its dead letter's reason).
Refused = tuple[RawRecord, str]


class Sink(Service, abc.ABC):
    """Writes batches of Kafka records out of the hub; run by a :class:`SinkRunner`."""

    async def open(self) -> None:
        """Make the destination ready before the first batch (e.g. migrate tables); the runner calls it
        again after a :class:`RetriableError`, so it must be idempotent."""

    @abc.abstractmethod
    async def write(self, batch: Sequence[RawRecord]) -> list[Refused]:
        """Make ``batch`` durable at the destination; return the records it refuses (data errors).

        Raise :class:`RetriableError` when the destination is unavailable: the runner repeats the
        same batch later, so writing a record twice must be harmless (idempotent on its id).
        """


class SinkRunner(Service):
    """Kafka -> a :class:`Sink`: the one consume -> write -> dead-letter -> commit loop.

    Its own consumer group reads ``topics`` with auto commit off and buffers records until
    ``batch_records`` are buffered or the oldest is ``flush_seconds`` old.  A flush, in order:

    1. **Write**: ``sink.write(batch)``, with fetching paused (heartbeats go on).  With
       ``per_partition`` each partition's records are written concurrently and separately (one
       agency's outage does not hold up another's webhooks).  :class:`RetriableError`: back off
       (exponential from ``backoff_initial`` to ``backoff_max``) and repeat step 1 with the same
       records, as long as it takes.  Any other exception is a bug: the worker stops (nothing
       committed), and the records are read again after the restart.
    2. **Dead letters**: the refused records' original bytes go to ``dlq`` with ``error.*`` headers
       (``stage``), and the runner waits for Kafka's ``acks=all``.  Failure: back off and repeat
       step 2, never step 3 first.
    3. **Commit** the offsets just past the last buffered record of each partition this consumer
       still owns.  Failure (a rebalance moved the partition, the broker is away): logged; the
       records are delivered again, to this or another consumer, and written again (harmless).

    A crash anywhere before step 3 therefore loses nothing.  On a clean stop the runner makes one
    last flush attempt (no retries) before it closes the consumer.
    """

    def __init__(self, settings: Settings, sink: Sink, *, topics: Sequence[str], group_id: str, stage: str,
                 client_id: str, batch_records: int = 5_000, flush_seconds: float = 1.0,
                 per_partition: bool = False, backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.sink = sink
        self.topics = list(topics)
        self.group_id = group_id
        self.stage = stage
        self.client_id = client_id
        self.batch_records = batch_records
        self.flush_seconds = flush_seconds
        self.per_partition = per_partition
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._buffer: list[RawRecord] = []
        self._buffer_since: float | None = None
        self._consumer: Any = None
        self._producer: Any = None
        # The run loop and the final flush of on_stop must not flush the same buffer at once.
        self._flush_lock = asyncio.Lock()
        # For `gridhub bench sink` and the logs.
        self.first_record_at: float | None = None
        self.last_commit_at: float | None = None
        self.retries = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def on_first_start(self) -> None:
        await self.add_runtime_dependency(self.sink)

    async def on_start(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        from gridhub.core.kafka_admin import ensure_topics_off_loop

        s = self.settings
        # A consumer subscribed to a missing topic gets no partitions of it until its next metadata
        # refresh (aiokafka's default: 5 minutes): create them first.  On failure the runner starts
        # regardless: the producers create these topics too.
        await ensure_topics_off_loop(s, self.topics, failure_event=f"{self.stage}.topics_not_ensured")
        self._producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", enable_idempotence=True,
                                          client_id=self.client_id, **s.kafka_client_options())
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap, group_id=self.group_id, client_id=self.client_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            # Every buffered record must fit one flush: fetch no more than a batch per poll.
            max_poll_records=self.batch_records, **s.kafka_client_options())
        self._consumer.subscribe(topics=[s.topic(t) for t in self.topics])
        await self._consumer.start()
        log.info("sink_runner.started", stage=self.stage, group=self.group_id, topics=self.topics)

    async def on_stop(self) -> None:
        if self._consumer is not None and self._buffer:
            try:  # one last attempt, no retries: whatever is not committed is read again next time
                async with asyncio.timeout(10):
                    async with self._flush_lock:
                        await self._flush(retry=False)
            except Exception as exc:
                log.warning("sink_runner.final_flush_failed", stage=self.stage, error=str(exc))
        for client in (self._consumer, self._producer):
            if client is not None:
                try:
                    await client.stop()
                except Exception as exc:
                    log.warning("sink_runner.client_stop_failed", stage=self.stage, error=str(exc))
        self._consumer = self._producer = None

    async def _backoff(self, attempt: int, what: str, error: Exception) -> None:
        delay = min(self.backoff_max, self.backoff_initial * 2 ** min(attempt, 16))
        self.retries += 1
        SINK_RETRIES.labels(f"{self.stage}.{what}").inc()
        log.warning("sink_runner.retry", stage=self.stage, what=what, attempt=attempt + 1, delay_s=delay,
                    error=str(error))
        await self.sleep(delay)

    async def _retrying(self, what: str, step: Any, retry: bool = True) -> Any:
        attempt = 0
        while True:
            try:
                return await step()
            except RetriableError as error:
                if not retry or self.should_stop:
                    raise
                await self._backoff(attempt, what, error)
                attempt += 1

    @Service.task
    async def _run(self) -> None:
        await self._retrying("open", self.sink.open)
        while not self.should_stop:
            try:
                batches = await self._consumer.getmany(timeout_ms=max(1, int(self.flush_seconds * 250)))
            except Exception:
                if self.should_stop:  # the consumer was stopped under us
                    return
                raise
            for messages in batches.values():
                if self._buffer_since is None:
                    self._buffer_since = time.monotonic()
                    if self.first_record_at is None:
                        self.first_record_at = time.perf_counter()
                self._buffer.extend(RawRecord(topic=m.topic, key=m.key, value=m.value,
                                              headers=list(m.headers or []), partition=m.partition,
                                              offset=m.offset, timestamp_ms=m.timestamp) for m in messages)
            if self._due():
                async with self._flush_lock:
                    await self._flush()

    def _due(self) -> bool:
        if not self._buffer or self._buffer_since is None:
            return False
        return (len(self._buffer) >= self.batch_records
                or time.monotonic() - self._buffer_since >= self.flush_seconds)

    async def _write(self, batch: list[RawRecord]) -> list[Refused]:
        """Step 1."""
        if not self.per_partition:
            return await self.sink.write(batch)
        groups: dict[tuple[str, int | None], list[RawRecord]] = {}
        for record in batch:
            groups.setdefault((record.topic, record.partition), []).append(record)
        results = await asyncio.gather(*(self.sink.write(records) for records in groups.values()))
        return [refused for result in results for refused in result]

    async def _flush(self, retry: bool = True) -> None:
        """Steps 1-3 for the buffer; fetching is paused meanwhile."""
        batch = self._buffer
        assigned = list(self._consumer.assignment())
        self._consumer.pause(*assigned)
        try:
            refused = await self._retrying("write", lambda: self._write(batch), retry)
            if refused:
                await self._retrying("dead_letter", lambda: self._dead_letter(refused), retry)
            await self._commit(batch)
        finally:
            if self._consumer is not None:
                self._consumer.resume(*[tp for tp in assigned if tp in self._consumer.assignment()])

    async def _dead_letter(self, refused: list[Refused]) -> None:
        """Step 2."""
        dlq = self.settings.topic("dlq")
        try:
            futures = [await self._producer.send(
                dlq, record.value, key=record.key,
                headers=dead_letter_headers(self.stage, reason, record.topic, record.partition, record.offset))
                for record, reason in refused]
            await asyncio.gather(*futures)
        except Exception as exc:
            raise RetriableError(f"Kafka did not acknowledge the dead letters: {exc!r}") from exc
        DEAD_LETTERS.labels(stage=self.stage).inc(len(refused))
        for record, reason in refused:
            log.warning("sink_runner.dead_letter", stage=self.stage, topic=record.topic, partition=record.partition,
                        offset=record.offset, reason=reason)

    async def _commit(self, batch: list[RawRecord]) -> None:
        """Step 3, then a fresh buffer."""
        from aiokafka import TopicPartition
        from aiokafka.structs import OffsetAndMetadata

        self._buffer, self._buffer_since = [], None
        last: dict[tuple[str, int], int] = {}
        for record in batch:
            if record.partition is not None and record.offset is not None:
                key = (record.topic, record.partition)
                last[key] = max(last.get(key, -1), record.offset)
        owned = self._consumer.assignment()
        offsets = {TopicPartition(t, p): OffsetAndMetadata(o + 1, "") for (t, p), o in last.items()
                   if TopicPartition(t, p) in owned}
        if offsets:
            try:
                await self._consumer.commit(offsets)
            except Exception as exc:
                log.warning("sink_runner.commit_failed", stage=self.stage, error=str(exc), partitions=len(offsets))
                return
        self.last_commit_at = time.perf_counter()
        log.info("sink_runner.flushed", stage=self.stage, records=len(batch), partitions=len(offsets))
