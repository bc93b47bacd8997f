"""Issue 14 item 3 for fusion: a model-based crash test of the batch flush (pure, no Kafka).

A Hypothesis state machine drives the engine over a ``MemoryKV`` (the durable table: what the
changelog holds) through the worker's batch protocol (streams/fusion/agents.py ``process_batch``,
streams/fusion/state.py "Batches"): journal recovery, the batch through a ``BatchCache``,
outputs confirmed, flush plan (journal, changes), journal cleanup.  Between batches it may
crash: before the outputs are confirmed (any subset of them reached Kafka, no state) or in the
middle of the flush (all outputs, any prefix of the plan: journal, then the changes); then
everything after the last *committed* offset is redelivered, after the journal is re-applied.  Offsets are committed now and then, as
Faust does in the background, so a crash may also redeliver batches that completed.

At the end the outputs that reached Kafka are compared with a crash-free run of the same
inputs: the same report -> case links, the same case ids (and the same final case records),
the same event ids; and every input processed again emitted only its own crash-free effects.
"""

from __future__ import annotations

from typing import Any

from helpers.fusion import MIN, T0, alarm, north, report
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from streams.fusion.config import load_config
from streams.fusion.engine import FusionEngine, FusionResult, case_id_for
from streams.fusion.state import BatchCache, MemoryKV, flush_plan, journal_changes

PARTITION = 3
ENGINE = FusionEngine(load_config())


def _inputs() -> list[tuple[str, dict[str, Any]]]:
    """Several inputs per case: joins across sources, updates, a sensor storm and its recover,
    a resolve and a reopen from routing, and a second place."""
    fp1 = report("fp1")
    far = {"lat": report("x")["lat"] + north(3000), "address": "青铜路1号"}
    out: list[tuple[str, dict[str, Any]]] = [
        ("report", fp1),
        ("report", report("h1", source="hotline-12345", t=T0 + 5 * MIN, text="红旗路流动摊贩占道经营卖水果")),
        ("report", {**fp1, "version": fp1["version"] + 1000, "status": "处置中"}),
        ("report", alarm("D1", T0 + 1 * MIN)),
        ("report", alarm("D1", T0 + 2 * MIN)),
        ("report", report("fp2", t=T0 + 3 * MIN, category="garbage", text="青铜路垃圾堆放发臭", **far)),
        ("report", report("fp3", t=T0 + 4 * MIN, category="garbage", text="青铜路1号垃圾没人清理", **far)),
        ("life", {"case_id": case_id_for(fp1["report_id"]), "event": "resolved", "state": "resolved",
                  "at": T0 + 20 * MIN}),
        ("report", alarm("D1", T0 + 25 * MIN, kind="recover")),
        ("report", report("h2", source="hotline-12345", t=T0 + 30 * MIN, text="红旗路又有人摆摊占道经营")),
        ("life", {"case_id": case_id_for(fp1["report_id"]), "event": "reopened", "at": T0 + 35 * MIN}),
        ("report", {**fp1, "version": fp1["version"] + 2000, "status": "已办结"}),
        ("report", report("fp4", t=T0 + 40 * MIN, text="红旗路流动摊贩占道经营卖水果")),
    ]
    return out


INPUTS = _inputs()


def _apply(kv: MemoryKV, writes: list[tuple[str, bytes | None]]) -> None:
    for key, value in writes:
        if value is None:
            kv.delete(key)
        else:
            kv.set(key, value)


def _process(kv: Any, item: tuple[str, dict[str, Any]]) -> FusionResult:
    kind, value = item
    return ENGINE.process_lifecycle(kv, value) if kind == "life" else ENGINE.process_report(kv, value)


def _effects(result: FusionResult) -> set[tuple[Any, ...]]:
    """What one input put on Kafka, as comparable ids."""
    out: set[tuple[Any, ...]] = set()
    out.update(("linked", r["source"], r["source_ref"], r["version"], r["case_id"]) for r in result.linked)
    out.update(("event", e["event_id"], e["case_id"], e["event"]) for e in result.events)
    out.update(("case", c["case_id"]) for c in result.cases)
    return out


