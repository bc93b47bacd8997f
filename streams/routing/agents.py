"""Routing and the closed loop on Faust: topics, the lifecycle table, agents, timers.

Inputs, all keyed by case id and all with ``settings.partitions`` partitions
(co-partitioned: the lifecycle table's partition is the event's partition):

- ``cases`` (Avro ``Case``, compacted): route a case when it first appears,
  re-route when its category or township changes;
- ``feedback`` (JSON or Avro ``Feedback``): agency actions;
- ``reports.linked`` (Avro ``Report`` with ``case_id``): 12345 回访 updates;
- ``routing-timers`` (internal): ticks that the deadline scanner sends to
  the partition owning a due case, because a Faust table can only be
  changed while processing an event of its own partition.

Outputs: ``dispatch.<agency>`` (Avro ``Dispatch``, keyed by case id, created
on first use per ``deploy/topics.yaml``), ``case-events`` (Avro ``CaseEvent``), ``case-lifecycle``
(``resolved`` / ``closed``, keyed by county code, for fusion) and ``dlq``.

Every decision is made by the pure :class:`streams.routing.processor.Processor` (docs/routing.md);
this module decodes, batches and produces.  Per partition batch: decide each event over a
write-behind view of the table, write each changed key once, produce every effect through a
:class:`streams.delivery.Deliveries`, and confirm all of it (changelog records included) before
the next batch, so no input offset is committed before what it caused is acknowledged.  A
redelivered input re-emits its own effects from the case's outbox.

Deadlines live in the changelogged table, so they survive restarts; a time-ordered in-memory
index (rebuilt from the table when the worker's partitions change) tells the deadline clock
which cases are due, and the tick marks the deadline fired in the same table write that
produced the ``overdue`` event, so it fires once.  Event ids are deterministic, so even the
at-least-once window between producing and committing cannot create a *different* event.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable

import faust
from faust.types import TP
from mode import Service

from gridhub.core import topics as T
from gridhub.core.clock import HubClock
from gridhub.core.codec import DecodeError, codec
from gridhub.core.logging import get_logger
from gridhub.core.metrics import DISPATCHES, OVERDUE_CASES
from gridhub.core.kafka_admin import ensure_topics_off_loop, spec_partitions
from streams.app import app, dead_letter, settings, stop_on_infrastructure_error, table_options
from streams.delivery import Deliveries, partition_batches
from gridhub.core.shadow import is_shadow
from streams.routing import centre
from streams.routing import devices
from streams.routing import feedback as feedback_relay
from streams.routing import lifecycle as lc
from streams.routing import status as status_replies
from streams.routing.processor import DeadlineIndex, Outcome, Position, Processor, WriteBehind
from streams.routing.rules import RulesHolder

log = get_logger(__name__)

ROUTING_TIMERS = "routing-timers"
TABLE_NAME = "routing-cases"

#: Loaded at import, i.e. when the worker starts: a broken rules file stops
#: the start with ``file:line: reason``; later edits are reloaded live.
rules = RulesHolder(settings.routing_rules)

_N = settings.partitions
cases_topic = app.topic(settings.topic(T.CASES), key_type=bytes, value_type=bytes, internal=True,
                        partitions=_N, compacting=True)
actions_topic = app.topic(settings.topic(T.FEEDBACK), settings.topic(T.REPORTS_LINKED), settings.topic(ROUTING_TIMERS),
                          key_type=bytes, value_type=bytes, internal=True, partitions=_N)
timers_topic = app.topic(settings.topic(ROUTING_TIMERS), key_type=bytes, value_type=bytes, internal=True,
                         partitions=_N)
case_events_topic = app.topic(settings.topic(T.CASE_EVENTS), key_type=bytes, value_type=bytes, internal=True,
                              partitions=_N)
lifecycle_topic = app.topic(settings.topic(T.CASE_LIFECYCLE), key_type=bytes, value_type=bytes, internal=True,
                            partitions=_N)
dlq_topic = app.topic(settings.topic(T.DLQ), key_type=bytes, value_type=bytes, internal=True, partitions=_N)
dispatches_topic = app.topic(settings.topic(T.DISPATCHES), key_type=bytes, value_type=bytes, internal=True,
                             partitions=_N)

#: Per-agency feedback topics -> ``feedback`` with the verified agency (streams/routing/feedback.py).
class _FeedbackRelay(feedback_relay.FeedbackRelay):
    def __init__(self, **kwargs: Any) -> None:  # Faust instantiates app services without arguments
        super().__init__(settings, **kwargs)


app.service(_FeedbackRelay)


#: Issue 15: the county centre's actions (streams/routing/centre.py), keyed by case id like the table.
commands_topic = app.topic(settings.topic(centre.COMMANDS_TOPIC), key_type=bytes, value_type=bytes, internal=True,
                           partitions=_N)

# bytes key/value types give the "raw" serializers: values are the JSON state of lifecycle.py.
table = app.Table(TABLE_NAME, default=None, key_type=bytes, value_type=bytes, partitions=_N, options=table_options())

_lock = asyncio.Lock()  # one batch's read-decide-write over the routing table at a time in this process
_dispatch_topics: dict[str, faust.TopicT] = {}
_status_topics: dict[str, faust.TopicT] = {}
#: "now" for deadlines: wall time, or event time in compressed-time demos (gridhub/core/clock.py).
hub_clock = HubClock(settings)


async def _ensure(names: list[str]) -> bool:
    """Create / align topics as ``deploy/topics.yaml`` says; routing goes on if the broker refuses."""
    return await ensure_topics_off_loop(settings, names, failure_event="routing_topics_not_ensured")


async def _declare_outputs() -> None:
    # Faust created the input channels (internal=True) with settings.partitions; this also
    # sets their configs from deploy/topics.yaml (e.g. `cases` compacted).
    await _ensure([T.CASES, T.FEEDBACK, T.REPORTS_LINKED, T.CASE_EVENTS, T.CASE_LIFECYCLE, T.DLQ, T.DISPATCHES])
    for t in (case_events_topic, lifecycle_topic, dlq_topic, timers_topic, dispatches_topic):
        await t.maybe_declare()


async def _dispatch_topic(agency: str) -> faust.TopicT:
    """``dispatch.<agency>``, created on first use as deploy/topics.yaml's ``dispatch.*`` pattern says."""
    t = _dispatch_topics.get(agency)
    if t is None:
        name = T.dispatch_topic(agency)
        t = app.topic(settings.topic(name), key_type=bytes, value_type=bytes, internal=True,
                      partitions=spec_partitions(settings, name))
        if not await _ensure([name]):
            await t.maybe_declare()
        _dispatch_topics[agency] = t
    return t




