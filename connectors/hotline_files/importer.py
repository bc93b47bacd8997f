"""Produce a 12345 export file to ``raw.hotline-12345``, in bounded batches.

Order of work per batch (at most ``batch_size`` rows in memory):

1. read and map rows; a row that cannot become a document goes to ``dlq``
   (stage ``file-import``, the row as JSON, ``error.row`` = its row number);
2. send the batch with ``acks=all`` and wait until Kafka acknowledged all of it;
3. only then count it as produced.

If step 2 fails the import stops with an error and the summary says how many
rows were acknowledged; running the import again is safe, because every row
gives the same key (``orderNo``) and the same bytes (fields in contract order),
and the hub treats an identical document as a redelivery: no new report, no new
case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from connectors.base import RawRecord
from connectors.hotline_files.reader import map_row, read_rows, xlsx_row_count
from connectors.kafka_io import produce_batch, sync_producer
from gridhub.core.kafka_admin import ensure_topics
from gridhub.core.dlq import dead_letter_headers
from gridhub.core.logging import get_logger
from gridhub.core.settings import Settings
from gridhub.core.topics import DLQ, RAW

log = get_logger(__name__)

#: Rows per acknowledged batch: ~1000 documents of ~1 KB is ~1 MB in flight, small for
#: Kafka and for memory, large enough that waiting for acks costs little per row.
DEFAULT_BATCH = 1000
#: Bad rows kept in the summary in full (the rest are only counted; all are in the dlq).
MAX_LISTED_ERRORS = 100


@dataclass
class ImportSummary:
    file: str
    rows_read: int = 0
    produced: int = 0
    rejected: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)   # (row number, reason)


#: Issue 15: the raw header of a backfill (``--historical``); ingest marks the reports, routing never dispatches
#: their cases (streams/ingest/agents.py HISTORICAL_HEADER).
HISTORICAL = (("gridhub.historical", b"1"),)


def import_file(settings: Settings, path: Path, *, batch_size: int = DEFAULT_BATCH, sheet: str | None = None,
                progress: bool = True, on_batch: Callable[[ImportSummary], None] | None = None,
                historical: bool = False) -> ImportSummary:
    from tqdm import tqdm

    raw_topic = settings.topic(RAW["hotline-12345"])
    dlq_topic = settings.topic(DLQ)
    summary = ImportSummary(path.name)
    total = xlsx_row_count(path, sheet) if path.suffix.lower() in (".xlsx", ".xlsm") else None
    for topic in (raw_topic, dlq_topic):
        ensure_topics(settings, [topic])  # with the configured partitions, not whatever auto-creation picks
    producer = sync_producer(settings)
    batch: list[RawRecord] = []
    pending_ok = 0

    def flush() -> None:
        nonlocal pending_ok
        if batch:
            produce_batch(producer, batch)
            summary.produced += pending_ok
            batch.clear()
            pending_ok = 0
            if on_batch:
                on_batch(summary)

    try:
        with tqdm(total=total, unit=" rows", desc=path.name, disable=not progress, smoothing=0.1) as bar:
            for row in read_rows(path, sheet):
                summary.rows_read += 1
                mapped = map_row(row)
                if mapped.doc is None:
                    reason = mapped.error or "rejected"
                    summary.rejected += 1
                    if len(summary.errors) < MAX_LISTED_ERRORS:
                        summary.errors.append((row.number, reason))
                    batch.append(RawRecord(dlq_topic, None, mapped.original(), dead_letter_headers(
                        "file-import", reason, raw_topic, extra={"row": str(row.number), "file": path.name})))
                else:
                    assert mapped.key is not None
                    batch.append(RawRecord(raw_topic, mapped.key.encode("utf-8"), mapped.value(),
                                           list(HISTORICAL) if historical else []))
                    pending_ok += 1
                if len(batch) >= batch_size:
                    flush()
                bar.update(1)
            flush()
    finally:
        producer.close(timeout=10)
    log.info("file_import_done", file=path.name, rows=summary.rows_read, produced=summary.produced,
             rejected=summary.rejected)
    return summary
