"""ClickHouse sink: the hub's fact topics into ``<db>.reports / cases / case_events / dispatches / dead_letters``.

Its own consumer group (``<app id>.clickhouse-sink``) reads ``reports.linked``,
``cases``, ``case-events``, ``dispatches`` (routing's copy of every agency's
dispatch) and ``dlq``, subscribed by name, with auto commit off.  Records are
decoded into rows as they arrive and buffered per table; the buffer is flushed
when one table holds ``batch_rows`` rows or the oldest buffered record is
``flush_seconds`` old (thousands of rows, about one insert per second per
table: what MergeTree wants).

A flush, in order:

1. **Rows.**  Every buffered record was turned into a row when it arrived;
   a record that cannot be (not Avro, wrong schema, value out of range) is
   put aside as a dead letter with its reason.  Nothing can fail here.
2. **Insert** each table's rows into ClickHouse, one INSERT per table, in a
   worker thread (clickhouse-driver blocks).  Failures are classified once
   (``connectors/clickhouse/errors.py``):
   *retriable* (network, timeout, TOO_MANY_PARTS, memory limit, server
   shutting down, tables not migrated yet): fetching stays paused, the sink
   sleeps an exponential backoff (capped at ``backoff_max``) and repeats
   step 2 with the same rows, as long as it takes; tables already inserted
   are inserted again, which changes nothing (step 5).
   *data* (the server refuses rows): the table's rows are bisected until the
   refused rows are isolated; they join the dead letters, the rest is inserted.
3. **Dead letters**: the original record bytes go to ``dlq`` with
   ``error.*`` headers (stage ``sink``), and the sink waits for Kafka's
   ``acks=all``.  Failure: back off and retry step 3 (never step 4 first).
4. **Commit** the Kafka offsets just past the last buffered record of each
   partition this consumer still owns.  Failure (a rebalance moved the
   partition, the broker is away): logged; the records are delivered again,
   to this or another consumer, and inserted again (step 5).
5. **Idempotence** makes every repeat harmless: each table is a
   ReplacingMergeTree keyed by the fact's id (report_id + version, case_id +
   version, event_id, dispatch_id, dlq partition/offset), and every view reads
   through FINAL, so a row inserted twice is counted once.

A crash anywhere before step 4 therefore loses nothing: the uncommitted
records are read again on restart.  On a clean stop the sink makes one last
flush attempt (no retries) before it closes the consumer.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from mode import Service
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.base import DataError, RawRecord, RetriableError, Sink
from connectors.clickhouse.errors import classify
from connectors.clickhouse.rows import DEAD_LETTERS, TABLES, Row, RowError, TopicMap, dead_letter_row, to_row
from gridhub.dlq import dead_letter_headers
from gridhub.logging import get_logger
from gridhub.metrics import DEAD_LETTERS as DEAD_LETTER_COUNT
from gridhub.metrics import SINK_BATCH_SECONDS, SINK_ROWS
from gridhub.settings import Settings

log = get_logger(__name__)

STAGE = "sink"


class SinkSettings(BaseSettings):
    """Tuning of the sink, from ``GRIDHUB_CH_SINK_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="GRIDHUB_CH_SINK_", extra="ignore")

    enabled: bool = True
    # 5,000 rows: ClickHouse's advice is >= 1,000 rows per INSERT and about one INSERT per second.
    batch_rows: int = 5_000
    flush_seconds: float = 1.0
    # First retry after 0.5 s, doubling up to 30 s: a restarting server is back within seconds,
    # a longer outage is probed twice a minute.
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    # Apply schemas/migrations at start (idempotent), so a fresh database just works.
    migrate: bool = True