def _source(event: faust.EventT) -> Position:
    """Where an input record sits: the identity of a redelivery (stored in the state's outbox)."""
    return (str(event.message.topic), int(event.message.partition), int(event.message.offset))


def _committed(topic: str, partition: int) -> int | None:
    """The group's committed offset of ``topic``/``partition`` as this worker's consumer knows it.

    Faust keeps it (``Consumer._committed_offset``: read at assignment from the broker, updated at
    each commit; the next offset a restarted worker reads).  None when unknown: the outbox then
    keeps its entries (processor.OUTBOX_KEEP bounds them).
    """
    try:
        offsets: Any = getattr(app.consumer, "_committed_offset")
    except Exception:  # the consumer is not built yet (unit tests, start-up)
        return None
    value = offsets.get(TP(topic, partition)) if hasattr(offsets, "get") else None
    return int(value) if value is not None else None


deadline_index = DeadlineIndex()
processor = Processor(lambda: rules.current, committed=_committed, index=deadline_index)
def _flush(tbl: Any, partition: int, kv: WriteBehind, out: Deliveries) -> None:
    """The batch's state writes: one changelog record per changed key (a tombstone for a deleted one),
    each confirmed with the batch (:meth:`streams.delivery.Deliveries.table_write`)."""
    for key, value in kv.changes().items():
        if value is None and key not in tbl:
            continue  # nothing to delete: no tombstone
        out.table_write(tbl, partition, key, value)


Handler = Callable[[WriteBehind, faust.EventT], Outcome]


