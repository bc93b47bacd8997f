"""``gridhub bench logic``: the CPU the hub's own transforms need per document, without Kafka.

Issue 14 asks for <= 0.3 ms of worker CPU per document end to end.  This benchmark measures the
floor under that figure: the same documents as ``gridhub bench e2e`` (its seed, six counties and
simulator rate) through the pure functions the agents call, in one process, with no broker,
no Faust and no RocksDB (in-memory state):

1. **ingest**: ``normalize`` of every raw document (validation, PII masking, classification);
2. **avro**: every record the pipeline writes between its stages (reports, linked reports, cases,
   case events, dispatches), Avro-encoded once and decoded once, as the next agent or the
   ClickHouse sink reads it;
3. **fusion**: ``FusionEngine.process_report`` for every report, on an in-memory state;
4. **routing**: ``Processor.case`` for every case version and ``Processor.report`` for every linked
   report, on an in-memory routing table.

CPU is ``time.process_time`` around each stage (this process only, one thread), divided by the
documents.  A figure, not an assertion: whatever the Kafka client costs comes on top.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import click

#: Issue 14's "Must show": worker CPU per document, end to end.
TARGET_CPU_MS_PER_DOC = 0.3
#: Documents normalised untimed first: enough to load jieba's dictionary and the classifier's words
#: (0.6 s of CPU on the first hotline text, once per process).
WARMUP_DOCUMENTS = 200


@dataclass
class LogicRun:
    """What one run went through, and the CPU seconds of each stage."""

    documents: int = 0
    reports: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    linked: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    dispatches: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)  # report id -> fusion's outcome (the last one)
    cpu_s: dict[str, float] = field(default_factory=dict)

    def ms_per_doc(self) -> dict[str, float]:
        return {stage: round(seconds * 1000 / max(1, self.documents), 4) for stage, seconds in self.cpu_s.items()}


def run_logic(documents: int, seed: int) -> LogicRun:
    """The four stages over ``documents`` simulator records of the e2e mix (see the module doc)."""
    from bench.e2e import simulated
    from gridhub.core.codec import codec
    from gridhub.core.settings import get_settings
    from gridhub.simulate.generator import DEFAULT_START_MS
    from streams.fusion.config import load_config
    from streams.fusion.engine import FusionEngine
    from streams.fusion.state import MemoryKV
    from streams.ingest.normalize import Rejected, normalize
    from streams.routing.processor import DictKV, Processor
    from streams.routing.rules import load_rules

    registry, simulator_records = simulated(seed, documents, DEFAULT_START_MS)
    raw = [(rec.source, rec.value(), rec.at_ms) for rec in simulator_records]
    run = LogicRun(documents=len(raw))

    # Start-up work a worker does once (jieba's dictionary, compiled patterns) is not per document.
    for source, value, at_ms in raw[:WARMUP_DOCUMENTS]:
        try:
            normalize(source, value, registry=registry, received_at_ms=at_ms, pii_key=b"bench")
        except Rejected:
            pass
    started = time.process_time()
    for source, value, at_ms in raw:
        try:
            result = normalize(source, value, registry=registry, received_at_ms=at_ms, pii_key=b"bench")
        except Rejected:
            continue
        if result.report is not None:
            run.reports.append(result.report)
    run.cpu_s["ingest"] = time.process_time() - started

    engine = FusionEngine(load_config())
    fusion_kv = MemoryKV()
    started = time.process_time()
    for report in run.reports:
        fused = engine.process_report(fusion_kv, report)
        run.outcomes[report["report_id"]] = fused.outcome
        run.cases += fused.cases
        run.linked += fused.linked
        run.events += fused.events
    run.cpu_s["fusion"] = time.process_time() - started

    rules = load_rules(get_settings().routing_rules)
    # As in a worker that commits as it goes: the outbox keeps only inputs at or after the committed
    # offset (here: the input being processed), not the OUTBOX_KEEP entries of an unknown commit.
    committed: dict[str, int] = {}
    processor = Processor(lambda: rules, committed=lambda topic, partition: committed.get(topic))
    routing_kv = DictKV()
    started = time.process_time()
    for offset, case in enumerate(run.cases):
        committed["cases"] = offset
        outcome = processor.case(routing_kv, ("cases", 0, offset), case)
        run.dispatches += outcome.effects.dispatches
        run.events += outcome.effects.events
    for offset, report in enumerate(run.linked):
        committed["reports.linked"] = offset
        outcome = processor.report(routing_kv, ("reports.linked", 0, offset), report)
        run.dispatches += outcome.effects.dispatches
        run.events += outcome.effects.events
    run.cpu_s["routing"] = time.process_time() - started

    streams = [("Report", run.reports), ("Report", run.linked), ("Case", run.cases),
               ("CaseEvent", run.events), ("Dispatch", run.dispatches)]
    started = time.process_time()
    for name, records in streams:
        avro = codec(name)
        for record in records:
            avro.decode(avro.encode(record))
    run.cpu_s["avro"] = time.process_time() - started
    run.cpu_s["total"] = sum(run.cpu_s.values())
    return run


def run_logic_bench(documents: int, seed: int, as_json: bool) -> None:
    run = run_logic(documents, seed)
    per_doc = run.ms_per_doc()
    result = {
        "documents": run.documents, "reports": len(run.reports), "case_versions": len(run.cases),
        "linked": len(run.linked), "case_events": len(run.events), "dispatches": len(run.dispatches),
        "cpu_ms_per_doc": per_doc, "target_cpu_ms_per_doc": TARGET_CPU_MS_PER_DOC,
        "share_of_target": round(per_doc["total"] / TARGET_CPU_MS_PER_DOC, 2),
    }
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return
    click.echo(f"{run.documents} documents of the e2e mix (seed {seed}): {len(run.reports)} reports, "
               f"{len(run.cases)} case versions, {len(run.linked)} linked reports, {len(run.dispatches)} dispatches")
    for stage in ("ingest", "fusion", "routing", "avro", "total"):
        click.echo(f"  {stage:<8} {per_doc[stage]:8.4f} ms CPU per document")
    click.echo(f"issue 14 target for the whole worker: {TARGET_CPU_MS_PER_DOC} ms per document; the transforms "
               f"alone use {result['share_of_target']}x of it, before any Kafka client work")
