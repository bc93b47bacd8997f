"""gridhub/runner.py: a worker on a fresh cluster reads all three feeds from its first seconds.

No topic exists before the worker starts (as on a new cluster or a new namespace); the worker
creates its inputs before it subscribes.  Without that, a Faust consumer is assigned no
partition of a topic created after it subscribed until its next metadata refresh (5 minutes),
so documents of two of the three feeds sat unread that long.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import pytest

from gridhub.core.codec import codec
from gridhub.core.kafka_admin import admin_client
from gridhub.core.settings import Settings
from gridhub.core.topics import RAW, REGISTRY_DEVICES, REPORTS
from gridhub.simulate.generator import sample

pytestmark = pytest.mark.integration


def test_documents_right_after_ready_are_reported_for_every_source(settings: Settings, worker: Callable[..., Any],
                                                                   kafka_producer: Any,
                                                                   consume: Callable[..., list[Any]]) -> None:
    admin = admin_client(settings)
    try:
        assert not [t for t in admin.list_topics() if t.startswith(settings.namespace + ".")]
    finally:
        admin.close()
    worker(settings, only="ingest", ensure_topics=False)

    records, registry = sample(600, seed=3, end_ms=int(time.time() * 1000))
    for device_id, record in registry.items():
        kafka_producer.send(settings.topic(REGISTRY_DEVICES), key=device_id.encode(),
                            value=json.dumps(record, ensure_ascii=False).encode())
    # One document of each source that becomes a report: a grid report, a new 12345 order, an alarm.
    firsts = {}
    for r in records:
        if r.source not in firsts and r.kind == "report" and r.doc.get("eventType", "alarm") == "alarm":
            firsts[r.source] = r
    assert set(firsts) == set(RAW)
    for source, r in firsts.items():
        kafka_producer.send(settings.topic(RAW[source]), key=r.key.encode(), value=r.value())
    kafka_producer.flush()

    # 90 s: far below the 5-minute metadata refresh a missed subscription waits for.
    reports = [codec("Report").decode(r.value) for r in consume(REPORTS, 3, timeout=90)]
    expected = {(r.source, r.source_ref) for r in firsts.values()}
    assert {(r["source"], r["source_ref"]) for r in reports} == expected