async def _run(stream: faust.StreamT, stage: str, tbl: Any, handle: Handler) -> None:
    """The agents' loop: per partition batch, decide every event over a write-behind view of ``tbl``,
    write the changed keys once, produce every effect, and confirm all of it before the next batch
    (issue 14 items 1-3).  Kafka errors stop the worker without committing (streams.app.fail_stop)."""
    out = Deliveries(stage)
    async for events in partition_batches(stream, max_events=settings.batch_max_events,
                                          within_s=settings.batch_within_ms / 1000):
        results: list[tuple[faust.EventT, Outcome]] = []
        async with _lock:  # the agents share the table: one batch's read-decide-write at a time
            kv = WriteBehind(tbl.get)
            for event in events:
                try:
                    outcome = handle(kv, event)
                except (KeyError, TypeError, ValueError) as exc:
                    # A record the decoders accepted but the transition cannot read (a field of the
                    # wrong shape): dead-lettered with the reason, never a stopped partition.  The
                    # processor writes a key only after its transition succeeded, so nothing is half-applied.
                    log.exception("routing_input_unreadable", topic=event.message.topic,
                                  partition=event.message.partition, offset=event.message.offset)
                    outcome = Outcome(dead=f"cannot process: {exc.__class__.__name__}: {exc}", stage=stage)
                results.append((event, outcome))
            with stop_on_infrastructure_error(events[-1], stage):
                _flush(tbl, events[-1].message.partition, kv, out)
        with stop_on_infrastructure_error(events[-1], stage):
            for event, outcome in results:
                if outcome.dead is not None:
                    await dead_letter(event, outcome.stage, outcome.dead, out)
                if outcome.effects:
                    await _send_effects(out, outcome.effects)
        await _confirm(out, events, stage)


#: Seconds a batch may wait for the broker's acknowledgements before it is logged as slow (a new
#: topic's leader election takes a second or two on the dev broker; ten means something is stuck).
CONFIRM_SLOW_S = 10.0


async def _confirm(out: Deliveries, events: list[faust.EventT], stage: str) -> None:
    """``out.confirm(events)``, logging every CONFIRM_SLOW_S while it waits (where a stuck batch waits)."""
    records, started = len(out), time.monotonic()
    confirm = asyncio.ensure_future(out.confirm(events))
    while True:
        done, _ = await asyncio.wait({confirm}, timeout=CONFIRM_SLOW_S)
        if done:
            break
        msg = events[-1].message
        log.warning("routing_confirm_slow", stage=stage, records=records, inputs=len(events), topic=msg.topic,
                    partition=msg.partition, offset=msg.offset, waited_s=round(time.monotonic() - started, 1))
    confirm.result()


async def _send_effects(out: Deliveries, fx: lc.Effects) -> None:
    dispatch_codec, event_codec = codec("Dispatch"), codec("CaseEvent")
    for record in fx.dispatches:
        topic = await _dispatch_topic(record["agency"])
        DISPATCHES.labels(record["agency"]).inc()
        key, value = record["caseId"].encode("utf-8"), dispatch_codec.encode(record)
        await out.send(topic, key=key, value=value)  # the agency's copy
        await out.send(dispatches_topic, key=key, value=value)  # the analysts' copy (gridhub/core/topics.py)
    for ev in fx.events:
        await out.send(case_events_topic, key=ev["case_id"].encode("utf-8"), value=event_codec.encode(ev))
        log.info("case_event", case_id=ev["case_id"], case_event=ev["event"], agency=ev["agency"],
                 dispatch_id=ev["dispatch_id"], state=ev["state"])
    for ev in fx.lifecycle:
        await out.send(lifecycle_topic, key=ev["county_code"].encode("utf-8"), value=event_codec.encode(ev))
    await send_status_replies(fx, out)
    for cmd in fx.commands:  # issue 15: follow-ups of a centre action (a merge tells its target)
        await out.send(commands_topic, key=str(cmd["caseId"]).encode("utf-8"),
                       value=json.dumps(cmd, ensure_ascii=False).encode("utf-8"))


async def send_status_replies(fx: lc.Effects, out: Deliveries | None = None) -> None:
    """Issue 15: the replies to the source systems; a shadow namespace never writes them (gridhub/core/shadow.py)."""
    if not fx.status or is_shadow():
        return
    for record in fx.status:
        name, key, value = status_replies.encode(record)
        topic = _status_topics.get(name)
        if topic is None:
            topic = _status_topics[name] = app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                                                     internal=True, partitions=spec_partitions(settings, name))
            if not await _ensure([name]):
                await topic.maybe_declare()
        if out is not None:
            await out.send(topic, key=key, value=value)
        else:
            await topic.send(key=key, value=value)


