"""The ClickHouse sink against the real Kafka and ClickHouse: redelivery, a SIGKILL mid-load, an outage.

The sink runs as ``gridhub run --only clickhouse`` in a subprocess; the facts
are produced by the test with gridhub.core.codec (the synthetic module writes what
fusion, routing and the lifecycle would).  The reference for "a single clean
load" is the same rows inserted once, directly, into a database of its own.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

import pytest

from connectors.clickhouse.rows import TopicMap
from connectors.clickhouse.backend import DriverBackend
from connectors.clickhouse.migrate import migrate
from gridhub.clickhouse.report import run_queries
from gridhub.clickhouse.synthetic import FactSet, encoded, generate, produce, rows
from gridhub.core.settings import Settings
from helpers.ledger import assert_no_loss, collect, expect, ref_key
from helpers.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOW = int(time.time())
#: Small batches and quick flushes, so a load takes many flush-commit rounds and a kill lands inside one.
FAST = {"GRIDHUB_CH_SINK_BATCH_ROWS": "200", "GRIDHUB_CH_SINK_FLUSH_SECONDS": "0.3",
        "GRIDHUB_CH_SINK_BACKOFF_MAX": "4"}
ID_COLUMNS = {"reports": "report_id", "cases": "case_id", "case_events": "event_id", "dispatches": "dispatch_id"}


def expected_ids(facts: FactSet) -> dict[str, int]:
    data = rows(facts, Settings())
    return {t: len({r[col] for r in data[t]}) for t, col in ID_COLUMNS.items()}


def fact_keys(facts: FactSet) -> dict[str, set[str]]:
    """The ledger's expected keys of the ClickHouse hops (tests/helpers/ledger.py) for ``facts``."""
    data = rows(facts, Settings())
    return {"ch.reports": {ref_key(r["source"], r["source_ref"]) for r in data["reports"]},
            "ch.cases": {r["case_id"] for r in data["cases"]},
            "ch.dispatches": {f"{r['case_id']}|{r['agency']}" for r in data["dispatches"]}}


def ledger_check(settings: Settings, client: Any, facts: FactSet, title: str) -> None:
    """0 lost, 0 duplicated under a new id in reports / cases / dispatches (the per-hop table printed)."""
    assert_no_loss(expect(collect(settings, hops=(), clickhouse=client, title=title), given=fact_keys(facts)))


def final_counts(client: Any, database: str) -> dict[str, int]:
    out = {}
    for table in ID_COLUMNS:
        try:
            out[table] = client.execute(f"SELECT count() FROM {database}.{table} FINAL")[0][0]
        except Exception:  # the sink has not created its tables yet
            out[table] = -1
    return out


