"""``gridhub archive``: Kafka topics to Avro files and back, byte for byte.

Kafka retention deletes the raw feeds after 30 days (deploy/topics.yaml);
the archive keeps them for as long as the files are kept, so a later fix of
fusion or routing can still re-drive any day (``gridhub replay --archive``).

Layout of an archive directory::

    manifest.json                    what is there, with counts and sha256
    <topic>/<YYYY-MM-DD>.avro        one Avro object container file per topic per
                                     UTC day of the record timestamp

Each Avro record is one Kafka record: topic, partition, offset, timestamp,
timestamp type, key bytes, value bytes and headers.  Export reads one
partition after the other, so inside every file the records are sorted by
(partition, offset); import merges the day files of a topic on that order
and produces every record to the same partition number with its original
key, value, headers and timestamp, so per-partition order is preserved and,
into empty topics, even the offsets come out the same.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import click
import fastavro
from fastavro.write import Writer
from kafka import TopicPartition
from tqdm import tqdm

from gridhub.core.logging import get_logger
from gridhub.ops.common import (admin_client, contract_name, make_consumer, make_producer, parse_time,
                                partition_count, plan_spans, read_spans, settings_for)
from gridhub.core.kafka_admin import ensure_topics, wait_for_partitions
from gridhub.core.settings import Settings

log = get_logger(__name__)

FORMAT = "gridhub-archive/1"
MANIFEST = "manifest.json"
CODECS = ("deflate", "zstandard", "null")

SCHEMA: Any = fastavro.parse_schema({
    "type": "record", "name": "KafkaRecord", "namespace": "gridhub.archive",
    "doc": "One Kafka record exactly as it was on the broker.",
    "fields": [
        {"name": "topic", "type": "string", "doc": "physical topic name at export"},
        {"name": "partition", "type": "int"},
        {"name": "offset", "type": "long"},
        {"name": "timestamp", "type": "long", "doc": "epoch ms, as on the broker"},
        {"name": "timestamp_type", "type": "int", "doc": "0 CreateTime, 1 LogAppendTime"},
        {"name": "key", "type": ["null", "bytes"]},
        {"name": "value", "type": ["null", "bytes"]},
        {"name": "headers", "type": {"type": "array", "items": {
            "type": "record", "name": "Header",
            "fields": [{"name": "key", "type": "string"}, {"name": "value", "type": ["null", "bytes"]}]}}},
    ],
})


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d")


def _bar(total: int, desc: str, progress: bool) -> tqdm:
    # disable=None: tqdm turns itself off when stderr is not a terminal (logs, CI)
    return tqdm(total=total, desc=desc, unit="rec", unit_scale=True, dynamic_ncols=True, leave=True,
                disable=None if progress else True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):  # 1 MiB blocks
            digest.update(block)
    return digest.hexdigest()


@dataclass
class _FileStats:
    path: Path
    topic: str
    day: str
    writer: Any
    handle: Any
    records: int = 0
    min_offset: int | None = None
    max_offset: int | None = None
    min_timestamp: int | None = None
    max_timestamp: int | None = None

    def __post_init__(self) -> None:
        self.partitions: dict[int, dict[str, int]] = {}

    def add(self, record: dict[str, Any]) -> None:
        self.writer.write(record)
        self.records += 1
        off, ts, part = record["offset"], record["timestamp"], record["partition"]
        self.min_offset = off if self.min_offset is None else min(self.min_offset, off)
        self.max_offset = off if self.max_offset is None else max(self.max_offset, off)
        self.min_timestamp = ts if self.min_timestamp is None else min(self.min_timestamp, ts)
        self.max_timestamp = ts if self.max_timestamp is None else max(self.max_timestamp, ts)
        stats = self.partitions.setdefault(part, {"records": 0, "min_offset": off, "max_offset": off})
        stats["records"] += 1
        stats["max_offset"] = off


def _stats_of(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    count = 0
    offsets: list[int] = []
    stamps: list[int] = []
    for r in records:
        count += 1
        offsets.append(r["offset"])
        stamps.append(r["timestamp"])
    return {"records": count, "min_offset": min(offsets, default=None), "max_offset": max(offsets, default=None),
            "min_timestamp": min(stamps, default=None), "max_timestamp": max(stamps, default=None)}


# --- export --------------------------------------------------------------------------------

def export_archive(settings: Settings, topics: Iterable[str], out: Path, since_ms: int | None = None,
                   until_ms: int | None = None, codec: str = "deflate", progress: bool = True) -> dict[str, Any]:
    """Write ``topics`` (contract names, namespaced by ``settings``) to ``out``; returns the manifest."""
    if codec not in CODECS:
        raise click.BadParameter(f"codec must be one of {', '.join(CODECS)}")
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).exists():
        raise click.UsageError(f"{out / MANIFEST} exists: export into a new directory")
    started = time.monotonic()
    manifest: dict[str, Any] = {"format": FORMAT, "created_at": int(time.time() * 1000),
                                "namespace": settings.namespace, "from": since_ms, "to": until_ms, "codec": codec,
                                "topics": {}, "files": []}
    consumer = make_consumer(settings)
    total_records = 0
    try:
        for name in topics:
            physical = settings.topic(name)
            partitions = consumer.partitions_for_topic(physical)
            if not partitions:
                raise click.UsageError(f"topic {physical} does not exist")
            spans = plan_spans(consumer, physical, partitions, since_ms, until_ms)
            files: dict[str, _FileStats] = {}
            count = 0
            bar = _bar(sum(s.count for s in spans), physical, progress)
            try:
                for rec in read_spans(consumer, spans, since_ms, until_ms, one_at_a_time=True):
                    day = _day(rec.timestamp)
                    stats = files.get(day)
                    if stats is None:
                        path = out / physical / f"{day}.avro"
                        path.parent.mkdir(parents=True, exist_ok=True)
                        handle = path.open("wb")
                        stats = files[day] = _FileStats(path, physical, day, Writer(handle, SCHEMA, codec=codec),
                                                        handle)
                    stats.add({"topic": physical, "partition": rec.partition, "offset": rec.offset,
                               "timestamp": rec.timestamp, "timestamp_type": rec.timestamp_type,
                               "key": rec.key, "value": rec.value,
                               "headers": [{"key": k, "value": v} for k, v in (rec.headers or [])]})
                    count += 1
                    bar.update(1)
            finally:
                bar.close()
                for stats in files.values():
                    stats.writer.flush()
                    stats.handle.close()
            for day in sorted(files):
                stats = files[day]
                manifest["files"].append({
                    "path": str(stats.path.relative_to(out)), "topic": physical, "day": day,
                    "records": stats.records, "sha256": _sha256(stats.path), "bytes": stats.path.stat().st_size,
                    "min_offset": stats.min_offset, "max_offset": stats.max_offset,
                    "min_timestamp": stats.min_timestamp, "max_timestamp": stats.max_timestamp,
                    "partitions": {str(p): v for p, v in sorted(stats.partitions.items())}})
            manifest["topics"][physical] = {"contract": contract_name(settings, physical),
                                            "partitions": len(partitions), "records": count}
            total_records += count
    finally:
        consumer.close()
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    elapsed = time.monotonic() - started
    log.info("archive_exported", out=str(out), topics=len(manifest["topics"]), files=len(manifest["files"]),
             records=total_records, seconds=round(elapsed, 2), rate=round(total_records / elapsed) if elapsed else 0)
    return manifest


# --- reading ---------------------------------------------------------------------------------

def load_manifest(src: Path) -> dict[str, Any]:
    path = src / MANIFEST
    if not path.exists():
        raise click.UsageError(f"{path} not found: not an archive directory")
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise click.UsageError(f"{path}: unknown format {manifest.get('format')!r}")
    return manifest


def _read_file(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as fh:
        for record in fastavro.reader(fh):
            assert isinstance(record, dict)
            yield record


def iter_topic(src: Path, manifest: dict[str, Any], physical: str, since_ms: int | None = None,
               until_ms: int | None = None) -> Iterator[dict[str, Any]]:
    """One archived topic's records in (partition, offset) order, optionally in ``[since, until)``."""
    paths = [src / f["path"] for f in manifest["files"] if f["topic"] == physical
             and (since_ms is None or f["max_timestamp"] >= since_ms)
             and (until_ms is None or f["min_timestamp"] < until_ms)]
    merged = heapq.merge(*(_read_file(p) for p in paths), key=lambda r: (r["partition"], r["offset"]))
    for record in merged:
        if since_ms is not None and record["timestamp"] < since_ms:
            continue
        if until_ms is not None and record["timestamp"] >= until_ms:
            continue
        yield record