def _handle_case(kv: WriteBehind, event: faust.EventT) -> Outcome:
    try:
        case = codec("Case").decode(event.value)
    except DecodeError as exc:
        return Outcome(dead=str(exc))
    key = case["case_id"].encode("utf-8")
    hub_clock.observe(case.get("updated_at") or case.get("last_seen"))
    if event.key is not None and event.key != key:
        return Outcome(dead=f"record key {event.key!r} is not the case id {case['case_id']}")
    return processor.case(kv, _source(event), case)


@app.agent(cases_topic, name="routing.cases")
async def route_cases(stream: faust.StreamT) -> None:
    """Route each new case version (first appearance, or a change of category / township)."""
    await _declare_outputs()
    await _run(stream, "routing", table, _handle_case)


def _sender(event: faust.EventT, fb: dict[str, Any]) -> str:
    """The agency that sent ``fb``: the one a hub process verified (gateway token, or the relay's
    ``feedback.<county>.<agency>`` topic), never the record's own ``agency`` field.

    A record on ``feedback`` without the header was written by a client straight to the shared
    topic: accepted on the development broker (no ACLs, docs/security.md "migration"), refused in
    production, where only the hub may write ``feedback``.
    """
    agency = feedback_relay.verified_agency(event.headers.items() if isinstance(event.headers, dict)
                                            else event.headers)
    if agency is None:
        if settings.env == "production":
            raise lc.Rejected("unverified feedback: agencies write to feedback.<county>.<agency> "
                              "or POST /v1/feedback; the shared topic is the hub's")
        return str(fb["agency"])
    if fb["agency"] != agency:
        raise lc.Rejected(f"feedback sent by agency {agency} names agency {fb['agency']}")
    return agency


def _on_feedback(kv: WriteBehind, event: faust.EventT) -> Outcome:
    try:
        fb = lc.parse_feedback(event.value)
        if event.key is None or event.key.decode("utf-8", "replace") != fb["caseId"]:
            raise lc.Rejected(f"feedback must be keyed by its caseId {fb['caseId']} (key was {event.key!r})")
        fb["agency"] = _sender(event, fb)
    except lc.Rejected as exc:
        return Outcome(dead=str(exc), stage="feedback")
    hub_clock.observe(fb["time"])
    return processor.feedback(kv, _source(event), fb)


def _on_report(kv: WriteBehind, event: faust.EventT) -> Outcome:
    try:
        report = codec("Report").decode(event.value)
    except DecodeError as exc:
        return Outcome(dead=str(exc))
    hub_clock.observe(report.get("received_at") or report.get("reported_at"))
    return processor.report(kv, _source(event), report)


def _on_tick(kv: WriteBehind, event: faust.EventT) -> Outcome:
    try:
        now = int(json.loads(event.value)["now"])
    except (ValueError, KeyError, TypeError):
        return Outcome(dead="malformed routing timer tick")
    return processor.tick(kv, _source(event), event.key or b"", now)


_FEEDBACK, _REPORTS, _TIMERS = (settings.topic(t) for t in (T.FEEDBACK, T.REPORTS_LINKED, ROUTING_TIMERS))


def _handle_action(kv: WriteBehind, event: faust.EventT) -> Outcome:
    topic = event.message.topic
    if topic == _FEEDBACK:
        return _on_feedback(kv, event)
    if topic == _REPORTS:
        return _on_report(kv, event)
    if topic == _TIMERS:
        return _on_tick(kv, event)
    return Outcome()


@app.agent(actions_topic, name="routing.actions")
async def route_actions(stream: faust.StreamT) -> None:
    """Feedback, 回访 and deadline ticks: everything that moves a routed case along."""
    await _run(stream, "routing", table, _handle_action)


