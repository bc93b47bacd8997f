"""``gridhub bench client``: the produce path of aiokafka (what Faust uses) against librdkafka.

Issue 14 item 8 asks whether a C client (``confluent-kafka``, i.e. librdkafka) would make the
hub's produce path cheaper.  This measures it on the real broker, same machine, same records,
with the hub's producer settings on both sides:

* ``acks=all`` (``streams/app.py``: ``producer_acks=-1``);
* ``linger = settings.producer_linger_ms`` (``GRIDHUB_PRODUCER_LINGER_MS``);
* no idempotence: the hub is at-least-once without transactions, and Faust turns idempotence on
  only inside a transaction (``faust/transport/drivers/aiokafka.py``, ``_settings_extra``);
* the same 16 KiB batch size (aiokafka's and Faust's default ``max_batch_size``; librdkafka's own
  default is 1 MB, set down to match);
* librdkafka with ``partitioner: murmur2_random``: the Java client's partitioner, which aiokafka's
  ``DefaultPartitioner`` implements too, so a key lands in the same partition whichever client
  wrote it and co-partitioning (fusion's ``reports`` + ``case-lifecycle``, the tables'
  changelogs) holds.  librdkafka's default (``consistent_random``, CRC32) would break it;
  :func:`confluent_partitions` and tests/bench/test_client_partitioner.py check the mapping.

Five variants per record size, one after the other in this process:

``aiokafka``
    ``await producer.send(...)`` per record, then all the futures gathered: what a Faust agent
    does through ``streams/delivery.py`` (``Deliveries.send`` / ``confirm``), on asyncio's loop.
``aiokafka-uvloop``
    The same on uvloop's loop (``GRIDHUB_EVENT_LOOP=uvloop``, the worker's default).
``confluent``
    ``produce()`` with a delivery callback, ``poll(0)`` now and then, ``flush()``: the C client
    at its cheapest, with no asyncio future per record.
``confluent-asyncio``
    The same, plus an asyncio future per record resolved by the delivery callback: a drop-in for
    ``Deliveries.track`` (the price of bridging into Faust record by record).
``confluent-batched``
    A delivery counter instead of futures, awaited once per 500 records: what a librdkafka-backed
    ``Deliveries.confirm`` of a per-partition batch would need, and no more.

Figures: records/s (wall clock) and CPU ms per record (user + system of this whole process,
``time.process_time``, which includes librdkafka's own threads).  Nothing is asserted.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import click

from gridhub.core.logging import get_logger
from gridhub.core.settings import Settings, get_settings

log = get_logger(__name__)

#: aiokafka's (and so Faust's) default ``max_batch_size``: the hub does not set it.
HUB_BATCH_BYTES = 16_384
#: Records produced between two confirmations in ``confluent-batched``: settings.batch_max_events' default.
BATCH_EVENTS = 500
#: The issue's "small" record: about a heartbeat or a case event.
SMALL_BYTES = 300
#: The issue's "typical" record: a 1.5 KB Avro report (the simulator's reports are padded up to it).
TYPICAL_BYTES = 1_500


@dataclass
class Record:
    key: bytes
    value: bytes


def confluent_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """librdkafka settings equal to the hub's aiokafka producer (see the module doc)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "acks": "all",
        "linger.ms": settings.producer_linger_ms,
        "enable.idempotence": False,
        "batch.size": HUB_BATCH_BYTES,
        # The Java client's murmur2 (aiokafka's DefaultPartitioner); random only for a null key, like them.
        "partitioner": "murmur2_random",
    }
    if settings.kafka_security_protocol != "PLAINTEXT":  # the same cluster credentials as the hub's clients
        conf["security.protocol"] = settings.kafka_security_protocol
        if settings.kafka_security_protocol.startswith("SASL"):
            conf.update({"sasl.mechanism": settings.kafka_sasl_mechanism, "sasl.username": settings.kafka_sasl_username,
                         "sasl.password": settings.secret("kafka_sasl_password")})
        if settings.kafka_ssl_cafile:
            conf["ssl.ca.location"] = settings.kafka_ssl_cafile
    conf.update(extra)
    return conf


def aiokafka_partition(key: bytes, partitions: int) -> int:
    """The partition aiokafka's (and Faust's) default partitioner gives ``key``."""
    from aiokafka.partitioner import DefaultPartitioner

    every = list(range(partitions))
    return int(DefaultPartitioner()(key, every, every))


def confluent_partitions(settings: Settings, topic: str, keys: list[bytes]) -> dict[bytes, int]:
    """Produce one record per key with librdkafka (``murmur2_random``) and return the partition
    the broker acknowledged for each: the real client's choice, not a re-implementation."""
    from confluent_kafka import Producer

    chosen: dict[bytes, int] = {}
    errors: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            chosen[bytes(msg.key())] = int(msg.partition())

    producer = Producer(confluent_config(settings))
    for key in keys:
        _produce(producer, topic, key, b"", delivered)
    producer.flush(60)
    if errors:
        raise RuntimeError(f"{len(errors)} records refused, e.g. {errors[0]}")
    return chosen


