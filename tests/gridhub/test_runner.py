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
from streams.ingest.samples import SampleGenerator

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

    gen = SampleGenerator(int(time.time() * 1000), seed=3)
    for device_id, record in gen.registry.items():
        kafka_producer.send(settings.topic(REGISTRY_DEVICES), key=device_id.encode(),
                            value=json.dumps(record, ensure_ascii=False).encode())
    docs = {"four-platforms": gen.four_platforms(), "hotline-12345": gen.hotline(), "sensors": gen.sensor("alarm")}
    for source, doc in docs.items():
        kafka_producer.send(settings.topic(RAW[source]), key=b"k", value=json.dumps(doc, ensure_ascii=False).encode())
    kafka_producer.flush()

    # 90 s: far below the 5-minute metadata refresh a missed subscription waits for.
    reports = [codec("Report").decode(r.value) for r in consume(REPORTS, 3, timeout=90)]
    expected = {("four-platforms", docs["four-platforms"]["eventId"]),
                ("hotline-12345", docs["hotline-12345"]["orderNo"]),
                ("sensors", f"{docs['sensors']['deviceId']}@{docs['sensors']['eventTime']}")}
    assert {(r["source"], r["source_ref"]) for r in reports} == expected
