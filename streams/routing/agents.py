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

Deadlines live in the changelogged table, so they survive restarts: after a
SIGKILL the table is recovered, the scanner finds the deadline and the tick
fires it; the deadline is marked as fired in the same table write that
produced the ``overdue`` event, so it fires once (and a redelivered tick
finds it marked).  Event ids are deterministic, so even the at-least-once
window between producing and committing cannot create a *different* event.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from typing import Any

import faust
from mode import Service

from gridhub.core import topics as T
from gridhub.core.clock import HubClock
from gridhub.core.codec import DecodeError, codec
from gridhub.core.logging import get_logger
from gridhub.core.metrics import DISPATCHES, OVERDUE_CASES
from gridhub.core.kafka_admin import ensure_topics_off_loop, spec_partitions
from streams.app import app, dead_letter, settings, stop_on_infrastructure_error, table_options
from gridhub.core.shadow import is_shadow
from streams.routing import centre
from streams.routing import devices
from streams.routing import feedback as feedback_relay
from streams.routing import lifecycle as lc
from streams.routing import status as status_replies
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

_lock = asyncio.Lock()  # one case transition (read, compute, write, enqueue) at a time in this process
_dispatch_topics: dict[str, faust.TopicT] = {}
_status_topics: dict[str, faust.TopicT] = {}
#: "now" for deadlines: wall time, or event time in compressed-time demos (gridhub/core/clock.py).
hub_clock = HubClock(settings)


def _load(key: bytes) -> dict[str, Any] | None:
    raw = table.get(key)
    return json.loads(raw) if raw else None


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




def _source(event: faust.EventT) -> list[Any]:
    """Where an input record sits: the identity of a redelivery (JSON-friendly, stored in the state)."""
    return [event.message.topic, event.message.partition, event.message.offset]


