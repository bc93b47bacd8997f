"""ClickHouse sink: the hub's fact topics into ``<db>.reports / cases / case_events / dispatches / dead_letters``.

Run by the :class:`connectors.base.SinkRunner` (consume -> write -> dead-letter -> commit, the
numbered steps and their failure modes are in its docstring) in its own consumer group
(``<app id>.clickhouse-sink``), reading ``reports.linked``, ``cases``, ``case-events``,
``dispatches`` (routing's copy of every agency's dispatch) and ``dlq`` by name.  Batches are
thousands of rows, about one INSERT per second per table: what MergeTree wants.

What this module adds to the runner's steps, in :meth:`ClickHouseSink.write`:

1. **Rows.**  Each record is turned into a row of its table; a record that cannot be (not Avro,
   wrong schema, value out of range) is refused with its reason.  Nothing can fail here.
2. **Insert** each table's rows, one INSERT per table, in a worker thread (clickhouse-driver
   blocks).  Failures are classified once (``connectors/clickhouse/errors.py``): *retriable*
   (network, timeout, TOO_MANY_PARTS, memory limit, server shutting down, tables not migrated
   yet) raise :class:`RetriableError`, and the runner repeats the batch; *data* (the server refuses
   rows): the table's rows are bisected until the refused rows are isolated; they are refused,
   the rest is inserted.
3. **Idempotence** makes every repeat harmless: each table is a ReplacingMergeTree keyed by the
   fact's id (report_id + version, case_id + version, event_id, dispatch_id, dlq partition/offset),
   and every view reads through FINAL, so a row inserted twice is counted once.

Rows of the ``dlq`` itself are never refused back into ``dlq`` (that could loop): a refused
dead-letter row is logged.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.base import DataError, RawRecord, Refused, RetriableError, Sink, SinkRunner
from connectors.clickhouse.errors import classify
from connectors.clickhouse.rows import DEAD_LETTERS, TABLES, Row, RowError, TopicMap, dead_letter_row, to_row
from gridhub.core.logging import get_logger
from gridhub.core.metrics import SINK_BATCH_SECONDS, SINK_ROWS
from gridhub.core.settings import Settings

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


class ClickHouseSink(Sink):
    """Batches of fact records -> ClickHouse rows (see the module docstring)."""

    def __init__(self, settings: Settings, sink: SinkSettings | None = None, *, database: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.conf = sink or SinkSettings()
        self.database = database or settings.ch_database
        self.topics = TopicMap(settings)
        self._client: Any = None
        # One thread: clickhouse-driver's Client is not thread-safe, and inserts are sequential anyway.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ch-sink")
        # Counters for `gridhub bench sink` and the logs.
        self.inserted: dict[str, int] = {t: 0 for t in TABLES}
        self.insert_seconds: dict[str, float] = {t: 0.0 for t in TABLES}

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
        from connectors.clickhouse.backend import DriverBackend
        from connectors.clickhouse.migrate import migrate

        if self.settings.clickhouse_cluster:
            # Every replica over its own connection, never through the (load-balanced) host we insert into.
            from connectors.clickhouse.migrate import migrate_cluster

            self._call(lambda client: migrate_cluster(self.settings, self.database, self.settings.clickhouse_cluster,
                                                      connect_timeout=5, send_receive_timeout=60))
            return
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

    def rows(self, batch: Sequence[RawRecord]) -> tuple[dict[str, list[Row]], dict[str, list[RawRecord]], list[Refused]]:
        """Step 1: rows per table (with their records), and the records that cannot be rows."""
        rows: dict[str, list[Row]] = {}
        sources: dict[str, list[RawRecord]] = {}
        refused: list[Refused] = []
        for record in batch:
            table = self.topics.table_for(record.topic)
            if table is None:
                continue
            try:
                if table == DEAD_LETTERS:  # every column is text: cannot fail
                    row = dead_letter_row(record.partition or 0, record.offset or 0, record.key, record.value,
                                          list(record.headers), record.timestamp_ms)
                else:
                    row = to_row(table, record.value)
            except RowError as error:
                refused.append((record, str(error)))
                continue
            rows.setdefault(table, []).append(row)
            sources.setdefault(table, []).append(record)
        return rows, sources, refused

    async def open(self) -> None:
        """Apply schemas/migrations (idempotent), so a fresh database just works."""
        if self.conf.migrate:
            await self._in_thread(self._migrate_blocking)

    async def write(self, batch: Sequence[RawRecord]) -> list[Refused]:
        """Steps 1 and 2; raises RetriableError while ClickHouse is unavailable."""
        rows, sources, refused = self.rows(batch)
        for table, table_rows in rows.items():
            for record, reason in await self._insert_table(table, table_rows, sources[table]):
                if table == DEAD_LETTERS:
                    log.error("ch_sink.dead_letter_row_refused", dlq_offset=record.offset, reason=reason)
                else:
                    refused.append((record, reason))
        return refused

    async def on_stop(self) -> None:
        if self._client is not None:
            await self._in_thread(self._client.disconnect)
            self._client = None
        self._executor.shutdown(wait=False)


def runner(settings: Settings, conf: SinkSettings | None = None, *, database: str | None = None,
           group_id: str | None = None) -> SinkRunner:
    """The ClickHouse sink under its :class:`SinkRunner`, in the group ``<app id>.clickhouse-sink``."""
    conf = conf or SinkSettings()
    return SinkRunner(settings, ClickHouseSink(settings, conf, database=database),
                      topics=TopicMap.CONTRACT_TOPICS, group_id=group_id or f"{settings.faust_app_id}.clickhouse-sink",
                      stage=STAGE, client_id="gridhub-clickhouse-sink", batch_records=conf.batch_rows,
                      flush_seconds=conf.flush_seconds, backoff_initial=conf.backoff_initial,
                      backoff_max=conf.backoff_max)


def create(app: Any, settings: Settings) -> SinkRunner | None:
    """Factory for ``gridhub run`` (``--only clickhouse``)."""
    conf = SinkSettings()
    return runner(settings, conf) if conf.enabled else None
