"""``gridhub dlq``: read, inspect and re-inject dead letters.

A dead letter is the ORIGINAL bytes (and key) of a rejected record plus
``error.*`` headers (:mod:`gridhub.core.dlq`).  ``retry`` puts those bytes back on
the source topic the headers name, after the cause was fixed (a reference
table updated, a parser bug fixed and deployed), tagged
``gridhub.retry.of=<partition>:<offset>``, and writes a marker on the
compacted ``dlq.retries`` topic so that the same dead letter is not
re-injected twice by accident (``--force`` does it anyway).  Dead letters
are addressed as ``PARTITION:OFFSET`` of the dlq topic.

Order of a retry, and what a crash between the steps does:
1. produce the original record to its source topic, wait for acks=all;
2. produce the marker, wait for acks=all.
A crash after 1 and before 2 leaves the record re-injected without a marker:
a second ``retry`` would inject it again, which the pipeline absorbs because
every stage is idempotent on the record's deterministic id.
"""

from __future__ import annotations

import codecs
import json
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import click
from kafka import KafkaConsumer

from gridhub.core import topics as T
from gridhub.core.dlq import HEADER_PREFIX, DeadLetterInfo, parse_dead_letter_headers
from gridhub.core.logging import get_logger
from gridhub.ops.common import (Headers, fmt_ms, headers_list, make_consumer, make_producer, new_run_id,
                                parse_time, partition_count, plan_spans, preview, read_spans, render_table,
                                settings_for, admin_client)
from gridhub.core.kafka_admin import ensure_topics
from gridhub.core.settings import Settings

log = get_logger(__name__)

RETRIES = "dlq.retries"            # contract name of the marker topic
RETRY_HEADER = "gridhub.retry.of"  # on the re-injected record: "<dlq partition>:<dlq offset>"


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    info: DeadLetterInfo

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def source(self) -> str:
        if self.info.topic is None:
            return "-"
        return f"{self.info.topic}/{self.info.partition if self.info.partition is not None else '?'}" \
               f"/{self.info.offset if self.info.offset is not None else '?'}"

    @property
    def original_headers(self) -> Headers:
        """The headers the source record had (everything but ``error.*``)."""
        return [(k, v) for k, v in self.headers if not k.startswith(HEADER_PREFIX)]


@dataclass(frozen=True)
class Filters:
    """``ls`` / ``retry`` selection; every given filter must match."""

    stage: str | None = None
    reason: str | None = None          # case-insensitive substring
    topics: tuple[str, ...] = ()       # source topics, contract or physical names
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, letter: DeadLetter, settings: Settings) -> bool:
        if self.stage and letter.info.stage != self.stage:
            return False
        if self.reason and self.reason.lower() not in letter.info.reason.lower():
            return False
        if self.topics:
            wanted = {t for name in self.topics for t in (name, settings.topic(name))}
            if letter.info.topic not in wanted:
                return False
        if self.since_ms is not None and letter.timestamp < self.since_ms:
            return False
        if self.until_ms is not None and letter.timestamp >= self.until_ms:
            return False
        return True