async def _commit(event: faust.EventT, key: bytes, old: dict[str, Any] | None, new: dict[str, Any] | None,
                  fx: lc.Effects) -> None:
    """Write the new state, then enqueue its effects (Faust flushes both before committing the offset).

    The state also keeps the input record that produced it and that record's effects
    (``fx_src``, ``fx``): see :func:`_resend_if_redelivered`.  A Kafka error here stops the
    worker without acknowledging the record (:func:`streams.app.fail_stop`).
    """
    with stop_on_infrastructure_error(event, "routing"):
        if new is not None and new is not old:
            lc.with_replies(new, fx)  # issue 15: status.<source> replies, remembered in the state
            new["partition"] = event.message.partition
            due = lc.next_due(new, rules.current)
            new["due"] = due
            new["fx_src"], new["fx"] = _source(event), asdict(fx)
            table[key] = json.dumps(new, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            deadline_clock.ticked.pop(key, None)
        await _send_effects(fx)


async def _resend_if_redelivered(event: faust.EventT, old: dict[str, Any] | None) -> bool:
    """Is this the very record whose transition ``old`` holds?  Then send its effects again.

    A worker killed between the table write and the flush of its sends comes back with the
    new state (RocksDB or the changelog) but without the dispatches it announced, and the
    redelivered record is then "already applied": without this, those dispatches were lost
    (tests/scale/test_two_workers.py, two of 747 dispatch ids).  Ids are deterministic, so
    consumers that saw the first send see the same record twice, never a different one.  A
    *new* record with the same content (another offset) still changes nothing.
    """
    if old is None or old.get("fx_src") != _source(event):
        return False
    fx = lc.Effects(**old.get("fx", {}))
    log.info("redelivered_effects_resent", topic=event.message.topic, partition=event.message.partition,
             offset=event.message.offset, dispatches=len(fx.dispatches), events=len(fx.events))
    with stop_on_infrastructure_error(event, "routing"):  # as in _commit: a crash here would lose the record
        await _send_effects(fx)
    return True


async def _send_effects(fx: lc.Effects) -> None:
    dispatch_codec, event_codec = codec("Dispatch"), codec("CaseEvent")
    for record in fx.dispatches:
        topic = await _dispatch_topic(record["agency"])
        DISPATCHES.labels(record["agency"]).inc()
        key, value = record["caseId"].encode("utf-8"), dispatch_codec.encode(record)
        await topic.send(key=key, value=value)  # the agency's copy
        await dispatches_topic.send(key=key, value=value)  # the analysts' copy (gridhub/core/topics.py)
    for ev in fx.events:
        await case_events_topic.send(key=ev["case_id"].encode("utf-8"), value=event_codec.encode(ev))
        log.info("case_event", case_id=ev["case_id"], case_event=ev["event"], agency=ev["agency"],
                 dispatch_id=ev["dispatch_id"], state=ev["state"])
    for ev in fx.lifecycle:
        await lifecycle_topic.send(key=ev["county_code"].encode("utf-8"), value=event_codec.encode(ev))
    await send_status_replies(fx)
    for cmd in fx.commands:  # issue 15: follow-ups of a centre action (a merge tells its target)
        await commands_topic.send(key=str(cmd["caseId"]).encode("utf-8"),
                                  value=json.dumps(cmd, ensure_ascii=False).encode("utf-8"))


async def send_status_replies(fx: lc.Effects) -> None:
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
        await topic.send(key=key, value=value)


@app.agent(cases_topic, name="routing.cases")
async def route_cases(stream: faust.StreamT) -> None:
    """Route each new case version (first appearance, or a change of category / township)."""
    await _declare_outputs()
    async for event in stream.events():
        try:
            case = codec("Case").decode(event.value)
        except DecodeError as exc:
            await dead_letter(event, "routing", str(exc))
            continue
        key = case["case_id"].encode("utf-8")
        hub_clock.observe(case.get("updated_at") or case.get("last_seen"))
        if event.key is not None and event.key != key:
            await dead_letter(event, "routing", f"record key {event.key!r} is not the case id {case['case_id']}")
            continue
        async with _lock:
            old = _load(key)
            if await _resend_if_redelivered(event, old):
                continue
            try:
                new, fx = lc.on_case(old, case, rules.current)
            except (KeyError, TypeError, ValueError) as exc:
                await dead_letter(event, "routing", f"cannot route case: {exc.__class__.__name__}: {exc}")
                continue
            await _commit(event, key, old, new, fx)


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


async def _on_feedback(event: faust.EventT) -> None:
    try:
        fb = lc.parse_feedback(event.value)
        if event.key is None or event.key.decode("utf-8", "replace") != fb["caseId"]:
            raise lc.Rejected(f"feedback must be keyed by its caseId {fb['caseId']} (key was {event.key!r})")
        fb["agency"] = _sender(event, fb)
        key = fb["caseId"].encode("utf-8")
        hub_clock.observe(fb["time"])
        old = _load(key)
        if await _resend_if_redelivered(event, old):
            return
        new, fx = lc.on_feedback(old, fb, rules.current)
    except lc.Rejected as exc:
        await dead_letter(event, "feedback", str(exc))
        return
    await _commit(event, key, old, new, fx)


async def _on_report(event: faust.EventT) -> None:
    try:
        report = codec("Report").decode(event.value)
    except DecodeError as exc:
        await dead_letter(event, "routing", str(exc))
        return
    hub_clock.observe(report.get("received_at") or report.get("reported_at"))
    if not report.get("case_id"):
        return
    key = str(report["case_id"]).encode("utf-8")
    old = _load(key)
    if await _resend_if_redelivered(event, old):
        return
    # issue 15: remember the source id (status replies) and a 12345 order's own deadline
    new, fx = lc.on_linked(old, report)
    if report.get("source") == "hotline-12345" and report.get("satisfaction"):  # 回访
        at = int(report.get("received_at") or report["reported_at"])
        new, review_fx = lc.on_review(new, str(report["satisfaction"]), at, report.get("report_id"), rules.current)
        for name in ("dispatches", "events", "lifecycle", "status"):
            getattr(fx, name).extend(getattr(review_fx, name))
    await _commit(event, key, old, new, fx)


async def _on_tick(event: faust.EventT) -> None:
    key = event.key or b""
    old = _load(key)
    if old is None or await _resend_if_redelivered(event, old):
        return
    try:
        now = int(json.loads(event.value)["now"])
    except (ValueError, KeyError, TypeError):
        await dead_letter(event, "routing", "malformed routing timer tick")
        return
    new, fx = lc.on_tick(old, now, rules.current)
    if fx:
        await _commit(event, key, old, new, fx)


@app.agent(actions_topic, name="routing.actions")
async def route_actions(stream: faust.StreamT) -> None:
    """Feedback, 回访 and deadline ticks: everything that moves a routed case along."""
    feedback, reports, timers = (settings.topic(t) for t in (T.FEEDBACK, T.REPORTS_LINKED, ROUTING_TIMERS))
    async for event in stream.events():
        topic = event.message.topic
        async with _lock:
            if topic == feedback:
                await _on_feedback(event)
            elif topic == reports:
                await _on_report(event)
            elif topic == timers:
                await _on_tick(event)


class DeadlineClock(Service):
    """Routing's clock: reloads edited rules, and every ``clock.scan_interval`` (deploy/routing.yaml)
    sends a tick to the partition of each case whose next deadline has passed, once per deadline.

    Its state lives here, on one instance per worker: when it last scanned, and which deadline of each
    case it has already ticked (so a slow tick is not sent again at every scan).  It wakes every
    ``GRIDHUB_ROUTING_WAKE_SECONDS``, so a shorter ``scan_interval`` in reloaded rules takes effect
    without a restart.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.last_scan_s = 0.0
        self.ticked: dict[bytes, int] = {}  # case key -> due instant already ticked

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
                log.warning("routing_scan_failed", error=f"{exc.__class__.__name__}: {exc}")

    async def scan(self, now: int) -> None:
        """Send a tick to the partition of every case whose next deadline has passed."""
        overdue = 0
        due_keys: list[tuple[bytes, int, int]] = []
        for key, raw in list(table.items()):
            if not raw:
                continue
            state = json.loads(raw)
            if (any(d.get("fired") for d in state.get("dispatches", {}).values())
                    and state.get("status") in lc.OPEN_STATES):
                overdue += 1
            due = state.get("due")
            if due is not None and int(due) <= now and self.ticked.get(key) != int(due):
                due_keys.append((key, int(due), int(state.get("partition", 0))))
        OVERDUE_CASES.set(overdue)
        for key, due, partition in due_keys:
            self.ticked[key] = due
            await timers_topic.send(key=key, value=json.dumps({"now": now}).encode("utf-8"), partition=partition)


deadline_clock = DeadlineClock()
# Faust starts service instances as well as classes (App._prepare_subservice).
app.service(deadline_clock)  # type: ignore[arg-type]


@app.agent(commands_topic, name="routing.commands")
async def route_commands(stream: faust.StreamT) -> None:
    """Issue 15: the county centre's actions (assign, recategorise, merge, split, reopen) on ``case-commands``."""
    async for event in stream.events():
        async with _lock:
            try:
                cmd = centre.parse_command(event.value or b"")
                if event.key is None or event.key.decode("utf-8", "replace") != cmd["caseId"]:
                    raise lc.Rejected(f"case command must be keyed by its caseId {cmd['caseId']} (key {event.key!r})")
                key = cmd["caseId"].encode("utf-8")
                old = _load(key)
                if await _resend_if_redelivered(event, old):
                    continue
                new, fx = centre.on_command(old, cmd, rules.current)
            except lc.Rejected as exc:
                await dead_letter(event, "case-command", str(exc))
                continue
            log.info("centre_action", case_id=cmd["caseId"], action=cmd["action"], operator=cmd["operator"],
                     command_id=cmd["commandId"])
            await _commit(event, key, old, new, fx)


# --------------------------------------------------------------------------- issue 15: device events
device_events_in = app.topic(settings.topic(T.DEVICE_EVENTS), key_type=bytes, value_type=bytes, internal=True,
                             partitions=_N)
#: deviceId -> the device's open device cases (streams/routing/devices.py), JSON bytes.
device_table = app.Table("routing-devices", default=None, key_type=bytes, value_type=bytes, partitions=_N,
                         options=table_options())
#: Loaded when the worker starts (a broken file stops the start with file:line).
device_owners = devices.owners_beside(settings.routing_rules, rules.current.catalog)


@app.agent(device_events_in, name="routing.devices")
async def route_devices(stream: faust.StreamT) -> None:
    """Device maintenance events to the owner's agency; repeated offline reports join one open device case."""
    async for event in stream.events():
        try:
            ev = codec("DeviceEvent").decode(event.value or b"")
        except DecodeError as exc:
            await dead_letter(event, "routing", str(exc))
            continue
        key = str(ev["device_id"]).encode("utf-8")
        raw = device_table.get(key)
        old = json.loads(raw) if raw else None
        if old is not None and old.get("fx_src") == _source(event):
            with stop_on_infrastructure_error(event, "routing"):  # redelivered after a crash: same effects again
                await _send_effects(lc.Effects(**old.get("fx", {})))
            continue
        new, fx = devices.on_device_event(old, ev, device_owners, rules.current.catalog)
        with stop_on_infrastructure_error(event, "routing"):
            if fx:
                new["fx_src"], new["fx"] = _source(event), asdict(fx)
            device_table[key] = json.dumps(new, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            await _send_effects(fx)
