"""Two workers per domain, one SIGKILLed at three points mid-stream (issue 14 item 6), checked by the ledger.

For each domain of ``gridhub run --only`` (ingest, fusion, routing, the ClickHouse sink), two
workers join one consumer group, each with its own state directory (two workers on one host must
not share a RocksDB directory: docs/scaling.md).  The domain's inputs are produced at a steady
pace by a background thread, so the workers always have uncommitted work in hand, and one worker
is SIGKILLed when the domain's outputs reach 10 %, 45 % and 80 % of what is expected (counted, not
timed), alternately the second and the first; the killed worker restarts at once and rejoins the
group while the stream goes on (a rebalance on the way out and one on the way back in).

Then, within a bounded wait (each step fails with a message naming what it waited for):

* the group committed every input (lag 0): nothing hangs;
* the ledger (tests/helpers/ledger.py) shows, at every hop the domain writes, 0 lost and 0
  duplicated under a new id.  Redelivered records (the same id again) are allowed.

What "expected" is, per domain:

* ingest: every valid raw document becomes a report (normalize() of the same bytes says which);
* fusion: the reports fusion links, and, as the crash-free reference, the same reports processed in
  order by the pure engine (streams/fusion/engine.py) in process: the same report -> case mapping,
  so a second case for one incident shows as a duplicate;
* routing: every (case, agency) pair the rules plan (streams/routing/rules.py), on ``dispatches`` and
  on the agency's own ``dispatch.<agency>`` topic, each pair under one dispatch id;
* ClickHouse sink: every fact row of the synthetic set, in ``reports`` / ``cases`` / ``dispatches``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from gridhub.core.codec import codec
from gridhub.core.settings import Settings
from gridhub.core.topics import CASES, DISPATCHES, RAW, REPORTS, REPORTS_LINKED
from gridhub.simulate import generate
from helpers.kafka import TopicReader
from helpers.ledger import Ledger, assert_no_loss, collect, expect, incidents, observe, ref_key
from helpers.routing import make_case
from streams.ingest.normalize import Rejected, normalize

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: Kill points, as fractions of the expected outputs: after the first outputs, mid-way, near the end.
KILL_AT = (0.10, 0.45, 0.80)
#: Inputs are produced over this many seconds: long enough for three kills and two rejoins to land
#: inside the stream on this 2-core box (a worker restarts in ~10-20 s here), short enough to keep
#: each case near 90 s.
PRODUCE_SECONDS = 40.0
#: Faust's group session timeout is 60 s (faust-streaming's default, kept in production): the group
#: notices a SIGKILLed member only then.  10 s (heartbeat every second) lets three kills fit in ~90 s;
#: the takeover path is the same.  (The ClickHouse sink's aiokafka consumer already uses 10 s.)
FAST_GROUP = {"BROKER_SESSION_TIMEOUT": "10", "BROKER_HEARTBEAT_INTERVAL": "1",
              # a partition unread for 30 s stops its worker (exit 70) for a restart (streams/health.py)
              "GRIDHUB_PARTITION_STALL_SECONDS": "30"}
#: Counties hashing to six different partitions (of 12), as tests/scale/test_two_workers.py.
COUNTIES = ("330502", "330503", "330902", "331081", "330381", "330110")


@dataclass
class Domain:
    """One domain's inputs, how to count its progress, and its ledger."""

    only: str
    inputs: list[tuple[str, bytes, bytes]]  # (contract topic, key, value), produced in this order
    expected_outputs: int
    progress: Callable[[Settings, Any], int]  # outputs so far
    ledger: Callable[[Settings, Any], Ledger]
    group: Callable[[Settings], str]
    input_topics: list[str]
    env: dict[str, str] = field(default_factory=dict)


# --- the domains' inputs and expectations --------------------------------------------------------


