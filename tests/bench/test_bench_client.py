"""bench/client.py: librdkafka with ``murmur2_random`` puts every key where aiokafka (Faust) puts it.

Why it matters: the hub relies on co-partitioning (fusion reads ``reports`` and ``case-lifecycle``
of one county in one partition, and a Faust table's changelog partition is the input's).  If a
librdkafka producer wrote some of those records, a key would have to land in the partition
aiokafka's ``DefaultPartitioner`` (the Java client's murmur2) gives it.  The partitions compared
are the ones the broker acknowledged for records the real librdkafka client produced.
"""

from __future__ import annotations

import random
import uuid

import pytest

from bench.client import aiokafka_partition, confluent_config, confluent_partitions, create_topic, records
from gridhub.core.settings import Settings

pytestmark = pytest.mark.integration

PARTITIONS = 12  # the hub's topic partition count (GRIDHUB_PARTITIONS default)


def _keys(n: int) -> list[bytes]:
    """Keys shaped like the hub's (county codes, case ids, device ids) plus random bytes of any length."""
    rng = random.Random(14)
    keys: set[bytes] = {f"33{c:04d}".encode() for c in range(100)}
    while len(keys) < n:
        shape = len(keys) % 3
        if shape == 0:
            keys.add(str(uuid.UUID(int=rng.getrandbits(128))).encode())
        elif shape == 1:
            keys.add(f"dev-{rng.randrange(10**8):08d}".encode())
        else:
            keys.add(rng.randbytes(rng.randrange(1, 64)))
    return sorted(keys)


def test_murmur2_random_matches_aiokafka_for_10k_keys(settings: Settings) -> None:
    topic = create_topic(settings, "bench.partitioner", PARTITIONS)
    keys = _keys(10_000)
    chosen = confluent_partitions(settings, topic, keys)
    assert set(chosen) == set(keys)
    expected = {k: aiokafka_partition(k, PARTITIONS) for k in keys}
    mismatched = {k: (chosen[k], expected[k]) for k in keys if chosen[k] != expected[k]}
    assert mismatched == {}
    assert len(set(expected.values())) == PARTITIONS  # the keys spread over every partition


def test_librdkafka_default_partitioner_would_break_co_partitioning(settings: Settings) -> None:
    """The control: without ``partitioner: murmur2_random`` (librdkafka's default is CRC32-based),
    most keys land elsewhere, so the setting is what makes the comparison above pass."""
    topic = create_topic(settings, "bench.partitioner", PARTITIONS)
    keys = _keys(1_000)
    conf = confluent_config(settings)
    conf.pop("partitioner")
    from confluent_kafka import Producer

    chosen: dict[bytes, int] = {}
    producer = Producer(conf)
    for key in keys:
        producer.produce(topic, value=b"", key=key,
                         on_delivery=lambda err, msg: chosen.__setitem__(bytes(msg.key()), msg.partition()))
    producer.flush(60)
    assert set(chosen) == set(keys)
    same = sum(1 for k in keys if chosen[k] == aiokafka_partition(k, PARTITIONS))
    assert same < len(keys) // 2


def test_records_have_the_sizes_the_benchmark_names() -> None:
    small = records("small", 50, seed=1)
    typical = records("typical", 50, seed=1)
    assert {len(r.value) for r in small} == {300}
    assert all(1_300 <= len(r.value) <= 1_700 for r in typical)
    assert all(len(r.key) == 6 and r.key.startswith(b"33") for r in small + typical)
