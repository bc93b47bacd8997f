"""The secured Kafka (``gridhub infra up --secure``): SCRAM logins and per-agency ACLs, on a real broker.

Agency ``330502.zhzf`` may read ``dispatch.330502.zhzf`` (with its own consumer
group) and write ``feedback.330502.zhzf``; it is refused another agency's dispatch topic,
any other write, and a consumer group that is not its own.  A wrong password
does not get in at all.  The broker runs in a temporary run dir on its own
port and is stopped at the end (only this broker).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from gridhub.infra.secure import HUB, SecureInfra
from gridhub.core.settings import Settings
from helpers.secure import SCJG, ZHZF, on_secured_broker

pytestmark = [pytest.mark.slow, pytest.mark.integration]

@pytest.fixture(scope="module")
def dispatched(secure: SecureInfra) -> dict[str, list[bytes]]:
    """The hub creates the topics and dispatches three records to each agency."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=secure.bootstrap, **secure.client_options(HUB))
    admin.create_topics([NewTopic(t, 3, 1) for t in ("dispatch.330502.zhzf", "dispatch.330502.scjg", "feedback",
                                                     "feedback.330502.zhzf", "feedback.330502.scjg",
                                                     "reports", "dispatches")])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=secure.bootstrap, acks="all", **secure.client_options(HUB))
    sent: dict[str, list[bytes]] = {}
    for agency in (ZHZF, SCJG):
        sent[agency] = [f"{agency}-{i}-{uuid.uuid4().hex[:6]}".encode() for i in range(3)]
        for value in sent[agency]:
            producer.send(f"dispatch.{agency}", key=b"case", value=value)
            producer.send("dispatches", key=b"case", value=value)  # routing's copy of every agency's dispatch
    producer.flush()
    producer.close()
    return sent


def consume_as(secure: SecureInfra, principal: str, topic: str, group: str, n: int, timeout: float = 20) -> list[bytes]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=secure.bootstrap, group_id=group,
                             auto_offset_reset="earliest", **secure.client_options(principal))
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                got.extend(r.value for r in batch)
    finally:
        consumer.close()
    return got


def produce_as(secure: SecureInfra, principal: str, topic: str) -> Any:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=secure.bootstrap, acks="all", max_block_ms=10_000,
                             retries=0, **secure.client_options(principal))
    try:
        return producer.send(topic, key=b"k", value=b'{"action":"sign"}').get(timeout=20)
    finally:
        producer.close(timeout=5)


def test_agency_reads_its_own_dispatch_topic(secure: SecureInfra, dispatched: dict[str, list[bytes]]) -> None:
    got = consume_as(secure, ZHZF, f"dispatch.{ZHZF}", group=f"{ZHZF}-app", n=3)
    assert sorted(got) == sorted(dispatched[ZHZF])


def subscribe_as(secure: SecureInfra, principal: str, topic: str, group: str) -> None:
    """Subscribe and poll once with aiokafka, which raises the broker's refusal (kafka-python only logs it)."""
    from aiokafka import AIOKafkaConsumer

    async def subscribe() -> None:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=secure.bootstrap, group_id=group,
                                    **secure.client_options(principal))
        try:
            await consumer.start()
            await consumer.getmany(timeout_ms=2000)
        finally:
            await consumer.stop()

    asyncio.run(subscribe())


def test_agency_cannot_read_another_agencys_topic(secure: SecureInfra, dispatched: dict[str, list[bytes]]) -> None:
    """aiokafka reports the refusal (TopicAuthorizationFailed); kafka-python, which only logs it, reads nothing."""
    from aiokafka.errors import TopicAuthorizationFailedError

    with pytest.raises(TopicAuthorizationFailedError):
        subscribe_as(secure, ZHZF, f"dispatch.{SCJG}", group=f"{ZHZF}-x")
    assert consume_as(secure, ZHZF, f"dispatch.{SCJG}", group=f"{ZHZF}-snoop", n=1, timeout=8) == []
    # The same call as the hub (authorised) does read them: the empty answer above is the ACL's doing.
    assert len(consume_as(secure, HUB, f"dispatch.{SCJG}", group="hub-check", n=3)) == 3