def ingest_domain() -> Domain:
    start = int(time.time() * 1000) - 15 * 60_000
    inputs, refs = [], set()
    for rec in generate(11, 20.0, 1800.0, start_ms=start, counties=COUNTIES):
        if rec.source == "sensors":  # sensors need the device registry: fusion's and the bridge's tests cover them
            continue
        value = rec.value()
        try:
            out = normalize(rec.source, value, received_at_ms=int(time.time() * 1000), pii_key=b"k")
        except Rejected:
            continue
        if out.report is not None:
            refs.add(ref_key(rec.source, out.report["source_ref"]))
        inputs.append((RAW[rec.source], rec.source.encode(), value))
        if len(inputs) == 900:
            break

    def ledger(settings: Settings, _: Any) -> Ledger:
        return expect(collect(settings, hops=("reports",), title="ingest x2"), source_refs=refs)

    return Domain("ingest", inputs, len(refs), _counter(REPORTS), ledger, lambda s: s.faust_app_id,
                  sorted(set(RAW.values())), env={"GRIDHUB_PII_KEY": "k"})


def fusion_domain() -> Domain:
    """Pre-normalised reports (ingest's order per partition is not the point) an hour ahead of now, so
    no deadline or expiry depends on when the test runs; the reference is the pure engine."""
    from gridhub.simulate import devices_for
    from streams.fusion.config import load_config
    from streams.fusion.engine import FusionEngine
    from streams.fusion.state import MemoryKV

    seed, rate, duration = 23, 6.0, 300.0  # ~1,700 records -> ~800 reports: a minute of work here
    begin = int(time.time() * 1000) + 3600_000
    registry = {d.device_id: d.registry_row()
                for d in devices_for(seed, rate, duration, start_ms=begin, counties=COUNTIES)}
    engine, kv = FusionEngine(load_config()), MemoryKV()
    reference, inputs, kinds = Ledger(title="fusion, crash-free reference (pure engine)"), [], {}
    for rec in generate(seed, rate, duration, start_ms=begin, counties=COUNTIES):
        try:
            result = normalize(rec.source, rec.value(), registry=registry, received_at_ms=rec.at_ms, pii_key=b"k")
        except Rejected:
            continue
        report = result.report
        if report is None:
            continue
        key = ref_key(report["source"], report["source_ref"])
        kinds[key] = report["kind"]
        observe(reference, "reports", [(key, report["report_id"])])
        inputs.append((REPORTS, report["county_code"].encode(), codec("Report").encode(report)))
        out = engine.process_report(kv, report)
        for linked in out.linked:
            reference.hop("reports.linked").add(ref_key(linked["source"], linked["source_ref"]), linked["case_id"])
            reference.link(ref_key(linked["source"], linked["source_ref"]), linked["case_id"])
        for case in out.cases:
            reference.hop("cases").add(case["case_id"], case["case_id"])
    expect(reference, source_refs=set(kinds), linked_kinds=kinds)
    assert reference.ok(), reference.problems()

    def ledger(settings: Settings, _: Any) -> Ledger:
        run = collect(settings, hops=("reports.linked", "cases"), title="fusion x2")
        return expect(incidents(run, reference), reference=reference)

    return Domain("fusion", inputs, len(reference.hops["reports.linked"].ids), _counter(REPORTS_LINKED), ledger,
                  lambda s: s.faust_app_id, [REPORTS])


def routing_domain() -> Domain:
    """Dispatchable cases of every incident category, in six counties; the rules say who gets each.
    Their times lie an hour ahead: no deadline expires during the test (no escalation by the clock)."""
    from gridhub.clickhouse.synthetic import taxonomy_categories
    from gridhub.core.settings import Settings as Defaults
    from streams.routing.rules import load_rules

    rules = load_rules(Defaults().routing_rules)
    categories = taxonomy_categories()[0]
    at = int(time.time() * 1000) + 3600_000
    inputs: list[tuple[str, bytes, bytes]] = []
    pairs: set[str] = set()
    for i in range(600):
        county = COUNTIES[i % len(COUNTIES)]
        case = make_case(f"c2w-{i:04d}", categories[i % len(categories)], severity=1 + (i % 7 == 0) * 2,
                         county=county, street=f"{county}001" if county == "330502" else None, at=at)
        plan = rules.plan(case)
        assert plan is not None
        pairs.update(f"{case['case_id']}|{a.agency}" for a in plan.assignments)
        inputs.append((CASES, case["case_id"].encode(), codec("Case").encode(case)))

    def ledger(settings: Settings, _: Any) -> Ledger:
        run = collect(settings, hops=("dispatches", "dispatch.<agency>"), title="routing x2")
        return expect(run, given={"dispatches": pairs, "dispatch.<agency>": pairs})

    return Domain("routing", inputs, len(pairs), _counter(DISPATCHES), ledger, lambda s: s.faust_app_id, [CASES])