def count_topic(manifest: dict[str, Any], physical: str) -> int:
    return sum(f["records"] for f in manifest["files"] if f["topic"] == physical)


# --- import --------------------------------------------------------------------------------

def _resolve_target(settings: Settings, physical: str, contract: str, topic_map: dict[str, str]) -> str:
    for name in (physical, contract):
        if name in topic_map:
            new = topic_map[name]
            # a mapped contract name goes into the target namespace; a physical one stays as given
            return new if settings.namespace and new.startswith(settings.namespace + ".") else settings.topic(new)
    return settings.topic(contract)


def prepare_target(settings: Settings, target: str, partitions: int, append: bool) -> None:
    """The target topic exists with enough partitions and, unless ``append``, is empty."""
    admin = admin_client(settings)
    try:
        have = partition_count(admin, target)
        if have is None:
            ensure_topics(settings, [target], admin=admin)
            have = partition_count(admin, target) or 0
        if have < partitions:
            # The archive needs these partition numbers; adding partitions to an
            # empty or append target is what keeps records on their partition.
            admin.create_partitions({target: partitions})
            wait_for_partitions(admin, {target: partitions})
    finally:
        admin.close()
    if append:
        return
    consumer = make_consumer(settings)
    try:
        tps = [TopicPartition(target, p) for p in range(max(partitions, 1))]
        begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        filled = {tp.partition: end[tp] - begin[tp] for tp in tps if end[tp] > begin[tp]}
    finally:
        consumer.close()
    if filled:
        raise click.UsageError(f"target topic {target} is not empty (records per partition: {filled}); "
                               "import into empty topics, or pass --append")