def test_agency_cannot_read_the_hubs_copy_of_every_dispatch(secure: SecureInfra,
                                                            dispatched: dict[str, list[bytes]]) -> None:
    """``dispatches`` holds every agency's dispatches (for the ClickHouse sink): no agency may read it."""
    from aiokafka.errors import TopicAuthorizationFailedError

    with pytest.raises(TopicAuthorizationFailedError):
        subscribe_as(secure, ZHZF, "dispatches", group=f"{ZHZF}-all")
    assert len(consume_as(secure, HUB, "dispatches", group="hub-check-all", n=6)) == 6


def test_agency_cannot_use_another_agencys_group(secure: SecureInfra, dispatched: dict[str, list[bytes]]) -> None:
    from kafka.errors import GroupAuthorizationFailedError

    with pytest.raises(GroupAuthorizationFailedError):
        consume_as(secure, ZHZF, f"dispatch.{ZHZF}", group=f"{SCJG}-app", n=1, timeout=15)


def test_agency_writes_its_own_feedback_topic_only(secure: SecureInfra, dispatched: dict[str, list[bytes]]) -> None:
    """Its own ``feedback.<county>.<agency>``; not another agency's, not the hub's shared ``feedback``."""
    from kafka.errors import TopicAuthorizationFailedError

    meta = produce_as(secure, ZHZF, f"feedback.{ZHZF}")
    assert meta.offset >= 0
    for topic in (f"feedback.{SCJG}", "feedback", f"dispatch.{ZHZF}", f"dispatch.{SCJG}", "reports"):
        with pytest.raises(TopicAuthorizationFailedError):
            produce_as(secure, ZHZF, topic)


def test_wrong_password_is_refused(secure: SecureInfra) -> None:
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    options = secure.client_options(ZHZF) | {"sasl_plain_password": "not-the-password"}
    with pytest.raises(KafkaError):
        consumer = KafkaConsumer(bootstrap_servers=secure.bootstrap, request_timeout_ms=10_000, **options)
        try:
            consumer.topics()
        finally:
            consumer.close()


def test_hub_settings_connect_as_hub(secure: SecureInfra, dispatched: dict[str, list[bytes]]) -> None:
    """Settings.kafka_client_options (what the hub's clients use) authenticate on the secured broker."""
    from kafka import KafkaConsumer

    hub = secure.hub_settings()
    consumer = KafkaConsumer(bootstrap_servers=hub.kafka_bootstrap, **hub.kafka_client_options())
    try:
        assert f"dispatch.{SCJG}" in consumer.topics()
    finally:
        consumer.close()
    assert hub.secret("kafka_sasl_password") not in repr(hub)


def test_connectors_use_the_hub_credentials(secure: SecureInfra) -> None:
    """The connectors' Kafka clients (gateway / MQTT bridge producer, file import producer, topic
    creation) authenticate with the hub's settings; without them the same producer never connects."""
    from connectors.base import RawRecord
    from connectors.kafka_io import RawProducer, produce_batch, sync_producer
    from gridhub.core.kafka_admin import ensure_topics

    hub = secure.hub_settings()
    topic = f"raw.secure-{uuid.uuid4().hex[:6]}"
    assert ensure_topics(hub, [topic]).created == [topic]
    producer = sync_producer(hub)
    try:
        assert produce_batch(producer, [RawRecord(topic=topic, key=b"k1", value=b"from-file-import")]) == 1
    finally:
        producer.close()

    async def through_gateway_producer(settings: Settings, wait_s: float) -> bool:
        raw = RawProducer(settings)
        await raw.start()
        try:
            if not await raw.wait_ready(wait_s):
                return False
            await raw.deliver([RawRecord(topic=topic, key=b"k2", value=b"from-gateway")])
            return True
        finally:
            await raw.stop()

    assert asyncio.run(through_gateway_producer(hub, 30))
    anonymous = hub.model_copy(update={"kafka_security_protocol": "PLAINTEXT"})
    assert not asyncio.run(through_gateway_producer(anonymous, 5))  # the broker does require SASL
    got = consume_as(secure, HUB, topic, group="hub-check-connectors", n=2)
    assert sorted(got) == [b"from-file-import", b"from-gateway"]


