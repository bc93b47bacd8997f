"""Shared pieces of the operator commands: clients, time parsing, bounded reads.

The commands read a *snapshot* of a topic: the end offsets are taken once at
the start and the read stops there, so a command on a live topic terminates
and its counts are reproducible.
"""

from __future__ import annotations

import codecs
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator, Sequence

import click
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from gridhub.core import timeutil
from gridhub.core.kafka_admin import admin_client, make_consumer, make_producer
from gridhub.core.settings import Settings, get_settings

Headers = list[tuple[str, bytes]]

# Poll in batches of this many ms: long enough to fill a fetch, short enough
# that an empty partition does not stall the command.
_POLL_MS = 500
# A read that receives nothing for this long while still below the snapshot
# end offset is stuck (records deleted by retention, a transaction marker at
# the end): stop instead of hanging.
_IDLE_LIMIT_S = 10.0


def settings_for(namespace: str | None, base: Settings | None = None) -> Settings:
    """The settings of another namespace (same infrastructure, other names)."""
    base = base or get_settings()
    if namespace is None:
        return base
    return base.model_copy(update={"namespace": namespace})


def contract_name(settings: Settings, physical: str) -> str:
    """``ns.raw.sensors`` -> ``raw.sensors`` (inverse of ``Settings.topic``)."""
    prefix = f"{settings.namespace}." if settings.namespace else ""
    return physical[len(prefix):] if prefix and physical.startswith(prefix) else physical


def parse_time(text: str | None, now: datetime | None = None) -> int | None:
    """Epoch ms of an operator-given time (:func:`gridhub.core.timeutil.parse_time`; zone-less is
    Beijing time), None for none; a click usage error when it cannot be read."""
    if text is None or text == "":
        return None
    try:
        return timeutil.parse_time(text, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def fmt_ms(ms: int | None) -> str:
    """Epoch ms as a short UTC ISO string (operators compare logs in UTC)."""
    if ms is None or ms < 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def fmt_duration(ms: int) -> str:
    """``93784000`` -> ``1d02h03m04s``: readable clocks for case timelines."""
    negative = ms < 0
    seconds = abs(ms) // 1000
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = (f"{days}d{hours:02d}h{minutes:02d}m{seconds:02d}s" if days
            else f"{hours}h{minutes:02d}m{seconds:02d}s" if hours
            else f"{minutes}m{seconds:02d}s")
    return "-" + text if negative else text


def new_run_id() -> str:
    """A short id that tags one replay / retry run in headers and logs."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


# --- clients -------------------------------------------------------------------

def existing_topics(admin: KafkaAdminClient) -> set[str]:
    return set(admin.list_topics())


def partition_count(admin: KafkaAdminClient, topic: str) -> int | None:
    """Partitions of an existing topic, None when it does not exist."""
    for info in admin.describe_topics([topic]):
        if info.get("name") == topic and info.get("error_code", 0) == 0:
            return len(info.get("partitions") or [])
    return None


# --- bounded reads -----------------------------------------------------------------

@dataclass
class Span:
    """The offsets ``[start, end)`` of one partition to read."""

    tp: TopicPartition
    start: int
    end: int

    @property
    def count(self) -> int:
        return max(0, self.end - self.start)


def plan_spans(consumer: KafkaConsumer, topic: str, partitions: Iterable[int],
               since_ms: int | None = None, until_ms: int | None = None) -> list[Span]:
    """Offsets to read per partition for a time range.

    Start: the first offset whose timestamp is >= ``since_ms``
    (``offsets_for_times``): every earlier offset has an earlier timestamp,
    so nothing in range is skipped.  End: the end offset taken now (the
    snapshot), not the first offset at ``until_ms``: timestamps are not
    monotonic within a partition (producers set them; archives and replays
    keep the original ones), so records below ``until_ms`` may follow it.
    :func:`read_spans` filters by timestamp.
    """
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    if not tps:
        return []
    begin = consumer.beginning_offsets(tps)
    end = consumer.end_offsets(tps)
    start = dict(begin)
    stop = dict(end)
    if since_ms is not None:
        found = consumer.offsets_for_times({tp: since_ms for tp in tps})
        for tp in tps:
            start[tp] = found[tp].offset if found.get(tp) is not None else end[tp]
    return [Span(tp, start[tp], stop[tp]) for tp in tps]


def read_spans(consumer: KafkaConsumer, spans: Sequence[Span], since_ms: int | None = None,
               until_ms: int | None = None, one_at_a_time: bool = False) -> Iterator[Any]:
    """Yield the ConsumerRecords of ``spans`` (and within ``[since, until)`` by timestamp).

    With ``one_at_a_time`` the partitions are read one after the other, so
    the records come out sorted by (partition, offset): the archive relies on
    it to merge day files back into partition order on import.
    Offsets that no longer exist (retention, compaction, transaction
    markers) are skipped; a partition that stays silent for
    ``_IDLE_LIMIT_S`` while below its end is given up with the records read.
    """
    todo = [s for s in spans if s.count > 0]
    groups = [[s] for s in todo] if one_at_a_time else ([todo] if todo else [])
    for group in groups:
        ends = {s.tp: s.end for s in group}
        consumer.assign(list(ends))
        for s in group:
            consumer.seek(s.tp, s.start)
        active = set(ends)
        idle_since = time.monotonic()
        while active:
            batch = consumer.poll(timeout_ms=_POLL_MS)
            got = False
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    got = True
                    if since_ms is not None and record.timestamp < since_ms:
                        continue
                    if until_ms is not None and record.timestamp >= until_ms:
                        continue
                    yield record
            for tp in list(active):
                if consumer.position(tp) >= ends[tp]:
                    active.discard(tp)
                    consumer.pause(tp)
            if got:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > _IDLE_LIMIT_S:
                break
        consumer.assign([])


def read_to_end(settings: Settings, topics: Sequence[str]) -> list[Any]:
    """Every ConsumerRecord of ``topics`` up to their end offsets as of now, topic by topic, each
    sorted by (partition, offset); a missing topic reads as empty."""
    consumer = make_consumer(settings)
    try:
        return [record for topic in topics
                for record in read_spans(consumer, plan_spans(consumer, topic, consumer.partitions_for_topic(topic)
                                                              or set()), one_at_a_time=True)]
    finally:
        consumer.close()


def headers_list(headers: Any) -> Headers:
    """kafka-python header tuples -> a plain list (``None`` values kept as b"")."""
    return [(str(k), bytes(v) if v is not None else b"") for k, v in (headers or [])]


def preview(data: bytes | None, width: int = 50) -> str:
    """The first bytes of a record, printable: UTF-8 text when it is, else hex."""
    if data is None:
        return "<null>"
    head = data[: width * 4]
    try:
        # incremental: a multi-byte character cut at the end of ``head`` is fine
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        half = width // 2
        return "0x" + data[:half].hex() + ("…" if len(data) > half else "")
    text = " ".join(text.split())
    return text[:width] + ("…" if len(text) > width or len(data) > len(head) else "")


def render_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """A plain aligned text table (wide CJK characters count double)."""
    import unicodedata

    def width(s: str) -> int:
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)

    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(width(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c + " " * (widths[i] - width(c)) for i, c in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
