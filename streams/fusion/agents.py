"""Faust wiring of fusion: ``reports`` + ``case-lifecycle`` -> ``cases``, ``case-events``, ``reports.linked``.

One agent reads BOTH input topics through one Faust topic object, so that a
county's reports and the resolved / closed announcements of its cases are
applied in one order, in one partition: both topics are keyed by county code
and have the same partition count, so a county's records of either topic
land in the same partition number.

State is ONE Faust table (``fusion-state``, bytes -> bytes; key scheme in
``streams/fusion/state.py``).  Faust stores a table write in the partition of
the *event being processed* (``Table.partition_for_key`` returns
``event.message.partition``; the RocksDB store picks the per-partition
database the same way), not by hashing the table key, so every entry the
engine writes for a county lives in that county's partition: a rebalance
moves a county's whole state with its partition, and the changelog replays
it on the new owner.  One table rather than one per index so that all writes
of one report are in one changelog partition, in order (crash safety: see
``streams/fusion/state.py``).

Batches and delivery (issue 14): the agent takes Faust's ``take_events`` lists
grouped by partition (``streams.delivery.partition_groups``) and runs the engine
over a per-partition write-behind cache (``streams.fusion.state.BatchCache``).  Per list:
outputs (and dead letters) are sent through one ``Deliveries`` and confirmed by
the broker; then the state changes are flushed, one changelog record per changed
key behind a redo journal (one record), and confirmed; only then does the agent ask for the
next batch, which is when Faust acknowledges the inputs.  A record Kafka refuses
stops the worker with status 70 without acknowledging the batch
(``streams.app.fail_stop``).  Why a crash at any point of that is safe is in
``streams/fusion/state.py`` ("Batches").  Bad input (undecodable bytes, a report
the engine cannot use, or an engine bug) goes to ``dlq`` with the original bytes
and never stops the partition.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Sequence

import faust

from gridhub.core import metrics
from gridhub.core.codec import DecodeError, codec
from gridhub.core.logging import get_logger
from gridhub.core.topics import CASE_EVENTS, CASE_LIFECYCLE, CASES, DLQ, REPORTS, REPORTS_LINKED
from streams.app import (app, dead_letter, ensure_topics, settings, stop_on_infrastructure_error, table_options,
                         topic)
from streams.delivery import Deliveries, current_event, partition_groups
from streams.fusion.config import load_config
from streams.fusion.engine import FusionEngine, FusionResult
from streams.fusion.state import KV, BatchCache, flush_plan, journal_changes

log = get_logger(__name__)

STAGE = "fusion"

#: reports and case-lifecycle, one subscription (internal=True: Faust creates them with
#: settings.partitions if nobody has yet, so both always have the same partition count).
inputs = app.topic(settings.topic(REPORTS), settings.topic(CASE_LIFECYCLE), key_type=bytes, value_type=bytes,
                   internal=True, partitions=settings.partitions)
_lifecycle_topic = settings.topic(CASE_LIFECYCLE)
cases_topic = topic(CASES)
case_events_topic = topic(CASE_EVENTS)
linked_topic = topic(REPORTS_LINKED)

#: The whole fusion state: str keys (utf-8) -> JSON bytes, see streams/fusion/state.py.
state_table = app.Table("fusion-state", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                        options=table_options())

engine = FusionEngine(load_config())


class TableKV:
    """:class:`streams.fusion.state.KV` over the Faust table (only valid inside the agent)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self.table.get(key.encode("utf-8"))
        return value

    def set(self, key: str, value: bytes) -> None:
        self.table[key.encode("utf-8")] = value

    def delete(self, key: str) -> None:
        raw = key.encode("utf-8")
        if self.table.get(raw) is not None:
            del self.table[raw]


_kv = TableKV(state_table)
#: The batch's view of the state: the engine reads and writes only this (one batch at a time).
_cache = BatchCache(_kv)




def prepare_topics(app_: Any, settings_: Any) -> None:
    """``gridhub.runner.SERVICES`` hook, run before the worker starts: create fusion's topics.

    The changelog must exist, with a leader for every partition, before the consumer
    subscribes: a changelog Faust creates at start-up is missing from the group leader's
    first metadata, so Faust assigns the table no changelog partitions ("Ignoring missing
    topic") until the next metadata refresh, minutes later (streams/faust_fixes.py, fix 4).
    ``ensure_topics`` creates them as deploy/topics.yaml says and waits for their leaders.
    Blocking admin calls are fine here: no event loop runs yet.  Returns None: there is no
    service to run.
    """
    from gridhub.core.kafka_admin import ensure_topics

    names = [REPORTS, CASE_LIFECYCLE, CASES, CASE_EVENTS, REPORTS_LINKED, DLQ,
             state_table.changelog_topic.get_topic_name()]
    try:
        ensure_topics(settings_, names=names)
    except Exception as exc:  # no broker yet: Faust will retry and create what it needs itself
        log.warning("fusion_topics_not_prepared", topics=names, error=str(exc))
    return None