def import_archive(settings: Settings, src: Path, topic_map: dict[str, str] | None = None,
                   topics: Iterable[str] | None = None, append: bool = False,
                   progress: bool = True) -> dict[str, int]:
    """Produce an archive back into Kafka; returns records written per target topic."""
    manifest = load_manifest(src)
    topic_map = topic_map or {}
    wanted = set(topics or [])
    started = time.monotonic()
    written: dict[str, int] = {}
    producer = make_producer(settings)
    try:
        for physical, meta in manifest["topics"].items():
            contract = meta["contract"]
            if wanted and physical not in wanted and contract not in wanted:
                continue
            target = _resolve_target(settings, physical, contract, topic_map)
            prepare_target(settings, target, int(meta["partitions"]), append)
            bar = _bar(count_topic(manifest, physical), f"{physical} -> {target}", progress)
            n = 0
            try:
                for rec in iter_topic(src, manifest, physical):
                    producer.send(target, key=rec["key"], value=rec["value"], partition=rec["partition"],
                                  timestamp_ms=rec["timestamp"],
                                  headers=[(h["key"], h["value"]) for h in rec["headers"]])
                    n += 1
                    bar.update(1)
                producer.flush()
            finally:
                bar.close()
            written[target] = n
    finally:
        producer.close()
    elapsed = time.monotonic() - started
    total = sum(written.values())
    log.info("archive_imported", src=str(src), topics=len(written), records=total, seconds=round(elapsed, 2),
             rate=round(total / elapsed) if elapsed else 0)
    return written


# --- verify ----------------------------------------------------------------------------------

def verify_archive(src: Path) -> list[str]:
    """Problems found (empty: the files are exactly what the manifest says)."""
    manifest = load_manifest(src)
    problems: list[str] = []
    listed = set()
    for entry in manifest["files"]:
        path = src / entry["path"]
        listed.add(path.resolve())
        if not path.exists():
            problems.append(f"{entry['path']}: missing")
            continue
        digest = _sha256(path)
        if digest != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 {digest} != manifest {entry['sha256']}")
        try:
            stats = _stats_of(_read_file(path))
        except Exception as exc:  # a corrupt container raises several fastavro error types
            problems.append(f"{entry['path']}: unreadable: {exc}")
            continue
        for key in ("records", "min_offset", "max_offset", "min_timestamp", "max_timestamp"):
            if stats[key] != entry[key]:
                problems.append(f"{entry['path']}: {key} {stats[key]} != manifest {entry[key]}")
    for topic, meta in manifest["topics"].items():
        total = count_topic(manifest, topic)
        if total != meta["records"]:
            problems.append(f"{topic}: files hold {total} records, manifest topic total says {meta['records']}")
    for path in src.rglob("*.avro"):
        if path.resolve() not in listed:
            problems.append(f"{path.relative_to(src)}: not in the manifest")
    return problems
