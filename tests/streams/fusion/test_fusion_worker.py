"""Fusion under a real Kafka: crash, restart and two workers give the same report->case mapping.

The reports are simulated traffic normalised in process (the ingest stage is not under test
here), produced to ``reports`` keyed by county as ingest does.  The reference mapping is the
pure engine run in process on the same reports; a worker run must reproduce it exactly.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import pytest

from gridhub.core.codec import codec
from gridhub.core.settings import Settings
from gridhub.core.topics import DLQ, REPORTS, REPORTS_LINKED

pytestmark = pytest.mark.integration

COUNTIES = ("330502", "330106")  # 吴兴区, 西湖区: two counties, dense enough to fuse often


def simulated_reports(seed: int = 7, duration: float = 5400.0) -> list[dict[str, Any]]:
    from gridhub.evaluation.fusion import doc_time_ms
    from gridhub.simulate.generator import devices_for, generate
    from streams.ingest.normalize import Rejected, normalize

    args = (seed, 0.6, duration)
    registry = {d.device_id: d.registry_row() for d in devices_for(*args, counties=COUNTIES)}
    out, clock = [], 0
    for rec in generate(*args, counties=COUNTIES):
        clock = max(clock + 1, doc_time_ms(rec.source, rec.doc) or clock)
        try:
            n = normalize(rec.source, rec.value(), registry=registry, received_at_ms=clock, pii_key=b"t")
        except Rejected:
            continue
        if n.report is not None:
            out.append(n.report)
    return out


def reference_mapping(reports: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    from streams.fusion.config import load_config
    from streams.fusion.engine import FusionEngine
    from streams.fusion.state import MemoryKV

    engine, kv, mapping = FusionEngine(load_config()), MemoryKV(), {}
    for report in reports:
        for linked in engine.process_report(kv, report).linked:
            mapping[(linked["source"], linked["source_ref"])] = linked["case_id"]
    return mapping


def produce(producer: Any, settings: Settings, reports: list[dict[str, Any]]) -> None:
    name = settings.topic(REPORTS)
    for report in reports:
        producer.send(name, key=report["county_code"].encode(), value=codec("Report").encode(report))
    producer.flush()


def linked_mapping(consume: Callable[..., list[Any]], expected: set[tuple[str, str]],
                   timeout: float = 180.0) -> dict[tuple[str, str], set[str]]:
    """Every case id each report was linked to on reports.linked (read until all expected are there)."""
    deadline = time.monotonic() + timeout
    seen: dict[tuple[str, str], set[str]] = {}
    while time.monotonic() < deadline:
        seen = {}
        # n=0: read for the whole timeout; the topic holds redelivered duplicates, so stopping
        # after len(expected) records could miss whole partitions
        for rec in consume(REPORTS_LINKED, 0, timeout=12):
            report = codec("Report").decode(rec.value)
            assert rec.key.decode() == report["case_id"]
            seen.setdefault((report["source"], report["source_ref"]), set()).add(report["case_id"])
        if expected <= set(seen):
            break
        time.sleep(2)
    return seen


@pytest.fixture(scope="module")
def traffic() -> tuple[list[dict[str, Any]], dict[tuple[str, str], str]]:
    reports = simulated_reports()
    return reports, reference_mapping(reports)


def test_sigkill_mid_stream_gives_the_same_cases(settings: Settings, worker: Any, kafka_producer: Any,
                                                 consume: Any, traffic: Any) -> None:
    reports, reference = traffic
    assert len(reports) > 300 and len(set(reference.values())) < len(reference)  # fusion has work to do
    w = worker(settings, only="fusion")
    half = len(reports) // 2
    produce(kafka_producer, settings, reports[:half])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(consume(REPORTS_LINKED, half // 3, timeout=5)) < half // 3:
        pass
    w.kill()  # mid-stream: whatever was not committed is redelivered after the restart
    produce(kafka_producer, settings, reports[half:])
    w.start()
    mapping = linked_mapping(consume, set(reference))
    assert set(mapping) == set(reference)
    assert {k: v for k, v in mapping.items() if len(v) != 1} == {}  # never re-linked elsewhere
    assert {k: next(iter(v)) for k, v in mapping.items()} == reference


def test_uninterrupted_run_in_another_namespace_matches(worker: Any, kafka_producer: Any, consume: Any,
                                                        settings: Settings, traffic: Any) -> None:
    """The reference mapping above is what an uninterrupted worker produces too."""
    reports, reference = traffic
    worker(settings, only="fusion")
    produce(kafka_producer, settings, reports)
    mapping = linked_mapping(consume, set(reference))
    assert {k: next(iter(v)) for k, v in mapping.items() if len(v) == 1} == reference


def test_two_workers_in_one_group_match_one_worker(worker: Any, kafka_producer: Any, consume: Any,
                                                   settings: Settings, traffic: Any, tmp_path: Path) -> None:
    reports, reference = traffic
    # Each worker its own run dir, so its own RocksDB directory, as on two hosts (two workers
    # sharing one directory would lock each other's partition databases).
    first = worker(settings, only="fusion", env={"GRIDHUB_RUN_DIR": str(tmp_path / "w1")})
    produce(kafka_producer, settings, reports[: len(reports) // 3])
    # joins mid-stream: a rebalance moves partitions, and their state through the changelog
    second = worker(settings, only="fusion", env={"GRIDHUB_RUN_DIR": str(tmp_path / "w2")})
    produce(kafka_producer, settings, reports[len(reports) // 3:])
    mapping = linked_mapping(consume, set(reference))
    assert first.running() and second.running()
    assert {k: v for k, v in mapping.items() if len(v) != 1} == {}
    assert {k: next(iter(v)) for k, v in mapping.items()} == reference


def test_malformed_input_is_dead_lettered_and_the_partition_moves_on(worker: Any, kafka_producer: Any,
                                                                     consume: Any, settings: Settings,
                                                                     traffic: Any) -> None:
    reports, _ = traffic
    first = next(r for r in reports if r["kind"] == "incident")  # an orphan recover links to nothing
    worker(settings, only="fusion")
    bad = b"\xc3\x01not-a-report"
    kafka_producer.send(settings.topic(REPORTS), key=first["county_code"].encode(), value=bad)
    no_kind = {**first, "kind": "heartbeat"}
    kafka_producer.send(settings.topic(REPORTS), key=first["county_code"].encode(),
                        value=codec("Report").encode(no_kind))
    produce(kafka_producer, settings, [first])
    dead = consume(DLQ, 2, timeout=60)
    assert len(dead) == 2 and bad in [r.value for r in dead]  # the original bytes, untouched
    headers = [dict(r.headers) for r in dead]
    assert all(h["error.stage"] == b"fusion" for h in headers)
    assert any(b"unknown report kind" in h["error.reason"] for h in headers)
    linked = consume(REPORTS_LINKED, 1, timeout=60)
    assert [codec("Report").decode(r.value)["source_ref"] for r in linked] == [first["source_ref"]]
