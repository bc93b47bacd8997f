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

Delivery: at least once.  Outputs are sent from inside the agent before it takes
the next record, and Faust flushes the producer before it commits offsets
(``Consumer._commit_offsets``); a crash before the commit redelivers the input, the engine recognises
the ``(source, source_ref, version)`` it already applied (the changelog is
written as it goes) and emits the same records again with the same ids and
case ids.  Bad input (undecodable bytes, a report the engine cannot use, or an
engine bug) goes to ``dlq`` with the original bytes and never stops the
partition.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from gridhub.core import metrics
from gridhub.core.codec import DecodeError, codec
from gridhub.core.logging import get_logger
from gridhub.core.topics import CASE_EVENTS, CASE_LIFECYCLE, CASES, DLQ, REPORTS, REPORTS_LINKED
from streams.app import (app, dead_letter, ensure_topics, settings, stop_on_infrastructure_error, table_options,
                         topic)
from streams.fusion.config import load_config
from streams.fusion.engine import FusionEngine, FusionResult

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




async def _emit(result: FusionResult) -> None:
    # reports.linked first: a consumer that sees a case event can already find its reports.
    for report in result.linked:
        await linked_topic.send(key=report["case_id"].encode(), value=codec("Report").encode(report))
    for event in result.events:
        await case_events_topic.send(key=event["case_id"].encode(), value=codec("CaseEvent").encode(event))
    for case in result.cases:
        await cases_topic.send(key=case["case_id"].encode(), value=codec("Case").encode(case))
    if result.outcome in ("new_case", "joined", "update", "recovered"):
        metrics.REPORTS_FUSED.labels(outcome={"update": "updated"}.get(result.outcome, result.outcome)).inc()
    if result.outcome == "new_case":
        metrics.OPEN_CASES.inc()
    if result.expired:
        metrics.OPEN_CASES.dec(result.expired)


def handle(value: bytes, from_lifecycle: bool) -> FusionResult:
    """Decode and apply one input record (raises DecodeError / ValueError on bad input)."""
    if from_lifecycle:
        return engine.process_lifecycle(_kv, codec("CaseEvent").decode(value))
    return engine.process_report(_kv, codec("Report").decode(value))


@app.agent(inputs, name="fusion")
async def fuse(stream: Any) -> AsyncIterator[None]:
    async for event in stream.events():
        msg = event.message
        try:
            # infrastructure errors stop the worker: dead-lettering would lose a good record
            with stop_on_infrastructure_error(event, STAGE):
                result = handle(msg.value or b"", msg.topic == _lifecycle_topic)
        except (DecodeError, ValueError, KeyError, TypeError) as exc:
            await dead_letter(event, STAGE, f"{type(exc).__name__}: {exc}"[:500])
        except Exception as exc:  # an engine bug must cost one record, not the partition
            log.exception("fusion_failed", topic=msg.topic, partition=msg.partition, offset=msg.offset)
            await dead_letter(event, STAGE, f"internal error {type(exc).__name__}: {exc}"[:500])
        else:
            with stop_on_infrastructure_error(event, STAGE):
                await _emit(result)
        yield None
