"""Load device-registry records (CONTRACTS 1.3) to the compacted topic ``registry.devices``.

The topic is compacted and keyed by ``deviceId``: the latest record of every
device is kept forever, so the hub (device liveness, sensor positions) can
rebuild the whole registry by reading the topic from the beginning.  Loading
the same file again rewrites the same records: compaction keeps one.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from connectors.base import RawRecord
from connectors.hotline_files.reader import detect_encoding
from connectors.kafka_io import produce_batch, sync_producer
from gridhub.core.kafka_admin import ensure_topics
from gridhub.core.dlq import dead_letter_headers
from gridhub.core.logging import get_logger
from gridhub.core.settings import Settings
from gridhub.core.topics import DLQ, REGISTRY_DEVICES

log = get_logger(__name__)

COLUMNS = ("deviceId", "deviceType", "streetCode", "villageCode", "address", "lng", "lat", "owner", "ownerPhone",
           "heartbeatSeconds")
DEVICE_TYPES = ("smoke", "electric", "gas", "water_level", "manhole")
BATCH = 2000  # records per acknowledged batch (~300 bytes each)


@dataclass
class RegistrySummary:
    rows_read: int = 0
    produced: int = 0
    rejected: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    created_topic: bool = False


def device_record(row: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """A CSV row -> the registry JSON value (numbers as numbers, empty cells as null), or the reason."""
    out: dict[str, Any] = {}
    for col in COLUMNS:
        v = row.get(col)
        text = str(v).strip() if v is not None else ""
        out[col] = text or None
    if not out["deviceId"]:
        return None, "missing deviceId"
    if out["deviceType"] not in DEVICE_TYPES:
        return None, f"deviceType '{out['deviceType']}' is not one of {', '.join(DEVICE_TYPES)}"
    try:
        for col in ("lng", "lat"):
            out[col] = float(out[col]) if out[col] is not None else None
        hb = out["heartbeatSeconds"]
        out["heartbeatSeconds"] = int(float(hb)) if hb is not None else None
    except ValueError:
        return None, "lng, lat and heartbeatSeconds must be numbers"
    return out, None


def read_registry_csv(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open("r", encoding=detect_encoding(path), newline="") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            yield n, row


def load_registry(settings: Settings, rows: Iterable[tuple[int, Mapping[str, Any]]], *,
                  source_name: str = "-") -> RegistrySummary:
    """Produce ``rows`` ((row number, columns) pairs) to ``registry.devices``; bad rows go to ``dlq``."""
    topic = settings.topic(REGISTRY_DEVICES)
    summary = RegistrySummary()
    # deploy/topics.yaml makes it compacted: an auto-created topic would be ``delete`` and lose devices.
    summary.created_topic = topic in ensure_topics(settings, [topic]).created
    producer = sync_producer(settings)
    batch: list[RawRecord] = []
    ok = 0
    try:
        for number, row in rows:
            summary.rows_read += 1
            record, reason = device_record(row)
            if record is None:
                summary.rejected += 1
                summary.errors.append((number, reason or "rejected"))
                original = json.dumps(dict(row), ensure_ascii=False, default=str).encode("utf-8")
                batch.append(RawRecord(settings.topic(DLQ), None, original, dead_letter_headers(
                    "registry", reason or "rejected", topic, extra={"row": str(number), "file": source_name})))
            else:
                value = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                batch.append(RawRecord(topic, str(record["deviceId"]).encode("utf-8"), value))
                ok += 1
            if len(batch) >= BATCH:
                produce_batch(producer, batch)
                summary.produced, ok = summary.produced + ok, 0
                batch.clear()
        produce_batch(producer, batch)
        summary.produced += ok
    finally:
        producer.close(timeout=10)
    log.info("registry_loaded", topic=topic, rows=summary.rows_read, produced=summary.produced,
             rejected=summary.rejected)
    return summary