def parse_ref(text: str) -> tuple[int | None, int]:
    """``3:120`` -> (3, 120); ``120`` -> (None, 120) (any partition)."""
    try:
        if ":" in text:
            partition, offset = text.split(":", 1)
            return int(partition), int(offset)
        return None, int(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: expected PARTITION:OFFSET (or OFFSET)") from exc


def _letter(record: Any) -> DeadLetter:
    headers = headers_list(record.headers)
    return DeadLetter(record.partition, record.offset, record.timestamp, record.key, record.value, headers,
                      parse_dead_letter_headers(headers))


def read_dead_letters(settings: Settings, filters: Filters = Filters(),
                      consumer: KafkaConsumer | None = None) -> Iterator[DeadLetter]:
    """The dead letters of this namespace that match ``filters``, per partition in offset order."""
    topic = settings.topic(T.DLQ)
    own = consumer is None
    consumer = consumer or make_consumer(settings)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        spans = plan_spans(consumer, topic, partitions, filters.since_ms, filters.until_ms)
        for record in read_spans(consumer, spans, filters.since_ms, filters.until_ms, one_at_a_time=True):
            letter = _letter(record)
            if filters.matches(letter, settings):
                yield letter
    finally:
        if own:
            consumer.close()


def find_dead_letter(settings: Settings, ref: str) -> DeadLetter | None:
    partition, offset = parse_ref(ref)
    topic = settings.topic(T.DLQ)
    consumer = make_consumer(settings)
    try:
        all_parts = sorted(consumer.partitions_for_topic(topic) or set())
        parts = all_parts if partition is None else [p for p in all_parts if p == partition]
        found = []
        for span in plan_spans(consumer, topic, parts):
            if span.start <= offset < span.end:
                span.start, span.end = offset, offset + 1
                found += [_letter(r) for r in read_spans(consumer, [span])]
        if len(found) > 1:
            raise click.UsageError(f"offset {offset} exists in partitions "
                                   f"{', '.join(str(f.partition) for f in found)}: say PARTITION:OFFSET")
        return found[0] if found else None
    finally:
        consumer.close()


def retried_refs(settings: Settings) -> dict[str, dict[str, Any]]:
    """Markers of the dead letters already re-injected: ``{"p:o": marker}``."""
    topic = settings.topic(RETRIES)
    consumer = make_consumer(settings)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        out: dict[str, dict[str, Any]] = {}
        for record in read_spans(consumer, plan_spans(consumer, topic, partitions)):
            if record.key is None:
                continue
            if record.value is None:      # tombstone: the marker was withdrawn
                out.pop(record.key.decode(), None)
            else:
                out[record.key.decode()] = json.loads(record.value)
        return out
    finally:
        consumer.close()


@dataclass(frozen=True)
class RetryOutcome:
    ref: str
    status: str          # retried | would-retry | skipped
    detail: str


def retry_dead_letters(settings: Settings, letters: Sequence[DeadLetter], *, dry_run: bool = False,
                       force: bool = False) -> list[RetryOutcome]:
    """Re-inject ``letters`` to their source topics (see the module docstring for the order)."""
    done = retried_refs(settings)
    outcomes: list[RetryOutcome] = []
    run_id = new_run_id()
    todo: list[DeadLetter] = []
    for letter in letters:
        if letter.info.topic is None:
            outcomes.append(RetryOutcome(letter.ref, "skipped", "no error.topic header: source unknown"))
        elif letter.ref in done and not force:
            marker = done[letter.ref]
            outcomes.append(RetryOutcome(letter.ref, "skipped",
                                         f"already retried at {fmt_ms(marker.get('retried_at'))} to "
                                         f"{marker.get('target_topic')}/{marker.get('target_partition')}/"
                                         f"{marker.get('target_offset')} (use --force to inject again)"))
        else:
            todo.append(letter)
    if dry_run:
        return outcomes + [RetryOutcome(dl.ref, "would-retry", f"-> {dl.info.topic}") for dl in todo]
    if not todo:
        return outcomes
    ensure_topics(settings, [RETRIES])
    admin = admin_client(settings)
    try:
        partitions = {t: partition_count(admin, t) for t in {dl.info.topic for dl in todo if dl.info.topic}}
    finally:
        admin.close()
    producer = make_producer(settings)
    try:
        for letter in todo:
            target = letter.info.topic
            assert target is not None
            count = partitions.get(target)
            if count is None:
                outcomes.append(RetryOutcome(letter.ref, "skipped", f"source topic {target} does not exist"))
                continue
            # Same partition as the original when it still exists: keeps order among
            # records without a key; keyed ones hash to it anyway.
            partition = letter.info.partition if letter.info.partition is not None \
                and letter.info.partition < count else None
            headers = letter.original_headers + [(RETRY_HEADER, letter.ref.encode())]
            meta = producer.send(target, value=letter.value, key=letter.key, headers=headers,
                                 partition=partition).get(timeout=30)
            marker = {"dlq_topic": settings.topic(T.DLQ), "partition": letter.partition, "offset": letter.offset,
                      "target_topic": target, "target_partition": meta.partition, "target_offset": meta.offset,
                      "retried_at": int(time.time() * 1000), "run_id": run_id, "stage": letter.info.stage,
                      "reason": letter.info.reason}
            producer.send(settings.topic(RETRIES), key=letter.ref.encode(),
                          value=json.dumps(marker, ensure_ascii=False).encode()).get(timeout=30)
            outcomes.append(RetryOutcome(letter.ref, "retried", f"-> {target}/{meta.partition}/{meta.offset}"))
            log.info("dead_letter_retried", ref=letter.ref, target=target, target_partition=meta.partition,
                     target_offset=meta.offset, run_id=run_id)
        producer.flush()
    finally:
        producer.close()
    return outcomes


# --- formatting -------------------------------------------------------------------------

def _text_or_hex(data: bytes | None) -> str:
    if data is None:
        return "<null>"
    try:
        return codecs.decode(data, "utf-8")
    except UnicodeDecodeError:
        lines = []
        for i in range(0, len(data), 16):  # 16 bytes per line: the classic hexdump layout
            chunk = data[i:i + 16]
            lines.append(f"{i:08x}  {chunk.hex(' '):<47}  " + "".join(chr(b) if 32 <= b < 127 else "." for b in chunk))
        return "\n".join(lines)


def _header_text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + value.hex()


def format_letter(letter: DeadLetter) -> str:
    lines = [f"dead letter {letter.ref}  at {fmt_ms(letter.timestamp)}",
             f"stage:   {letter.info.stage}", f"reason:  {letter.info.reason}",
             f"source:  {letter.source}", f"key:     {_header_text(letter.key) if letter.key is not None else '<null>'}",
             "headers:"]
    lines += [f"  {k} = {_header_text(v)}" for k, v in letter.headers]
    size = len(letter.value) if letter.value is not None else 0
    lines += [f"value ({size} bytes):", _text_or_hex(letter.value)]
    return "\n".join(lines)