@dataclass
class Pending:
    """What a flush has to make durable: rows per table and dead letters, with their source records."""

    rows: dict[str, list[Row]] = field(default_factory=dict)
    sources: dict[str, list[RawRecord]] = field(default_factory=dict)
    dead: list[tuple[RawRecord, str]] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    first_at: float | None = None
    records: int = 0

    def add_row(self, table: str, row: Row, record: RawRecord) -> None:
        self.rows.setdefault(table, []).append(row)
        self.sources.setdefault(table, []).append(record)

    def mark(self, record: RawRecord) -> None:
        if self.first_at is None:
            self.first_at = time.monotonic()
        self.records += 1
        if record.partition is not None and record.offset is not None:
            key = (record.topic, record.partition)
            self.offsets[key] = max(self.offsets.get(key, -1), record.offset)

    def largest(self) -> int:
        return max((len(r) for r in self.rows.values()), default=0)


class ClickHouseSink(Sink):
    """Kafka facts -> ClickHouse, flush-then-commit (see the module docstring)."""

    def __init__(self, settings: Settings, sink: SinkSettings | None = None, *, database: str | None = None,
                 group_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.conf = sink or SinkSettings()
        self.database = database or settings.ch_database
        self.group_id = group_id or f"{settings.faust_app_id}.clickhouse-sink"
        self.topics = TopicMap(settings)
        self._pending = Pending()
        self._consumer: Any = None
        self._producer: Any = None
        self._client: Any = None
        # One thread: clickhouse-driver's Client is not thread-safe, and inserts are sequential anyway.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ch-sink")
        # Counters for `gridhub bench sink` and the logs.
        self.inserted: dict[str, int] = {t: 0 for t in TABLES}
        self.insert_seconds: dict[str, float] = {t: 0.0 for t in TABLES}
        self.first_record_at: float | None = None
        self.last_commit_at: float | None = None
        self.retries = 0
        # The run loop and the final flush of on_stop must not flush the same buffer at once.
        self._flush_lock = asyncio.Lock()

    # --- ClickHouse side (runs in the executor thread) -----------------------------------------

    def _connect(self) -> Any:
        if self._client is None:
            from clickhouse_driver import Client

            s = self.settings
            # 5 s connect / 60 s per call: a healthy server answers a batch INSERT in well under a second.
            self._client = Client(s.clickhouse_host, port=s.clickhouse_port, user=s.clickhouse_user,
                                  password=s.secret("clickhouse_password"), connect_timeout=5, send_receive_timeout=60)
        return self._client

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(client)``; any failure comes out classified, and a broken connection is dropped."""
        try:
            return fn(self._connect())
        except BaseException as exc:
            outcome = classify(exc)
            if isinstance(outcome, RetriableError) and self._client is not None:
                try:
                    self._client.disconnect()
                finally:
                    self._client = None
            raise outcome from exc

    def _migrate_blocking(self) -> None:
        from gridhub.clickhouse.backend import DriverBackend
        from gridhub.clickhouse.migrate import migrate

        self._call(lambda client: migrate(DriverBackend(client), self.database))

    def _insert_blocking(self, table: str, rows: list[Row]) -> None:
        columns = ", ".join(rows[0])
        sql = f"INSERT INTO {self.database}.{table} ({columns}) VALUES"
        self._call(lambda client: client.execute(sql, rows))

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _insert_table(self, table: str, rows: list[Row], sources: list[RawRecord]) -> list[tuple[RawRecord, str]]:
        """Insert ``rows``; on a data error bisect, return the refused rows' records with the reason."""
        started = time.perf_counter()
        try:
            await self._in_thread(self._insert_blocking, table, rows)
        except DataError as error:
            if len(rows) == 1:
                return [(sources[0], str(error))]
            mid = len(rows) // 2
            return (await self._insert_table(table, rows[:mid], sources[:mid])
                    + await self._insert_table(table, rows[mid:], sources[mid:]))
        elapsed = time.perf_counter() - started
        SINK_BATCH_SECONDS.labels(table=table).observe(elapsed)
        self.insert_seconds[table] += elapsed
        SINK_ROWS.labels(table=table).inc(len(rows))
        self.inserted[table] += len(rows)
        return []

    # --- the Sink interface ----------------------------------------------------------------------

    def prepare(self, batch: Sequence[RawRecord], pending: Pending | None = None) -> Pending:
        """Step 1: rows (or dead letters) for ``batch``, added to ``pending``."""
        pending = pending or Pending()
        for record in batch:
            pending.mark(record)
            table = self.topics.table_for(record.topic)
            if table is None:
                continue
            if table == DEAD_LETTERS:
                # The dlq itself is never dead-lettered again (that could loop); every column is text.
                pending.add_row(table, dead_letter_row(record.partition or 0, record.offset or 0, record.key,
                                                       record.value, list(record.headers), record.timestamp_ms),
                                record)
                continue
            try:
                pending.add_row(table, to_row(table, record.value), record)
            except RowError as error:
                pending.dead.append((record, str(error)))
        return pending

    async def write(self, batch: Sequence[RawRecord]) -> None:
        """Steps 1-3 once for ``batch``: raise RetriableError if ClickHouse or Kafka is unavailable."""
        await self._deliver(self.prepare(batch))

    async def _deliver(self, pending: Pending) -> None:
        """Steps 2 and 3; idempotent, so the caller may repeat it after a RetriableError."""
        for table, rows in list(pending.rows.items()):
            if not rows:
                continue
            refused = await self._insert_table(table, rows, pending.sources[table])
            if table == DEAD_LETTERS:
                for record, reason in refused:
                    log.error("ch_sink.dead_letter_row_refused", dlq_offset=record.offset, reason=reason)
            else:
                pending.dead.extend(refused)
            # Inserted: a retry of this flush must not insert them again (harmless, but wasted).
            pending.rows[table] = []
        if pending.dead:
            await self._send_dead_letters(pending.dead)
            pending.dead = []

    async def _send_dead_letters(self, dead: list[tuple[RawRecord, str]]) -> None:
        if self._producer is None:
            raise RetriableError("no Kafka producer for dead letters")
        dlq = self.settings.topic("dlq")
        try:
            futures = [await self._producer.send(
                dlq, record.value, key=record.key,
                headers=dead_letter_headers(STAGE, reason, record.topic, record.partition, record.offset))
                for record, reason in dead]
            await asyncio.gather(*futures)
        except Exception as exc:
            raise RetriableError(f"Kafka did not acknowledge the dead letters: {exc!r}") from exc
        DEAD_LETTER_COUNT.labels(stage=STAGE).inc(len(dead))
        for record, reason in dead:
            log.warning("ch_sink.dead_letter", topic=record.topic, partition=record.partition,
                        offset=record.offset, reason=reason)

    # --- lifecycle -----------------------------------------------------------------------------

    async def on_start(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        s = self.settings
        self._producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", enable_idempotence=True,
                                          client_id="gridhub-clickhouse-sink", **s.kafka_client_options())
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap, group_id=self.group_id, client_id="gridhub-clickhouse-sink",
            enable_auto_commit=False, auto_offset_reset="earliest",
            # Every buffered record must fit one flush: fetch no more than a batch per poll.
            max_poll_records=self.conf.batch_rows, **s.kafka_client_options())
        await self._ensure_fact_topics()
        self._consumer.subscribe(topics=self.topics.topics)
        await self._consumer.start()
        log.info("ch_sink.started", database=self.database, group=self.group_id, topics=self.topics.topics)

    async def _ensure_fact_topics(self) -> None:
        """Create missing fact topics first: a consumer subscribed to a missing topic gets no
        partitions of it until its next metadata refresh (aiokafka's default: 5 minutes)."""
        from gridhub.ops.topics import ensure_topics_off_loop

        # On failure the sink starts regardless: the producers create these topics too.
        await ensure_topics_off_loop(self.settings, list(self.topics.CONTRACT_TOPICS),
                                     failure_event="ch_sink.topics_not_ensured", executor=self._executor)

    async def on_stop(self) -> None:
        if self._consumer is not None and self._pending.records:
            try:  # one last attempt, no retries: whatever is not committed is read again next time
                async with asyncio.timeout(10):
                    async with self._flush_lock:
                        await self._flush_once()
            except Exception as exc:
                log.warning("ch_sink.final_flush_failed", error=str(exc))
        for client in (self._consumer, self._producer):
            if client is not None:
                try:
                    await client.stop()
                except Exception as exc:
                    log.warning("ch_sink.client_stop_failed", error=str(exc))
        self._consumer = self._producer = None
        if self._client is not None:
            await self._in_thread(self._client.disconnect)
            self._client = None
        self._executor.shutdown(wait=False)

    async def _backoff(self, attempt: int, what: str, error: Exception) -> None:
        delay = min(self.conf.backoff_max, self.conf.backoff_initial * 2 ** min(attempt, 16))
        self.retries += 1
        log.warning("ch_sink.retry", what=what, attempt=attempt + 1, delay_s=delay, error=str(error))
        await self.sleep(delay)

    @Service.task
    async def _run(self) -> None:
        if self.conf.migrate:
            attempt = 0
            while not self.should_stop:
                try:
                    await self._in_thread(self._migrate_blocking)
                    break
                except RetriableError as error:
                    await self._backoff(attempt, "migrate", error)
                    attempt += 1
        while not self.should_stop:
            try:
                batches = await self._consumer.getmany(timeout_ms=max(1, int(self.conf.flush_seconds * 250)))
            except Exception:
                if self.should_stop:  # the consumer was stopped under us
                    return
                raise
            if batches and self.first_record_at is None:
                self.first_record_at = time.perf_counter()
            for messages in batches.values():
                self.prepare([RawRecord(topic=m.topic, key=m.key, value=m.value, headers=list(m.headers or []),
                                        partition=m.partition, offset=m.offset, timestamp_ms=m.timestamp)
                              for m in messages], self._pending)
            if self._due():
                async with self._flush_lock:
                    await self._flush()

    def _due(self) -> bool:
        p = self._pending
        if not p.records:
            return False
        assert p.first_at is not None
        return p.largest() >= self.conf.batch_rows or time.monotonic() - p.first_at >= self.conf.flush_seconds

    async def _flush(self) -> None:
        """Steps 2-4 with retries; fetching is paused meanwhile (only heartbeats go on)."""
        assigned = list(self._consumer.assignment())
        self._consumer.pause(*assigned)
        try:
            attempt = 0
            while True:
                try:
                    await self._deliver(self._pending)
                    break
                except RetriableError as error:
                    if self.should_stop:
                        return
                    await self._backoff(attempt, "flush", error)
                    attempt += 1
            await self._commit()
        finally:
            if self._consumer is not None:
                self._consumer.resume(*[tp for tp in assigned if tp in self._consumer.assignment()])

    async def _flush_once(self) -> None:
        await self._deliver(self._pending)
        await self._commit()

    async def _commit(self) -> None:
        """Step 4, then a fresh buffer."""
        from aiokafka import TopicPartition
        from aiokafka.structs import OffsetAndMetadata

        pending, self._pending = self._pending, Pending()
        owned = self._consumer.assignment()
        offsets = {TopicPartition(t, p): OffsetAndMetadata(o + 1, "") for (t, p), o in pending.offsets.items()
                   if TopicPartition(t, p) in owned}
        if offsets:
            try:
                await self._consumer.commit(offsets)
            except Exception as exc:
                log.warning("ch_sink.commit_failed", error=str(exc), partitions=len(offsets))
                return
        self.last_commit_at = time.perf_counter()
        log.info("ch_sink.flushed", records=pending.records, partitions=len(offsets),
                 inserted=sum(self.inserted.values()))


def create(app: Any, settings: Settings) -> ClickHouseSink | None:
    """Factory for ``gridhub run`` (``--only clickhouse``)."""
    conf = SinkSettings()
    return ClickHouseSink(settings, conf) if conf.enabled else None
