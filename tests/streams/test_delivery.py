"""Issue 14 item 2 with injected failures, real broker: a record Kafka refuses stops the worker.

An output topic of the test's namespace gets a ``max.message.bytes`` smaller than the record the
stage produces.  The worker must exit with status 70 (``streams.app.EXIT_FAIL_STOP``) without
committing the input (the group's committed offset is checked with the admin client); once the
topic is fixed and the worker restarted, the record comes out.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import pytest
from helpers.fusion import report
from kafka.admin import ConfigResource, ConfigResourceType

from gridhub.core.codec import codec
from gridhub.core.kafka_admin import admin_client
from gridhub.core.settings import Settings
from gridhub.core.topics import RAW, REPORTS, REPORTS_LINKED
from gridhub.simulate.generator import sample
from streams.app import EXIT_FAIL_STOP

pytestmark = pytest.mark.integration

#: Smaller than any Report record batch (several hundred bytes of Avro), larger than the
#: broker's minimum for the setting.
TOO_SMALL = "100"
#: Kafka's default max.message.bytes (1 MiB + 12 bytes of record-batch overhead).
KAFKA_DEFAULT = "1048588"


def set_max_message_bytes(settings: Settings, topic: str, value: str) -> None:
    admin = admin_client(settings, client_id="test-delivery")
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, settings.topic(topic),
                                            {"max.message.bytes": value})], incremental=True)
    finally:
        admin.close()


def committed(settings: Settings, topic: str) -> dict[int, int]:
    """The worker group's committed offsets of ``topic``, per partition (absent: never committed)."""
    admin = admin_client(settings, client_id="test-delivery")
    try:
        offsets = admin.list_group_offsets({settings.faust_app_id: None})[settings.faust_app_id]
    finally:
        admin.close()
    name = settings.topic(topic)
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == name and meta.offset >= 0}


def wait_exit(w: Any, timeout: float = 120.0) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and w.running():
        time.sleep(0.5)
    return w.proc.poll()


def assert_refused_then_delivered(settings: Settings, w: Any, input_topic: str, output_topic: str,  # the refusing one
                                  consume: Callable[..., list[Any]], source_ref: str,
                                  fix: Callable[[], None] | None = None) -> None:
    """The worker exits 70 with the input uncommitted and nothing on ``output_topic``; after ``fix``
    (default: the topic's ``max.message.bytes`` back to Kafka's default) and a restart, it is delivered."""
    code = wait_exit(w)
    assert code == EXIT_FAIL_STOP, w.log_tail(40)
    assert "effects_refused" in w.log_text()
    # Faust commits in the background (commit_interval) and on a clean stop: the exit left the input
    # uncommitted, so the group has no offset past 0 for it.
    assert sum(committed(settings, input_topic).values()) == 0
    assert not [r for r in consume(output_topic, 0, timeout=2)
                if codec("Report").decode(r.value)["source_ref"] == source_ref]
    (fix or (lambda: set_max_message_bytes(settings, output_topic, KAFKA_DEFAULT)))()
    w.start()
    out = [codec("Report").decode(r.value) for r in consume(output_topic, 1, timeout=90)]
    assert {r["source_ref"] for r in out} == {source_ref}
    deadline = time.monotonic() + 60  # the batch is acknowledged now: its offset gets committed
    while sum(committed(settings, input_topic).values()) != 1 and time.monotonic() < deadline:
        time.sleep(1)
    assert sum(committed(settings, input_topic).values()) == 1


def test_ingest_output_refused_stops_without_commit(settings: Settings, worker: Callable[..., Any],
                                                    kafka_producer: Any, consume: Callable[..., list[Any]]) -> None:
    records, _ = sample(60, seed=3, end_ms=int(time.time() * 1000))
    doc = next(r for r in records if r.source == "four-platforms")
    w = worker(settings, only="ingest", restart_on_fail_stop=False)
    set_max_message_bytes(settings, REPORTS, TOO_SMALL)
    kafka_producer.send(settings.topic(RAW["four-platforms"]), key=doc.key.encode(), value=doc.value())
    kafka_producer.flush()
    assert_refused_then_delivered(settings, w, RAW["four-platforms"], REPORTS, consume,
                                  json.loads(doc.value())["eventId"])