def clickhouse_domain() -> Domain:
    """The synthetic fact set (gridhub/clickhouse/synthetic.py: what fusion, routing and the lifecycle
    write) on the fact topics; every row's id must land, once per key."""
    from gridhub.clickhouse.synthetic import generate as facts_for, rows

    facts = facts_for(1500, int(time.time() * 1000), seed=14, townships=4, agencies=3)
    data = rows(facts, Settings())
    want = {"ch.reports": {ref_key(r["source"], r["source_ref"]) for r in data["reports"]},
            "ch.cases": {r["case_id"] for r in data["cases"]},
            "ch.dispatches": {f"{r['case_id']}|{r['agency']}" for r in data["dispatches"]}}
    per_topic = [[(topic, key.encode(), codec(_schema(topic)).encode(value)) for key, value in records]
                 for topic, records in facts.records.items()]
    # Round robin over the topics (each keeps its order): every table is fed through the whole stream.
    inputs = [rec for i in range(max(map(len, per_topic))) for recs in per_topic if i < len(recs)
              for rec in (recs[i],)]

    def progress(settings: Settings, client: Any) -> int:
        try:
            return int(client.execute(f"SELECT count() FROM {settings.ch_database}.case_events")[0][0])
        except Exception:  # the sink has not created its tables yet
            return 0

    def ledger(settings: Settings, client: Any) -> Ledger:
        run = collect(settings, hops=(), clickhouse=client, title="clickhouse sink x2")
        return expect(run, given=want)

    return Domain("clickhouse", inputs, len(data["case_events"]), progress, ledger,
                  lambda s: f"{s.faust_app_id}.clickhouse-sink", list(facts.records),
                  # small batches and quick flushes: many flush-commit rounds, so a kill lands inside one
                  env={"GRIDHUB_CH_SINK_BATCH_ROWS": "200", "GRIDHUB_CH_SINK_FLUSH_SECONDS": "0.3"})


def _schema(topic: str) -> str:
    from gridhub.clickhouse.synthetic import schema_for

    return schema_for(topic)


class _Counter:
    """Records on one namespaced topic so far, read incrementally (one consumer per test)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.reader: TopicReader | None = None

    def __call__(self, settings: Settings, _: Any) -> int:
        if self.reader is None:
            self.reader = TopicReader(settings, self.topic)
        self.reader.poll(0.2)
        return len(self.reader.records)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def _counter(topic: str) -> Callable[[Settings, Any], int]:
    return _Counter(topic)


# --- the run ------------------------------------------------------------------------------------


def group_lag(settings: Settings, group: str, topics: list[str]) -> int | None:
    """Records of ``topics`` the group has not committed (None: it committed nothing yet)."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        committed = admin.list_group_offsets(group).get(group) or {}
        tps = [TopicPartition(settings.topic(t), p) for t in topics
               for p in (consumer.partitions_for_topic(settings.topic(t)) or ())]
        ends = consumer.end_offsets(tps)
        if not committed and any(ends.values()):
            return None
        return sum(max(0, end - (committed[tp].offset if tp in committed else 0)) for tp, end in ends.items())
    finally:
        consumer.close()
        admin.close()


def own_state_dir(settings: Settings, root: Path, name: str) -> Settings:
    """A private run dir per worker: two workers on one host must not share a RocksDB directory."""
    (root / name / "faust").mkdir(parents=True)
    return settings.model_copy(update={"run_dir": root / name})