def _produce(producer: Any, topic: str, key: bytes, value: bytes, on_delivery: Callable[[Any, Any], None]) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
            return
        except BufferError:  # librdkafka's local queue is full: serve delivery reports, then retry
            producer.poll(0.05)


def records(kind: str, count: int, seed: int) -> list[Record]:
    """``count`` records: ``small`` = 300 B values, ``typical`` = real Avro reports of the simulator
    (``normalize`` on simulated documents), their free text lengthened to about 1.5 KB.

    Keys are county codes, as the hub keys reports and cases (90 distinct).
    """
    from gridhub.core.codec import codec
    from gridhub.core.reference import divisions

    rng = random.Random(seed)
    codes = sorted(divisions().counties)
    if kind == "small":
        return [Record(rng.choice(codes).encode(), rng.randbytes(SMALL_BYTES)) for _ in range(count)]
    from bench.fusion import normalised

    avro = codec("Report")
    reports = [n.report for _, n in normalised(seed, 20.0, 600) if n is not None and n.report is not None]
    out: list[Record] = []
    for i in range(count):
        report = dict(reports[i % len(reports)])
        raw = avro.encode(report)
        if len(raw) < TYPICAL_BYTES:
            # Lengthen the text (UTF-8 Chinese: 3 bytes a character) so the record is about 1.5 KB.
            report["text"] = str(report["text"]) + "情况" * ((TYPICAL_BYTES - len(raw)) // 6)
            raw = avro.encode(report)
        out.append(Record(str(report["county_code"]).encode(), raw))
    return out


def _measure(fn: Callable[[], None]) -> tuple[float, float]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - wall0, time.process_time() - cpu0


async def _aiokafka_run(settings: Settings, topic: str, recs: list[Record]) -> tuple[float, float]:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=settings.producer_linger_ms, max_batch_size=HUB_BATCH_BYTES,
                                enable_idempotence=False, **settings.kafka_client_options())
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"warm-up", key=b"0")  # metadata + connection, not timed
        cpu0, wall0 = time.process_time(), time.perf_counter()
        futures = [await producer.send(topic, r.value, key=r.key) for r in recs]
        await asyncio.gather(*futures)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
    finally:
        await producer.stop()
    return wall, cpu


def run_aiokafka(settings: Settings, topic: str, recs: list[Record]) -> tuple[float, float]:
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(_aiokafka_run(settings, topic, recs))


def run_aiokafka_uvloop(settings: Settings, topic: str, recs: list[Record]) -> tuple[float, float]:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_aiokafka_run(settings, topic, recs))


def run_confluent(settings: Settings, topic: str, recs: list[Record]) -> tuple[float, float]:
    from confluent_kafka import Producer

    producer = Producer(confluent_config(settings))
    errors: list[Any] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err)

    _produce(producer, topic, b"0", b"warm-up", delivered)
    producer.flush(30)

    def body() -> None:
        for i, r in enumerate(recs):
            _produce(producer, topic, r.key, r.value, delivered)
            if i % 1000 == 0:
                producer.poll(0)
        producer.flush(120)

    wall, cpu = _measure(body)
    if errors:
        raise click.ClickException(f"confluent-kafka: {len(errors)} records refused, e.g. {errors[0]}")
    return wall, cpu


async def _confluent_asyncio_run(settings: Settings, topic: str, recs: list[Record]) -> tuple[float, float]:
    """A future per record, resolved by librdkafka's delivery callback, gathered at the end.

    Everything on the loop's thread: ``poll(0)`` (never blocking) serves the delivery reports
    there, so a callback resolves its future directly, with no thread hand-over per record.
    """
    from confluent_kafka import KafkaException, Producer

    loop = asyncio.get_running_loop()
    producer = Producer(confluent_config(settings))
    pending = [0]

    def resolver(fut: asyncio.Future[Any]) -> Callable[[Any, Any], None]:
        pending[0] += 1

        def done(err: Any, msg: Any) -> None:
            pending[0] -= 1
            if not fut.done():
                fut.set_exception(KafkaException(err)) if err is not None else fut.set_result(msg.offset())
        return done

    async def settle(futures: list[asyncio.Future[Any]]) -> None:
        while pending[0]:
            if not producer.poll(0):
                await asyncio.sleep(settings.producer_linger_ms / 1000)  # the next batch is a linger away

    warm: asyncio.Future[Any] = loop.create_future()
    _produce(producer, topic, b"0", b"warm-up", resolver(warm))
    await settle([warm])
    cpu0, wall0 = time.process_time(), time.perf_counter()
    futures: list[asyncio.Future[Any]] = []
    for i, r in enumerate(recs):
        fut = loop.create_future()
        _produce(producer, topic, r.key, r.value, resolver(fut))
        futures.append(fut)
        if i % 1000 == 0:
            producer.poll(0)
    await settle(futures)
    await asyncio.gather(*futures)
    return time.perf_counter() - wall0, time.process_time() - cpu0