class DeadlineClock(Service):
    """Routing's clock: reloads edited rules, and every ``clock.scan_interval`` (deploy/routing.yaml)
    sends a tick to the partition of each case whose next deadline (or expiry) has passed.

    The deadlines come from :data:`deadline_index` (streams/routing/processor.py): rebuilt from the
    table once the worker's partitions change and their recovery is done, then kept by every state
    write, so a scan reads only the due entries.  It wakes every ``GRIDHUB_ROUTING_WAKE_SECONDS``, so a
    shorter ``scan_interval`` in reloaded rules takes effect without a restart.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.last_scan_s = 0.0
        self.indexed: frozenset[int] | None = None  # partitions the index was built for

    @Service.task
    async def _wake(self) -> None:
        while not self.should_stop:
            await self.sleep(settings.routing_wake_seconds)
            rules.maybe_reload()
            now_s = time.time()
            if now_s - self.last_scan_s < rules.current.scan_interval_ms / 1000:
                continue
            self.last_scan_s = now_s
            try:
                await self.scan(hub_clock.now_ms())
            except Exception as exc:  # e.g. a store closed by a rebalance mid-scan: log, scan again next time
                self.indexed = None  # rebuild: the index may have missed part of the table
                log.warning("routing_scan_failed", error=f"{exc.__class__.__name__}: {exc}")

    def _partitions(self) -> frozenset[int] | None:
        """The routing partitions this worker owns, or None while a rebalance or recovery runs."""
        faust_app: Any = app  # Faust's typing stubs omit the recovery manager and the assignor
        if faust_app.rebalancing or not faust_app.tables.recovery.completed.is_set():
            return None
        names = {settings.topic(T.CASES), _FEEDBACK, _REPORTS, _TIMERS, settings.topic(centre.COMMANDS_TOPIC)}
        return frozenset(tp.partition for tp in faust_app.assignor.assigned_actives() if tp.topic in names)

    async def scan(self, now: int) -> None:
        """Send a tick to the partition of every case whose deadline or expiry has passed."""
        partitions = self._partitions()
        if partitions is None:
            return
        if partitions != self.indexed:
            deadline_index.rebuild(list(table.items()))  # the one full read per change of partitions
            deadline_index.drop_partitions(set(partitions))
            self.indexed = partitions
            log.info("routing_deadline_index_built", partitions=sorted(partitions), entries=len(deadline_index))
        OVERDUE_CASES.set(len(deadline_index.overdue))
        for key, _due, partition in deadline_index.pop_due(now):
            await timers_topic.send(key=key, value=json.dumps({"now": now}).encode("utf-8"), partition=partition)


deadline_clock = DeadlineClock()
# Faust starts service instances as well as classes (App._prepare_subservice).
app.service(deadline_clock)  # type: ignore[arg-type]


def _handle_command(kv: WriteBehind, event: faust.EventT) -> Outcome:
    try:
        cmd = centre.parse_command(event.value or b"")
        if event.key is None or event.key.decode("utf-8", "replace") != cmd["caseId"]:
            raise lc.Rejected(f"case command must be keyed by its caseId {cmd['caseId']} (key {event.key!r})")
    except lc.Rejected as exc:
        return Outcome(dead=str(exc), stage="case-command")
    outcome = processor.command(kv, _source(event), cmd)
    if outcome.dead is None and not outcome.replayed:
        log.info("centre_action", case_id=cmd["caseId"], action=cmd["action"], operator=cmd["operator"],
                 command_id=cmd["commandId"])
    return outcome


@app.agent(commands_topic, name="routing.commands")
async def route_commands(stream: faust.StreamT) -> None:
    """Issue 15: the county centre's actions (assign, recategorise, merge, split, reopen) on ``case-commands``."""
    await _run(stream, "routing", table, _handle_command)


# --------------------------------------------------------------------------- issue 15: device events
device_events_in = app.topic(settings.topic(T.DEVICE_EVENTS), key_type=bytes, value_type=bytes, internal=True,
                             partitions=_N)
#: deviceId -> the device's open device cases (streams/routing/devices.py), JSON bytes.
device_table = app.Table("routing-devices", default=None, key_type=bytes, value_type=bytes, partitions=_N,
                         options=table_options())
#: Loaded when the worker starts (a broken file stops the start with file:line).
device_owners = devices.owners_beside(settings.routing_rules, rules.current.catalog)




def _handle_device(kv: WriteBehind, event: faust.EventT) -> Outcome:
    try:
        ev = codec("DeviceEvent").decode(event.value or b"")
    except DecodeError as exc:
        return Outcome(dead=str(exc))
    return processor.device(kv, _source(event), ev, device_owners, rules.current.catalog)


@app.agent(device_events_in, name="routing.devices")
async def route_devices(stream: faust.StreamT) -> None:
    """Device maintenance events to the owner's agency; repeated offline reports join one open device case."""
    await _run(stream, "routing", device_table, _handle_device)