@app.task
async def declare_fusion_topics() -> None:
    """cases is compacted (deploy/topics.yaml); create outputs before the first send."""
    await ensure_topics([REPORTS, CASE_LIFECYCLE, CASES, CASE_EVENTS, REPORTS_LINKED, DLQ])




async def _emit(out: Deliveries, result: FusionResult) -> None:
    # reports.linked first: a consumer that sees a case event can already find its reports.
    for report in result.linked:
        await out.send(linked_topic, key=report["case_id"].encode(), value=codec("Report").encode(report))
    for event in result.events:
        await out.send(case_events_topic, key=event["case_id"].encode(), value=codec("CaseEvent").encode(event))
    for case in result.cases:
        await out.send(cases_topic, key=case["case_id"].encode(), value=codec("Case").encode(case))
    if result.outcome in ("new_case", "joined", "update", "recovered"):
        metrics.REPORTS_FUSED.labels(outcome={"update": "updated"}.get(result.outcome, result.outcome)).inc()
    if result.outcome == "new_case":
        metrics.OPEN_CASES.inc()
    if result.expired:
        metrics.OPEN_CASES.dec(result.expired)


def handle(value: bytes, from_lifecycle: bool, kv: KV | None = None) -> FusionResult:
    """Decode and apply one input record (raises DecodeError / ValueError on bad input)."""
    kv = _cache if kv is None else kv
    if from_lifecycle:
        return engine.process_lifecycle(kv, codec("CaseEvent").decode(value))
    return engine.process_report(kv, codec("Report").decode(value))


def _write_all(out: Deliveries, partition: int, writes: Sequence[tuple[str, bytes | None]]) -> None:
    for key, value in writes:
        out.table_write(state_table, partition, key.encode("utf-8"), value)


#: Partitions whose journal this process re-applied (or wrote) since the last rebalance.
_journal_checked: set[int] = set()


@app.on_partitions_assigned.connect  # type: ignore[arg-type]  # (mode types handlers with a signal= keyword)
async def _forget_journal_checks(app: Any, *args: Any, **kwargs: Any) -> None:
    """A partition may come back after another worker flushed it: re-check every journal."""
    _journal_checked.clear()


def recover_journal(out: Deliveries, partition: int) -> None:
    """Re-apply the partition's latest journal (``state.journal_changes``) once per assignment, before
    its first event: after a crash in a flush it finishes that flush; otherwise it changes nothing."""
    if partition in _journal_checked:
        return
    _journal_checked.add(partition)
    changes = journal_changes(_kv, partition)
    if changes:
        log.info("fusion_journal_reapplied", partition=partition, writes=len(changes))
        _write_all(out, partition, changes)


async def _process_group(out: Deliveries, events: Sequence[faust.EventT]) -> list[tuple[str, bytes | None]]:
    """One partition's events through the cache; returns the partition's flush plan."""
    partition = events[0].message.partition
    with stop_on_infrastructure_error(events[-1], STAGE):
        recover_journal(out, partition)
    _cache.clear()
    for event in events:
        msg = event.message
        try:
            # infrastructure errors stop the worker: dead-lettering would lose a good record
            with stop_on_infrastructure_error(event, STAGE):
                result = handle(msg.value or b"", msg.topic == _lifecycle_topic)
        except (DecodeError, ValueError, KeyError, TypeError) as exc:
            await dead_letter(event, STAGE, f"{type(exc).__name__}: {exc}"[:500], out)
        except Exception as exc:  # an engine bug must cost one record, not the partition
            log.exception("fusion_failed", topic=msg.topic, partition=msg.partition, offset=msg.offset)
            await dead_letter(event, STAGE, f"internal error {type(exc).__name__}: {exc}"[:500], out)
        else:
            with stop_on_infrastructure_error(event, STAGE):
                await _emit(out, result)
    plan = flush_plan(partition, _cache.changes())
    _cache.clear()
    return plan


async def process_batch(out: Deliveries, groups: Sequence[Sequence[faust.EventT]]) -> None:
    """One ``take_events`` list (its events grouped by partition): outputs confirmed, then each
    partition's state flushed behind its journal and confirmed (state.py, "Batches").

    Confirmed once per list, not per partition: two broker round trips per list whatever the
    number of partitions in it."""
    events = [event for group in groups for event in group]
    plans = []
    for group in groups:
        with current_event(group[-1]):
            plans.append(await _process_group(out, group))
    await out.confirm(events)  # 2. every output acknowledged before any state of the batch is written
    for group, plan in zip(groups, plans):
        with current_event(group[-1]), stop_on_infrastructure_error(group[-1], STAGE):
            _write_all(out, group[-1].message.partition, plan)  # 3. journal, then each changed key once
    await out.confirm(events)  # 4. the state is durable: Faust may acknowledge the list


@app.agent(inputs, name="fusion")
async def fuse(stream: Any) -> AsyncIterator[None]:
    out = Deliveries(STAGE)
    async for groups in partition_groups(stream, max_events=settings.batch_max_events,
                                         within_s=settings.batch_within_ms / 1000):
        await process_batch(out, groups)
        yield None