async def _confluent_batched_run(settings: Settings, topic: str, recs: list[Record]) -> tuple[float, float]:
    """One awaitable per batch instead of one future per record: all that ``Deliveries.confirm``
    needs to know is "every record of this batch acknowledged, or the first refusal"."""
    from confluent_kafka import KafkaException, Producer

    producer = Producer(confluent_config(settings))
    state = {"pending": 0}
    refused: list[Any] = []

    def delivered(err: Any, msg: Any) -> None:
        state["pending"] -= 1
        if err is not None:
            refused.append(err)

    async def confirm() -> None:
        while state["pending"]:
            if not producer.poll(0):
                await asyncio.sleep(settings.producer_linger_ms / 1000)  # the next batch is a linger away
        if refused:
            raise KafkaException(refused[0])

    state["pending"] += 1
    _produce(producer, topic, b"0", b"warm-up", delivered)
    await confirm()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for start in range(0, len(recs), BATCH_EVENTS):
        for r in recs[start:start + BATCH_EVENTS]:
            state["pending"] += 1
            _produce(producer, topic, r.key, r.value, delivered)
        producer.poll(0)
    await confirm()
    return time.perf_counter() - wall0, time.process_time() - cpu0


def run_confluent_batched(settings: Settings, topic: str, recs: list[Record]) -> tuple[float, float]:
    return asyncio.run(_confluent_batched_run(settings, topic, recs))


def run_confluent_asyncio(settings: Settings, topic: str, recs: list[Record]) -> tuple[float, float]:
    return asyncio.run(_confluent_asyncio_run(settings, topic, recs))


CLIENTS: dict[str, Callable[[Settings, str, list[Record]], tuple[float, float]]] = {
    "aiokafka": run_aiokafka,
    "aiokafka-uvloop": run_aiokafka_uvloop,
    "confluent": run_confluent,
    "confluent-asyncio": run_confluent_asyncio,
    "confluent-batched": run_confluent_batched,
}


def create_topic(settings: Settings, name: str, partitions: int) -> str:
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = settings.topic(name)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_client_options())
    try:
        admin.create_topics([NewTopic(topic, partitions, settings.replication_factor)])
    finally:
        admin.close()
    return topic


def run_client_bench(count: int, seed: int, as_json: bool) -> None:
    from gridhub.core.kafka_admin import delete_namespace

    base = get_settings()
    settings = base.model_copy(update={"namespace": f"benchc{uuid.uuid4().hex[:6]}"})
    topic = create_topic(settings, "bench.client", settings.partitions)
    result: dict[str, Any] = {"namespace": settings.namespace, "records": count, "partitions": settings.partitions,
                              "linger_ms": settings.producer_linger_ms, "acks": "all", "batch_bytes": HUB_BATCH_BYTES,
                              "runs": {}}
    try:
        for kind in ("small", "typical"):
            recs = records(kind, count, seed)
            mean = sum(len(r.value) for r in recs) / len(recs)
            figures: dict[str, Any] = {"mean_value_bytes": round(mean)}
            for name, run in CLIENTS.items():
                wall, cpu = run(settings, topic, recs)
                figures[name] = {"records_per_s": round(count / wall), "cpu_ms_per_record": round(cpu * 1000 / count, 4),
                                 "seconds": round(wall, 3)}
                log.info("client_bench", kind=kind, client=name, **figures[name])
            base_cpu = figures["aiokafka"]["cpu_ms_per_record"]
            for name in CLIENTS:
                figures[name]["cpu_vs_aiokafka"] = round(figures[name]["cpu_ms_per_record"] / base_cpu, 3)
            result["runs"][kind] = figures
    finally:
        delete_namespace(settings)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{count} records per run to a {settings.partitions}-partition topic; acks=all, linger "
               f"{settings.producer_linger_ms} ms, {HUB_BATCH_BYTES} B batches, no idempotence")
    for kind, figures in result["runs"].items():
        click.echo(f"{kind} records ({figures['mean_value_bytes']} B values):")
        for name in CLIENTS:
            f = figures[name]
            click.echo(f"  {name:<18} {f['records_per_s']:>9} records/s  {f['cpu_ms_per_record']:.4f} ms CPU/record "
                       f"({f['cpu_vs_aiokafka']:.2f} x aiokafka)")