def test_fusion_output_refused_stops_without_commit(settings: Settings, worker: Callable[..., Any],
                                                    kafka_producer: Any, consume: Callable[..., list[Any]]) -> None:
    r = report("refused-1", t=int(time.time() * 1000))
    w = worker(settings, only="fusion", restart_on_fail_stop=False)
    set_max_message_bytes(settings, REPORTS_LINKED, TOO_SMALL)
    kafka_producer.send(settings.topic(REPORTS), key=r["county_code"].encode(), value=codec("Report").encode(r))
    kafka_producer.flush()
    assert_refused_then_delivered(settings, w, REPORTS, REPORTS_LINKED, consume, "refused-1")


def test_ingest_output_to_a_topic_the_hub_may_not_write_stops_without_commit(
        secure: Any, settings: Settings, worker: Callable[..., Any]) -> None:
    """The secured broker (SASL/SCRAM + ACLs): a DENY WRITE for the hub on ``reports`` makes the broker
    refuse ingest's output (TopicAuthorizationFailed); the worker stops without committing the raw
    document, and delivers it once the ACL is gone."""
    from helpers.kafka import read_topic
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import ACL, ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern
    from kafka.admin import ResourceType

    from gridhub.infra.secure import ADMIN, HUB
    from helpers.secure import on_secured_broker

    hub = on_secured_broker(secure, settings)
    deny = ACL(f"User:{HUB}", "*", ACLOperation.WRITE, ACLPermissionType.DENY,
               ResourcePattern(ResourceType.TOPIC, hub.topic(REPORTS), ACLResourcePatternType.LITERAL))
    admin = KafkaAdminClient(bootstrap_servers=secure.bootstrap, **secure.client_options(ADMIN))
    try:
        created = admin.create_acls([deny])
        assert not created["failed"], created
        records, _ = sample(60, seed=4, end_ms=int(time.time() * 1000))
        doc = next(r for r in records if r.source == "four-platforms")
        w = worker(hub, only="ingest", restart_on_fail_stop=False)
        producer = KafkaProducer(bootstrap_servers=hub.kafka_bootstrap, acks="all", **hub.kafka_client_options())
        try:
            producer.send(hub.topic(RAW["four-platforms"]), key=doc.key.encode(), value=doc.value()).get(30)
        finally:
            producer.close()

        def consume(topic: str, n: int, timeout: float = 30.0) -> list[Any]:
            return read_topic(hub, topic, n, timeout)

        def allow_again() -> None:
            deleted = admin.delete_acls([ACLFilter(f"User:{HUB}", "*", ACLOperation.WRITE, ACLPermissionType.DENY,
                                                   ResourcePattern(ResourceType.TOPIC, hub.topic(REPORTS),
                                                                   ACLResourcePatternType.LITERAL))])
            assert deleted and deleted[0][1], deleted  # (filter, the ACLs it removed, error)

        assert_refused_then_delivered(hub, w, RAW["four-platforms"], REPORTS, consume,
                                      json.loads(doc.value())["eventId"], fix=allow_again)
        assert "TopicAuthorization" in w.log_text()
    finally:
        admin.close()


def test_a_record_never_acknowledged_stops_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """A future that never resolves (a stuck producer) ends in a fail-stop, not a stalled partition."""
    import asyncio
    from types import SimpleNamespace

    import streams.app
    from streams.delivery import Deliveries

    stopped: list[str] = []

    def fake_fail_stop(event: Any, stage: str, exc: BaseException) -> None:
        stopped.append(f"{stage}: {exc}")

    monkeypatch.setattr(streams.app, "fail_stop", fake_fail_stop)

    async def run() -> None:
        out = Deliveries("ingest", timeout_s=0.05)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        out.track(done)
        out.track(asyncio.get_running_loop().create_future())  # never acknowledged nor refused
        await out.confirm([SimpleNamespace(message=None)])  # type: ignore[list-item]

    asyncio.run(run())
    assert stopped == ["ingest: 1 of 2 records unconfirmed after 0 s (topics: ?)"]
