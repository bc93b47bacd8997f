"""Fuzzed documents through a real ingest worker: every rejection is dead-lettered byte for byte, the rest
become reports, and the worker's counts equal what the pure ``normalize`` predicts for the same inputs.

The prediction uses the same receipt time the agent uses (the raw record's Kafka
timestamp) and the same device registry (produced to ``registry.devices`` before
the worker starts), so any difference is a wiring bug: a lost record, a
double emit, a crash that skipped a partition, or a dead letter whose bytes
differ from what the source sent.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from typing import Any, Callable

import pytest
from helpers.fuzz import build_corpus, mutated
from hypothesis import strategies as st
from hypothesis.errors import HypothesisWarning

from gridhub.core.codec import codec
from gridhub.core.dlq import parse_dead_letter_headers
from gridhub.core.settings import Settings
from gridhub.core.topics import DEVICE_EVENTS, DLQ, RAW, REGISTRY_DEVICES, REPORTS
from streams.ingest.normalize import Rejected, normalize

#: Documents per run: "a few hundred" (brief), about a minute of worker time on 2 cores.
DOCUMENTS = 300
#: Kafka's default max.request.size is 1 MiB; the dead letter adds headers, so stay well below.
MAX_VALUE_BYTES = 900_000
SOURCES = ["four-platforms", "hotline-12345", "sensors"]


def _received_ms(timestamp_ms: int) -> int:
    """What the agent computes from the record: Faust exposes the timestamp as float seconds."""
    return int((timestamp_ms / 1000) * 1000)


def _draw(strategy: st.SearchStrategy[Any]) -> Any:
    """One random example (``.example()``: this test is one run over many documents, not a property that
    Hypothesis should repeat and shrink with a live worker and its topics)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HypothesisWarning)  # NonInteractiveExampleWarning, large reprs
        return strategy.example()


@pytest.mark.integration
@pytest.mark.slow
def test_fuzzed_documents_through_ingest_worker(settings: Settings, kafka_producer: Any,
                                                consume: Callable[..., list[Any]], worker: Callable[..., Any],
                                                ) -> None:
    now = int(time.time() * 1000)
    # Documents dated around now (the simulator's default date is outside the 400-day bound today).
    corpus, registry = build_corpus(now - 10 * 60_000)
    for device_id, row in registry.items():
        kafka_producer.send(settings.topic(REGISTRY_DEVICES), key=device_id.encode(),
                            value=json.dumps(row, ensure_ascii=False).encode())
    kafka_producer.flush()

    sent: dict[tuple[str, int, int], bytes] = {}  # (topic, partition, offset) -> value
    expected: dict[tuple[str, int, int], str] = {}  # -> "report" | "device_event" | "heartbeat" | "rejected"
    strategies = {(source, n): mutated(source, corpus, max_mutations=n) for source in SOURCES for n in (0, 1, 3)}
    stamp = now
    while len(sent) < DOCUMENTS:
        source = SOURCES[len(sent) % 3]
        # A third unchanged (valid) documents, the rest with 1-3 mutations.
        value, _ = _draw(strategies[source, [0, 1, 3][(len(sent) // 3) % 3]])
        if len(value) > MAX_VALUE_BYTES:
            continue
        stamp += 1
        topic = settings.topic(RAW[source])
        meta = kafka_producer.send(topic, key=source.encode(), value=value, timestamp_ms=stamp).get(timeout=30)
        where = (topic, meta.partition, meta.offset)
        sent[where] = value
        try:
            out = normalize(source, value, registry=registry, received_at_ms=_received_ms(stamp),
                            pii_key=settings.secret("pii_key").encode("utf-8"))
        except Rejected:
            expected[where] = "rejected"
        else:
            expected[where] = ("report" if out.report is not None
                               else "device_event" if out.device_event is not None else "heartbeat")
    kafka_producer.flush()
    want = Counter(expected.values())
    print(f"fuzzed documents: {dict(want)}")
    assert want["rejected"] >= 30 and want["report"] >= 30, f"the mix must exercise both paths: {want}"

    worker(settings, only="ingest")
    dead = consume(DLQ, want["rejected"], timeout=120)
    reports = consume(REPORTS, want["report"], timeout=60)
    events = consume(DEVICE_EVENTS, want["device_event"], timeout=30)

    dead_where = {}
    for rec in dead:
        info = parse_dead_letter_headers(rec.headers)
        assert info.stage == "normalize" and info.reason.strip()
        assert not info.reason.startswith("internal error"), f"normalize crashed: {info.reason}"
        key = (info.topic, info.partition, info.offset)
        assert key not in dead_where, f"dead-lettered twice: {key}"
        dead_where[key] = rec.value
    rejected = {w for w, kind in expected.items() if kind == "rejected"}
    assert set(dead_where) == rejected
    for where, value in dead_where.items():
        assert value == sent[where], f"dead letter of {where} does not hold the original bytes"
    assert len(reports) == want["report"]
    for rec in reports:
        codec("Report").decode(rec.value)
    # ``offline`` events come from the liveness timer, not from a document: a registered device of the
    # corpus that stays silent past 2.5 x its heartbeat while a slow run goes on (seen in CI on a
    # loaded machine: 6 of them).  Every other device event is a document's.
    decoded = [codec("DeviceEvent").decode(rec.value) for rec in events]
    assert all(e["device_id"] in registry for e in decoded if e["event_type"] == "offline")
    assert len([e for e in decoded if e["event_type"] != "offline"]) == want["device_event"]