def test_the_clickhouse_sink_and_lag_probe_run_on_the_secured_broker(secure: SecureInfra, settings: Settings,
                                                                     worker: Any, ch_client: Any) -> None:
    """``gridhub run --only clickhouse`` as the hub: the Faust app, the sink's consumer and the health
    lag probe authenticate with the hub's settings; facts produced to the secured broker all land."""
    from kafka import KafkaProducer

    from gridhub.clickhouse.synthetic import encoded, generate, produce, rows
    from streams.health import LagProbe

    hub = on_secured_broker(secure, settings)
    facts = generate(30, int(time.time() * 1000), seed=5, townships=2, agencies=2)
    ids = {"cases": "case_id", "case_events": "event_id", "dispatches": "dispatch_id"}
    want = {t: len({r[col] for r in rows(facts, hub)[t]}) for t, col in ids.items()}
    producer = KafkaProducer(bootstrap_servers=hub.kafka_bootstrap, acks="all", **hub.kafka_client_options())
    try:
        produce(producer, encoded(facts, hub))
    finally:
        producer.close()

    w = worker(hub, only="clickhouse", env={"GRIDHUB_CH_SINK_FLUSH_SECONDS": "0.3"})
    probe = LagProbe(hub, group_id=f"{hub.faust_app_id}.clickhouse-sink")

    def landed() -> dict[str, int]:
        return {t: ch_client.execute(f"SELECT uniqExact({col}) FROM {hub.ch_database}.{t}")[0][0]
                for t, col in ids.items()}

    deadline, counts, lag = time.monotonic() + 120, {}, -1
    try:
        while time.monotonic() < deadline:
            try:
                counts = landed()
            except Exception:  # the sink has not created its tables yet
                counts = {}
            measured = probe.measure() if counts == want else {}
            lag = sum(measured.values()) if measured else -1  # {}: nothing committed yet
            if lag == 0:
                break
            time.sleep(1)
    finally:
        probe.close()
    assert counts == want, (counts, want, w.log_text()[-2000:])
    assert lag == 0, "the sink's group did not commit everything (or the lag probe could not log in)"
    assert hub.secret("kafka_sasl_password") not in w.log_text()  # the secret is never logged


