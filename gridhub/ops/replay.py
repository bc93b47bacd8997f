"""``gridhub replay``: re-drive raw feeds through the pipeline.

Two targets:

* the live pipeline (default): the original bytes, key and headers go back on
  the live raw topic, tagged ``gridhub.replay=<run id>``.  Every stage
  derives deterministic ids (report_id = uuid5(source|source_ref), event and
  dispatch ids) and the ClickHouse tables replace on them, so a replay
  re-computes but never double-counts.  Use it after a fix of fusion or
  routing rules, or to refill a ClickHouse table.
* another namespace (``--namespace NS``): the records go to ``NS.raw.*`` and
  a worker started with ``GRIDHUB_NAMESPACE=NS`` processes them with its own
  consumer group, Faust tables and ClickHouse database, beside production:
  the way to try a rule change on real traffic and compare the results.

Records come from the raw topics' retention window (``--from/--to``, offsets
located with ``offsets_for_times``) or from an archive directory
(``--archive DIR``, see :mod:`gridhub.ops.archive`).  They keep their
partition (when the target has it) and their timestamp, so event-time logic
sees the same times as the first time.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import click
from tqdm import tqdm

from gridhub.core import topics as T
from gridhub.core.logging import get_logger
from gridhub.ops.archive import count_topic, iter_topic, load_manifest
from gridhub.ops.common import (Headers, admin_client, fmt_ms, headers_list, make_consumer, make_producer,
                                new_run_id, parse_time, partition_count, plan_spans, read_spans, render_table,
                                settings_for)
from gridhub.core.kafka_admin import ensure_topics
from gridhub.core.settings import Settings, get_settings

log = get_logger(__name__)

REPLAY_HEADER = "gridhub.replay"
HISTORICAL_HEADER = "gridhub.historical"  # streams/ingest/agents.py reads it (issue 15, --historical)


@dataclass(frozen=True)
class Item:
    """One record to re-drive, whatever it was read from."""

    source: str          # four-platforms | hotline-12345 | sensors
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass
class ReplayResult:
    run_id: str
    target_namespace: str
    dry_run: bool
    counts: Counter[tuple[str, int]] = field(default_factory=Counter)  # (target topic, partition) -> records
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _from_kafka(settings: Settings, sources: Iterable[str], since_ms: int | None,
                until_ms: int | None) -> tuple[int, Iterator[Item]]:
    """(upper bound of records, iterator) over the live raw topics of ``settings``."""
    consumer = make_consumer(settings)
    plans: list[tuple[str, Any]] = []
    for source in sources:
        topic = settings.topic(T.RAW[source])
        partitions = consumer.partitions_for_topic(topic) or set()
        plans.append((source, plan_spans(consumer, topic, partitions, since_ms, until_ms)))
    total = sum(s.count for _, spans in plans for s in spans)

    def items() -> Iterator[Item]:
        try:
            for source, spans in plans:
                for rec in read_spans(consumer, spans, since_ms, until_ms):
                    yield Item(source, rec.partition, rec.offset, rec.timestamp, rec.key, rec.value,
                               headers_list(rec.headers))
        finally:
            consumer.close()

    return total, items()


def _from_archive(src: Path, sources: Iterable[str], since_ms: int | None,
                  until_ms: int | None) -> tuple[int, Iterator[Item]]:
    manifest = load_manifest(src)
    by_contract = {meta["contract"]: physical for physical, meta in manifest["topics"].items()}
    chosen = [(s, by_contract[T.RAW[s]]) for s in sources if T.RAW[s] in by_contract]
    if not chosen:
        raise click.UsageError(f"{src} holds none of the raw topics of {', '.join(sources)}")
    total = sum(count_topic(manifest, physical) for _, physical in chosen)

    def items() -> Iterator[Item]:
        for source, physical in chosen:
            for rec in iter_topic(src, manifest, physical, since_ms, until_ms):
                yield Item(source, rec["partition"], rec["offset"], rec["timestamp"], rec["key"], rec["value"],
                           [(h["key"], h["value"] if h["value"] is not None else b"") for h in rec["headers"]])

    return total, items()


def replay_records(settings: Settings, sources: Iterable[str] = T.SOURCES, *, since_ms: int | None = None,
           until_ms: int | None = None, archive: Path | None = None, namespace: str | None = None,
           dry_run: bool = False, restamp: bool = False, progress: bool = True,
           historical: bool = False) -> ReplayResult:
    """Re-drive ``sources`` of ``settings``' namespace (or of an archive) into ``namespace``.

    ``namespace=None``: back into the live raw topics of ``settings``.
    """
    sources = list(sources)
    unknown = [s for s in sources if s not in T.RAW]
    if unknown:
        raise click.BadParameter(f"unknown source(s) {unknown}; one of {', '.join(T.SOURCES)}")
    target = settings_for(namespace, settings)
    result = ReplayResult(new_run_id(), target.namespace, dry_run)
    started = time.monotonic()
    total, items = (_from_archive(archive, sources, since_ms, until_ms) if archive is not None
                    else _from_kafka(settings, sources, since_ms, until_ms))
    partitions: dict[str, int] = {}
    producer = None
    failures: list[BaseException] = []
    if not dry_run:
        if namespace is not None:
            ensure_topics(target)  # the whole namespace: its worker needs every topic
        else:
            ensure_topics(target, [T.RAW[s] for s in sources])
        admin = admin_client(target)
        try:
            partitions = {s: partition_count(admin, target.topic(T.RAW[s])) or 0 for s in sources}
        finally:
            admin.close()
        producer = make_producer(target)
    bar = tqdm(total=total, desc="replay (dry run)" if dry_run else f"replay -> {target.namespace or 'live'}",
               unit="rec", unit_scale=True, dynamic_ncols=True, disable=None if progress else True)
    try:
        for item in items:
            topic = target.topic(T.RAW[item.source])
            if producer is None:
                result.counts[(topic, item.partition)] += 1
            else:
                # the original partition when the target has it: same order as the first time
                part = item.partition if item.partition < partitions[item.source] else None
                headers = [(k, v) for k, v in item.headers if k not in (REPLAY_HEADER, HISTORICAL_HEADER)]
                headers.append((REPLAY_HEADER, result.run_id.encode()))
                if historical:  # issue 15: recorded for analysts, never dispatched, never escalated
                    headers.append((HISTORICAL_HEADER, b"1"))
                producer.send(topic, key=item.key, value=item.value, headers=headers, partition=part,
                              timestamp_ms=None if restamp else item.timestamp).add_errback(failures.append)
                result.counts[(topic, item.partition if part is not None else -1)] += 1
            bar.update(1)
        if producer is not None:
            producer.flush()
            if failures:  # kafka-python reports a failed send only to its future, never to flush()
                raise click.ClickException(
                    f"replay incomplete: {len(failures)} of {result.total} records were not written "
                    f"(first error: {failures[0]!r}); run the same replay again")
    finally:
        bar.close()
        if producer is not None:
            producer.close()
    result.seconds = time.monotonic() - started
    log.info("replay_done", run_id=result.run_id, target_namespace=target.namespace or "(live)", dry_run=dry_run,
             records=result.total, seconds=round(result.seconds, 2),
             rate=round(result.total / result.seconds) if result.seconds else 0)
    return result


def next_steps(namespace: str) -> list[str]:
    """What an operator runs after a replay into ``namespace`` (printed by the command)."""
    base = get_settings()
    ns = settings_for(namespace, base)
    return [
        f"GRIDHUB_NAMESPACE={namespace} gridhub ch migrate      # create ClickHouse database {ns.ch_database}",
        f"GRIDHUB_SHADOW=1 GRIDHUB_NAMESPACE={namespace} gridhub run   # process it: consumer group "
        f"{ns.faust_app_id}, own tables; no webhooks, no live MQTT, no status replies",
        f"gridhub report --database {ns.ch_database}        # compare with: gridhub report",
        f"gridhub replay diff --namespace {namespace}          # per case: lead, assist, category, deadlines, "
        "escalations, fusion",
        f"gridhub topics ls --namespace {namespace}             # what the replay produced, per topic",
    ]