def _crash_free() -> tuple[list[set[tuple[Any, ...]]], dict[str, dict[str, Any]]]:
    kv, per_input, final = MemoryKV(), [], {}
    for item in INPUTS:
        result = _process(kv, item)
        per_input.append(_effects(result))
        for case in result.cases:
            final[case["case_id"]] = case
    return per_input, final


CRASH_FREE, CRASH_FREE_CASES = _crash_free()


class BatchCrashMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.durable = MemoryKV()      # the table as its changelog holds it
        self.committed = 0             # the group's committed offset
        self.position = 0              # the next input the worker reads
        self.delivered: set[tuple[Any, ...]] = set()
        self.cases: dict[str, dict[str, Any]] = {}  # case_id -> the highest version delivered
        self.crashes = 0
        self.restarted = True

    # -- the worker

    def _run_batch(self, n: int) -> tuple[list[tuple[int, FusionResult]], list[tuple[str, bytes | None]]]:
        if self.restarted:  # recover_journal: once per assignment
            self.restarted = False
            _apply(self.durable, journal_changes(self.durable, PARTITION) or [])
        cache = BatchCache(self.durable)
        batch = range(self.position, min(self.position + n, len(INPUTS)))
        results = [(i, _process(cache, INPUTS[i])) for i in batch]
        for i, result in results:  # what a redelivered input emits is only its own crash-free effects
            assert _effects(result) <= CRASH_FREE[i], (i, _effects(result) - CRASH_FREE[i])
        return results, flush_plan(PARTITION, cache.changes())

    def _deliver(self, result: FusionResult) -> None:
        self.delivered |= _effects(result)
        for case in result.cases:
            have = self.cases.get(case["case_id"])
            if have is None or case["version"] >= have["version"]:
                self.cases[case["case_id"]] = case

    def _complete(self, n: int) -> None:
        results, plan = self._run_batch(n)
        for _, result in results:
            self._deliver(result)
        _apply(self.durable, plan)
        self.position = results[-1][0] + 1 if results else self.position

    @rule(n=st.integers(1, 5))
    def batch(self, n: int) -> None:
        self._complete(n)

    @rule()
    def commit(self) -> None:
        self.committed = self.position

    @rule(n=st.integers(1, 5), data=st.data())
    def crash_before_outputs_confirmed(self, n: int, data: st.DataObject) -> None:
        results, _ = self._run_batch(n)
        for _, result in results:  # some of the records the producer had sent made it
            if data.draw(st.booleans(), label="delivered"):
                self._deliver(result)
        self._crash()

    @rule(n=st.integers(1, 5), data=st.data())
    def crash_in_flush(self, n: int, data: st.DataObject) -> None:
        results, plan = self._run_batch(n)
        for _, result in results:
            self._deliver(result)
        _apply(self.durable, plan[:data.draw(st.integers(0, len(plan)), label="flushed")])
        self._crash()

    @rule()
    def rebalance(self) -> None:
        """The partition moved away and back (or the worker restarted cleanly): journal re-applied."""
        self.restarted = True
        self.position = self.committed

    def _crash(self) -> None:
        self.crashes += 1
        self.position = self.committed  # the restarted worker reads from the committed offset
        self.restarted = True

    def teardown(self) -> None:
        if not hasattr(self, "durable"):
            return
        while self.position < len(INPUTS):
            self._complete(5)
        expected = set().union(*CRASH_FREE)
        assert self.delivered == expected, (sorted(expected - self.delivered), sorted(self.delivered - expected))
        assert self.cases == CRASH_FREE_CASES


BatchCrashMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=20, deadline=None,
                                               suppress_health_check=[HealthCheck.too_slow])
TestBatchCrashes = BatchCrashMachine.TestCase


def test_the_inputs_fuse_and_update() -> None:
    """The model's inputs exercise joins, updates, lifecycle and sensors (else the test proves little)."""
    kinds = [e[0] for effects in CRASH_FREE for e in effects]
    events = {e[3] for effects in CRASH_FREE for e in effects if e[0] == "event"}
    assert {"report_linked", "report_updated", "created", "recovered"} <= events
    assert kinds.count("linked") >= len(INPUTS) - 3
    assert len({c for c in CRASH_FREE_CASES}) < sum(1 for k, _ in INPUTS if k == "report")