def consumer_lag(settings: Settings) -> int | None:
    """Records of the fact topics not yet committed by the sink's group (None: no commit yet)."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    group = f"{settings.faust_app_id}.clickhouse-sink"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        topics = [t for t in TopicMap(settings).topics if t in set(admin.list_topics())]
        tps = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or [])]
        committed = admin.list_group_offsets(group).get(group) or {}
        if not committed:
            return None
        ends = consumer.end_offsets(tps)
        return sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())
    finally:
        consumer.close()
        admin.close()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_redelivery_and_a_killed_sink_leave_every_answer_as_a_clean_load(
        settings: Settings, kafka_producer: Any, worker: Any, ch_client: Any) -> None:
    facts = generate(1200, NOW * 1000, seed=21, townships=4, agencies=3)
    records = encoded(facts, settings)
    want = expected_ids(facts)
    db = settings.ch_database

    produce(kafka_producer, records)
    w = worker(settings, only="clickhouse", env=FAST, wait=False)
    # Kill it while it is loading: some rows in ClickHouse, not all of them, offsets partly committed.
    partial: dict[str, int] = {}

    def mid_load() -> bool:
        nonlocal partial
        partial = final_counts(ch_client, db)
        return 0 < partial["case_events"] < want["case_events"]

    wait_for(mid_load, 120, "the first rows of the load", step=0.05)
    w.kill()
    assert partial["case_events"] < want["case_events"]

    produce(kafka_producer, records)  # the whole data set again: a redelivery / replay
    w.start()
    wait_for(lambda: final_counts(ch_client, db) == want and consumer_lag(settings) == 0, 240,
             "the sink to load everything and commit")
    raw = ch_client.execute(f"SELECT count() FROM {db}.case_events")[0][0]

    reference = f"{db}_ref_{uuid.uuid4().hex[:6]}"
    server = DriverBackend.from_settings(settings)
    try:
        migrate(server, reference)
        for table, table_rows in rows(facts, settings).items():
            server.insert(f"{reference}.{table}", table_rows)
        clean = run_queries(DriverBackend.from_settings(settings, database=reference), NOW)
        clean_counts = final_counts(ch_client, reference)
    finally:
        server.execute(f"DROP DATABASE IF EXISTS {reference}")
        server.close()
    loaded = run_queries(DriverBackend.from_settings(settings, database=db), NOW)

    assert raw >= want["case_events"]  # duplicates may already be merged away, never fewer rows
    ledger_check(settings, ch_client, facts, "clickhouse sink killed mid-load, then the whole set again")
    assert final_counts(ch_client, db) == clean_counts == want
    assert all(answer.rows for answer in clean)
    for got, expected in zip(loaded, clean, strict=True):
        assert got == expected, got.query.name
    assert "sink_runner.flushed" in w.log_text()


def test_clickhouse_outage_the_sink_waits_retries_and_catches_up(
        settings: Settings, kafka_producer: Any, worker: Any, tmp_path: Any) -> None:
    from clickhouse_driver import Client

    from gridhub.infra.clickhouse import ClickHouseServer

    tcp, http = free_port(), free_port()
    private = settings.model_copy(update={"clickhouse_port": tcp, "clickhouse_http_port": http})
    server = ClickHouseServer(private.model_copy(update={"run_dir": tmp_path}), name="ch-outage", tcp_port=tcp,
                              http_port=http, interserver_http_port=free_port())

    def up() -> None:
        server.start()
        wait_for(server.healthy, 60, "the private ClickHouse to start")

    began = time.monotonic()
    facts = generate(400, NOW * 1000, seed=33, townships=4, agencies=3)
    records = encoded(facts, settings)
    want = expected_ids(facts)
    half = len(records) // 2
    client = Client("127.0.0.1", port=tcp, connect_timeout=2, send_receive_timeout=10)
    up()
    try:
        w = worker(private, only="clickhouse", env=FAST)
        produce(kafka_producer, records[:half])
        wait_for(lambda: consumer_lag(settings) == 0, 120, "the first half to be loaded")
        first = final_counts(client, settings.ch_database)
        assert 0 < sum(first.values()) < sum(want.values())
        client.disconnect()

        server.stop()
        log_offset = len(w.log_text())
        produce(kafka_producer, records[half:])
        time.sleep(30)  # the outage
        assert w.running(), w.log_tail()
        lag_during = consumer_lag(settings)
        assert lag_during is not None and lag_during >= len(records) - half  # nothing committed while down
        assert "sink_runner.retry" in w.log_text(log_offset)

        up()
        back = time.monotonic()
        wait_for(lambda: final_counts(client, settings.ch_database) == want and consumer_lag(settings) == 0, 120,
                 "the sink to catch up after the outage")
        assert w.running()
        print(f"clickhouse down 30 s: caught up {time.monotonic() - back:.1f} s after it returned; "
              f"test took {time.monotonic() - began:.0f} s")
        ledger_check(settings, client, facts, "clickhouse down 30 s")
    finally:
        client.disconnect()
        server.stop()


def test_bad_records_go_to_the_dlq_with_their_bytes_and_land_in_dead_letters(
        settings: Settings, kafka_producer: Any, worker: Any, consume: Any, ch_client: Any) -> None:
    from gridhub.core.dlq import parse_dead_letter_headers

    facts = generate(20, NOW * 1000, seed=4, townships=2, agencies=2)
    good = encoded(facts, settings)
    bad = [(settings.topic("reports.linked"), b"k1", b'{"not": "avro"}'),
           (settings.topic("case-events"), b"k2", b"\xc3\x01" + b"\x00" * 12)]
    produce(kafka_producer, good + bad)
    worker(settings, only="clickhouse", env=FAST)
    letters = [r for r in consume("dlq", 2, timeout=60)]
    sink_letters = {r.value: parse_dead_letter_headers(r.headers) for r in letters}
    assert set(sink_letters) == {value for _, _, value in bad}
    assert all(info.stage == "sink" and info.reason and info.offset is not None for info in sink_letters.values())
    wait_for(lambda: final_counts(ch_client, settings.ch_database) == expected_ids(facts)
             and ch_client.execute(f"SELECT count() FROM {settings.ch_database}.dead_letters FINAL")[0][0] == 2,
             120, "the good facts and the two dead letters in ClickHouse")
    stored = ch_client.execute(f"SELECT stage, source_topic, value FROM {settings.ch_database}.dead_letters FINAL "
                               "ORDER BY source_topic")
    assert [(stage, topic) for stage, topic, _ in stored] == [
        ("sink", settings.topic("case-events")), ("sink", settings.topic("reports.linked"))]
    assert stored[1][2] == '{"not": "avro"}'


def test_sigterm_flushes_what_is_buffered_and_commits_it(
        settings: Settings, kafka_producer: Any, worker: Any, ch_client: Any) -> None:
    facts = generate(30, NOW * 1000, seed=8, townships=2, agencies=2)
    # A flush only every 10 minutes and never by size: what is loaded at the end came from the final flush.
    produce(kafka_producer, encoded(facts, settings))  # first, so every topic exists when the sink subscribes
    w = worker(settings, only="clickhouse", env={"GRIDHUB_CH_SINK_FLUSH_SECONDS": "600",
                                                 "GRIDHUB_CH_SINK_BATCH_ROWS": "1000000"})
    time.sleep(8)  # fetched, not flushed
    assert final_counts(ch_client, settings.ch_database)["case_events"] == 0
    assert w.stop() == 0
    assert final_counts(ch_client, settings.ch_database) == expected_ids(facts)
    assert consumer_lag(settings) == 0