def test_the_registry_reader_runs_on_the_secured_broker(secure: SecureInfra, settings: Settings, worker: Any) -> None:
    """``gridhub run --only ingest`` as the hub: the device registry reader (a plain aiokafka consumer
    beside the Faust agents) logs in too, so an alarm that carries no location gets the registered one."""
    from kafka import KafkaConsumer, KafkaProducer

    from gridhub.core.codec import codec
    from gridhub.core.kafka_admin import ensure_topics
    from gridhub.core.topics import RAW, REGISTRY_DEVICES, REPORTS

    hub = on_secured_broker(secure, settings)
    ensure_topics(hub, [REGISTRY_DEVICES, RAW["sensors"], REPORTS])
    device = {"deviceId": "SEC-SMOKE-1", "deviceType": "smoke", "streetCode": "330502001",
              "address": "月河街道人民路3号", "lng": 120.09, "lat": 30.89, "heartbeatSeconds": 300}
    producer = KafkaProducer(bootstrap_servers=hub.kafka_bootstrap, acks="all", **hub.kafka_client_options())
    try:
        producer.send(hub.topic(REGISTRY_DEVICES), key=b"SEC-SMOKE-1", value=json.dumps(device).encode()).get(30)
        w = worker(hub, only="ingest")
        at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        alarm = {"deviceId": "SEC-SMOKE-1", "deviceType": "smoke", "eventType": "alarm", "eventTime": at,
                 "value": 60.0, "threshold": 30.0, "unit": "ppm"}
        producer.send(hub.topic(RAW["sensors"]), key=b"SEC-SMOKE-1", value=json.dumps(alarm).encode()).get(30)
    finally:
        producer.close()
    consumer = KafkaConsumer(hub.topic(REPORTS), bootstrap_servers=hub.kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=60_000, **hub.kafka_client_options())
    try:
        report = codec("Report").decode(next(iter(consumer)).value)
    finally:
        consumer.close()
    assert (report["source"], report["street_code"], report["address"]) == ("sensors", "330502001", "月河街道人民路3号")
    assert hub.secret("kafka_sasl_password") not in w.log_text()


async def test_the_webhook_sender_runs_on_the_secured_broker(secure: SecureInfra, settings: Settings,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The webhook sink's consumer group and its dead-letter producer log in as the hub: a dispatch on
    the secured broker reaches the agency's endpoint, and one the endpoint refuses lands in ``dlq``."""
    from aiohttp import web
    from kafka import KafkaConsumer, KafkaProducer

    from connectors.webhook.service import runner as webhook_runner
    from connectors.webhook.signing import IDEMPOTENCY_HEADER
    from gridhub.core.codec import codec
    from gridhub.core.kafka_admin import ensure_topics
    from helpers.http import catalog_with_delivery, sample_dispatch, serve_post

    hub = on_secured_broker(secure, settings)
    agency, topic = "330502.whsc", hub.topic("dispatch.330502.whsc")
    received: dict[str, dict[str, Any]] = {}

    async def endpoint(request: web.Request) -> web.Response:
        body = await request.json()
        if body["dispatchId"] == "refused":
            return web.Response(status=422)  # a refusal: not retried, dead-lettered
        received[request.headers[IDEMPOTENCY_HEADER]] = body
        return web.Response(status=204)

    runner, url = await serve_post(endpoint, "/dispatch")
    monkeypatch.setenv("GRIDHUB_TEST_WHSC_SECRET", "whsc-secret")
    catalog = catalog_with_delivery(tmp_path, f"""
        delivery:
          default: kafka
          agencies:
            "{agency}": {{mode: webhook, url: "{url}", secret_env: GRIDHUB_TEST_WHSC_SECRET}}
    """)
    await asyncio.to_thread(ensure_topics, hub, ["dispatch.330502.whsc", "dlq"])
    producer = KafkaProducer(bootstrap_servers=hub.kafka_bootstrap, acks="all", **hub.kafka_client_options())
    try:
        for did in ("delivered", "refused"):
            producer.send(topic, key=f"case-{did}".encode(), value=codec("Dispatch").encode(sample_dispatch(did, agency)))
        producer.flush()
    finally:
        producer.close()

    def dead_letters() -> list[Any]:
        consumer = KafkaConsumer(hub.topic("dlq"), bootstrap_servers=hub.kafka_bootstrap, auto_offset_reset="earliest",
                                 consumer_timeout_ms=30_000, **hub.kafka_client_options())
        try:
            return [next(iter(consumer))]
        finally:
            consumer.close()

    sink = webhook_runner(hub, catalog)
    await sink.start()
    try:
        deadline = time.monotonic() + 60
        while "delivered" not in received and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        letters = await asyncio.to_thread(dead_letters)
    finally:
        await sink.stop()
        await runner.cleanup()
    assert list(received) == ["delivered"] and received["delivered"]["agency"] == agency
    assert letters[0].key == b"case-refused"
