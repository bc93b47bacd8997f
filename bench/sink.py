"""``gridhub bench sink``: the ClickHouse sink's insert rate against a bare INSERT loop.

Both sides insert the same rows (synthetic facts, as fusion / routing / the
lifecycle would produce them) into their own database of the configured
ClickHouse:

* **sink**: the facts are produced to Kafka in a throw-away namespace and the
  real :class:`ClickHouseSink` loads them (fetch, Avro decode, row mapping,
  batched INSERT per table, dead letters, offset commit).  Timed from its
  first fetched record to its last commit.
* **bare**: the same rows, already mapped, inserted with clickhouse-driver in
  batches of the same size, one table after the other.  No Kafka, no decode.

The ratio sink / bare says what the hub's guarantees cost over raw
ClickHouse throughput.  Figures go to stdout; nothing is asserted.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import click

from gridhub.core.kafka_admin import delete_namespace
from gridhub.core.settings import Settings, get_settings


async def _run_sink(settings: Settings, batch_rows: int, total: int, timeout: float) -> Any:
    from connectors.clickhouse.service import ClickHouseSink, SinkSettings, runner

    loader = runner(settings, SinkSettings(batch_rows=batch_rows, flush_seconds=1.0, migrate=True))
    sink = loader.sink
    assert isinstance(sink, ClickHouseSink)
    await loader.start()
    deadline = time.monotonic() + timeout
    try:
        while sum(sink.inserted.values()) < total:
            if time.monotonic() > deadline:
                raise click.ClickException(f"the sink inserted {sum(sink.inserted.values())} of {total} rows "
                                           f"in {timeout:.0f} s")
            await asyncio.sleep(0.05)
        while loader.last_commit_at is None or loader.buffered:  # the commit of the last flush
            await asyncio.sleep(0.05)
    finally:
        await loader.stop()
    return loader


def run_sink_bench(cases: int, batch_rows: int, seed: int, as_json: bool, timeout: float = 600.0) -> dict[str, Any]:
    from clickhouse_driver import Client

    from connectors.kafka_io import sync_producer
    from connectors.clickhouse.backend import DriverBackend
    from connectors.clickhouse.migrate import migrate
    from gridhub.clickhouse.synthetic import encoded, generate, produce, rows

    base = get_settings()
    settings = base.model_copy(update={"namespace": f"bench{uuid.uuid4().hex[:8]}"})
    bare_db = settings.ch_database + "_bare"
    # Few townships and agencies: a handful of dispatch topics, not hundreds of partitions.
    facts = generate(cases, int(time.time() * 1000), seed=seed, townships=6, agencies=4)
    records = encoded(facts, settings)
    table_rows = rows(facts, settings)
    total = sum(len(r) for r in table_rows.values())
    try:
        producer = sync_producer(settings)
        produce(producer, records)
        producer.close()
        backend = DriverBackend.from_settings(settings)
        migrate(backend, settings.ch_database)
        migrate(backend, bare_db)
        backend.close()

        loader = asyncio.run(_run_sink(settings, batch_rows, total, timeout))
        sink = loader.sink
        assert loader.first_record_at is not None and loader.last_commit_at is not None
        sink_seconds = loader.last_commit_at - loader.first_record_at

        client = Client(settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                        password=settings.secret("clickhouse_password"))
        bare: dict[str, float] = {}
        for _ in range(2):  # two passes, the best kept: the first pays for connection and cache warm-up
            for table, data in table_rows.items():
                columns = ", ".join(data[0])
                started = time.perf_counter()
                for i in range(0, len(data), batch_rows):
                    client.execute(f"INSERT INTO {bare_db}.{table} ({columns}) VALUES", data[i:i + batch_rows])
                bare[table] = min(bare.get(table, float("inf")), time.perf_counter() - started)
        client.disconnect()
    finally:
        delete_namespace(settings, databases=[settings.ch_database, bare_db])

    bare_seconds = sum(bare.values())
    result: dict[str, Any] = {
        "rows": total, "records": len(records), "batch_rows": batch_rows,
        "sink_seconds": round(sink_seconds, 3), "sink_rows_per_s": round(total / sink_seconds),
        "bare_seconds": round(bare_seconds, 3), "bare_rows_per_s": round(total / bare_seconds),
        "ratio": round((total / sink_seconds) / (total / bare_seconds), 3),
        "tables": {
            table: {"rows": len(data),
                    "sink_insert_rows_per_s": round(len(data) / sink.insert_seconds[table])
                    if sink.insert_seconds[table] else None,
                    "bare_rows_per_s": round(len(data) / bare[table]) if bare[table] else None,
                    "ratio": round(bare[table] / sink.insert_seconds[table], 3)
                    if sink.insert_seconds[table] and bare[table] else None}
            for table, data in table_rows.items()},
    }
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return result
    click.echo(f"ClickHouse sink: {total} rows from {len(records)} Kafka records, batches of {batch_rows}")
    click.echo(f"{'table':<12} {'rows':>8} {'sink INSERT rows/s':>19} {'bare rows/s':>12} {'ratio':>6}")
    for table, figures in result["tables"].items():
        click.echo(f"{table:<12} {figures['rows']:>8} {figures['sink_insert_rows_per_s'] or '-':>19} "
                   f"{figures['bare_rows_per_s'] or '-':>12} {figures['ratio'] or '-':>6}")
    click.echo(f"end to end through the sink (fetch, decode, insert, commit): {result['sink_rows_per_s']} rows/s "
               f"in {sink_seconds:.2f} s")
    click.echo(f"bare batched INSERT loop (clickhouse-driver):              {result['bare_rows_per_s']} rows/s "
               f"in {bare_seconds:.2f} s")
    click.echo(f"ratio sink / bare: {result['ratio']}")
    return result