class Feeder(threading.Thread):
    """Produces the inputs at a steady pace over ``seconds`` (acks=all), in order."""

    def __init__(self, settings: Settings, producer: Any, inputs: list[tuple[str, bytes, bytes]],
                 seconds: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.producer, self.inputs, self.seconds = settings, producer, inputs, seconds
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            began, step = time.monotonic(), self.seconds / max(1, len(self.inputs))
            for i, (topic, key, value) in enumerate(self.inputs):
                ahead = began + i * step - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                self.producer.send(self.settings.topic(topic), key=key, value=value)
                self.sent = i + 1
            self.producer.flush(timeout=60)
        except BaseException as exc:  # reported by the test, never swallowed
            self.error = exc


DOMAINS: dict[str, Callable[[], Domain]] = {
    "ingest": ingest_domain, "fusion": fusion_domain, "routing": routing_domain, "clickhouse": clickhouse_domain}


def supervise(workers: list[Any], kills: list[str]) -> None:
    """A worker that stopped itself (exit 70: a refused or unconfirmed record, a stalled partition) is
    started again, as Kubernetes' restart policy does (deploy/k8s); any other exit fails the test."""
    for i, w in enumerate(workers, 1):
        if w.restart_if_fail_stopped():
            kills.append(f"worker {i} stopped itself (exit 70) and was restarted")


#: Issue 14: fusion and routing lost records here (records fetched before a rebalance taken for current
#: ones, skipped offsets counted as done) until streams/faust_fixes.py 7; docs/scaling.md has the runs.
@pytest.mark.parametrize("name", ["ingest", "fusion", "routing", "clickhouse"])
def test_two_workers_one_killed_at_three_points(name: str, settings: Settings, kafka_producer: Any,
                                                worker: Callable[..., Any], ch_client: Any, tmp_path: Path) -> None:
    began = time.monotonic()
    domain = DOMAINS[name]()
    env = {"GRIDHUB_PII_KEY": "k", **FAST_GROUP, **domain.env}
    workers = [worker(own_state_dir(settings, tmp_path, f"w{i}"), only=domain.only, env=env, wait=False,
                      topics=domain.input_topics) for i in (1, 2)]
    for w in workers:
        w.wait_ready()
    feeder = Feeder(settings, kafka_producer, domain.inputs, PRODUCE_SECONDS)
    feeder.start()

    kills: list[str] = []
    rejoining: tuple[Any, int] | None = None
    for n, fraction in enumerate(KILL_AT):
        if rejoining is not None:  # the last victim is back in the group before the next kill
            rejoining[0].wait_ready(rejoining[1])
        target = max(1, int(domain.expected_outputs * fraction))
        deadline = time.monotonic() + 120
        done = 0
        while (done := domain.progress(settings, ch_client)) < target:
            supervise(workers, kills)
            assert feeder.error is None, f"producing the inputs failed: {feeder.error!r}"
            assert time.monotonic() < deadline, (
                f"{name}: stuck at {done} of {target} outputs before kill {n + 1} "
                f"({feeder.sent} of {len(domain.inputs)} inputs produced; lag "
                f"{group_lag(settings, domain.group(settings), domain.input_topics)})")
            time.sleep(0.2)
        victim = workers[(n + 1) % 2]  # the second, the first, the second
        rejoining = (victim, victim.log_path.stat().st_size)
        victim.restart(kill=True, wait=False)  # SIGKILL: no commit, no leave; then rejoin mid-stream
        kills.append(f"kill {n + 1} at {done} outputs ({feeder.sent}/{len(domain.inputs)} inputs produced, "
                     f"{time.monotonic() - began:.0f} s)")

    feeder.join(PRODUCE_SECONDS + 60)
    assert not feeder.is_alive() and feeder.error is None, f"producing the inputs failed: {feeder.error!r}"
    # Nothing hangs: within a bounded time the group commits every input and the outputs stop growing.
    deadline, last, quiet_since, lag = time.monotonic() + 150, -1, time.monotonic(), None
    while True:
        supervise(workers, kills)
        done = domain.progress(settings, ch_client)
        if done != last:
            last, quiet_since = done, time.monotonic()
        lag = group_lag(settings, domain.group(settings), domain.input_topics)
        if lag == 0 and time.monotonic() - quiet_since > 5:
            break
        assert time.monotonic() < deadline, (
            f"{name}: not done 150 s after the last input: lag {lag}, {done} outputs; workers running: "
            f"{[w.running() for w in workers]}; {kills}")
        time.sleep(1)
    assert all(w.running() for w in workers), f"a worker died: {[w.running() for w in workers]}"

    ledger = domain.ledger(settings, ch_client)
    getattr(domain.progress, "close", lambda: None)()  # a topic counter's consumer
    print(f"{name}: two workers, {'; '.join(kills)}; done in {time.monotonic() - began:.0f} s")
    assert_no_loss(ledger)
