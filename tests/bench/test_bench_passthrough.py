"""bench/passthrough.py: the e2e baseline copies every raw record, on the hub's own client stack."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import pytest

from bench.client import create_topic
from bench.passthrough import OUT
from gridhub.core.settings import Settings
from gridhub.core.topics import RAW

pytestmark = pytest.mark.integration


def test_passthrough_copies_every_record_in_batches_on_the_hub_stack(settings: Settings, worker: Callable[..., Any],
                                                                     kafka_producer: Any,
                                                                     consume: Callable[..., list[Any]]) -> None:
    create_topic(settings, OUT, settings.partitions)
    # Small batches so that several batches per partition are taken and confirmed.
    w = worker(settings, command=[sys.executable, "-m", "bench.passthrough"], topics=list(RAW.values()),
               env={"GRIDHUB_BATCH_MAX_EVENTS": "7", "GRIDHUB_EVENT_LOOP": "uvloop"})
    sent = set()
    for i in range(300):
        source = list(RAW)[i % len(RAW)]
        key, value = f"k{i % 40}".encode(), json.dumps({"n": i, "source": source}).encode()
        kafka_producer.send(settings.topic(RAW[source]), key=key, value=value)
        sent.add((key, value))
    kafka_producer.flush()

    copied = consume(OUT, len(sent), timeout=90)
    assert {(r.key, r.value) for r in copied} == sent
    # Same partition for a key as the input: the output is keyed and partitioned like the hub's.
    by_key: dict[bytes, set[int]] = {}
    for r in copied:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in by_key.values())
    stack = [json.loads(line) for line in w.log_text().splitlines()
             if line.startswith("{") and '"passthrough_stack"' in line]
    assert stack and stack[0]["loop"] == "Loop" and stack[0]["batch_max_events"] == 7
    assert stack[0]["linger_ms"] == settings.producer_linger_ms
