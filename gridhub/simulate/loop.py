"""Simulated agencies and citizens: the other half of the closed loop (``gridhub simulate --closed-loop``).

Without them the hub dispatches into the void: nobody signs, returns, extends
or resolves, no 12345 回访 arrives, and every indicator of the township index
is empty or zero (issue 19).  :class:`ClosedLoop` plays both parts from outside
the hub, through the hub's public interfaces only:

* **agencies** read every dispatch (the hub's ``dispatches`` topic: the union of
  the ``dispatch.<county>.<agency>`` topics, so one consumer serves all
  simulated agencies) and answer on ``feedback`` (CONTRACTS 2: one JSON record
  per action, keyed by ``caseId``).  Each lead dispatch gets a fate drawn from
  :data:`FATES`: signed in time and resolved in time; 延期 then resolved in the
  extended time; signed late (the hub emits ``overdue`` and escalates, 督办);
  resolved late; 退单 (the hub re-routes; a re-routed dispatch is never returned
  again); or left open.  Assisting dispatches are signed.  A withdrawn dispatch
  (the case moved) gets nothing more.
* **citizens**: when a case with 12345 orders is resolved, the hotline sends each
  order's 已办结 update and then a 回访 (``已回访`` with ``satisfaction`` 满意 /
  基本满意 / 不满意) as an order update on ``raw.hotline-12345``, the way a
  12345 platform pushes it.  Late or returned cases are rated worse.  Which
  orders belong to which case is read from ``reports.linked`` (the hub's
  report -> case mapping; in production the 12345 platform learns it from the
  status replies of CONTRACTS 5).

Time: each action has a simulated instant and is sent when the simulator's
compressed clock (:func:`gridhub.core.clock.compressed_ms`) reaches it, never ahead
of it.  The hub runs on event time, a lag behind the events it has seen
(``GRIDHUB_CLOCK=event``), so an in-time answer arrives before its deadline is
due however loaded the machine is.  A late answer waits for the proof that the
hub fired the deadline: the 督办 dispatch it sends up the chain for that very
dispatch (``previousDispatchId``); only then is the late 签收 or 办结 sent, with
the simulated time of that moment.
"""

from __future__ import annotations

import heapq
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gridhub.core.clock import compressed_ms
from gridhub.core.logging import get_logger
from gridhub.core.settings import Settings

log = get_logger(__name__)

HOUR = 3_600_000
MINUTE = 60_000

#: What an agency does with a lead dispatch (relative weights).  Chosen so a demo shows every
#: branch of the loop with most cases handled in time, as county centres report (on-time rates
#: of 80-90 % are the usual 晾晒 range).
FATES: dict[str, float] = {
    "in_time": 0.62, "extend": 0.08, "late_sign": 0.09, "late_resolve": 0.09, "return": 0.07, "open": 0.05,
}
#: 回访 results (满意 / 基本满意 / 不满意): for cases handled in time, and for late or returned ones.
SATISFACTION_IN_TIME = (0.75, 0.18, 0.07)
SATISFACTION_LATE = (0.40, 0.30, 0.30)
SATISFACTION = ("满意", "基本满意", "不满意")
#: Share of resolved 12345 orders whose caller is reached for the 回访 (the rest are auto-closed by
#: the hub after ``review.auto_close``); hotlines reach most callers.
REVIEW_REACHED = 0.85
RETURN_NOTES = ("不属于本单位职责范围，申请退回重新分派", "经核实该事项属其他部门管辖", "地址不在本辖区")
EXTEND_NOTES = ("需协调多部门联合处置，申请延期", "等待材料和现场复核，申请延期", "施工队排期，申请延期")
RESOLVE_NOTES = ("已现场处置完毕", "已整改到位，群众认可", "已协调相关单位处理完成")


@dataclass(frozen=True)
class LoopTiming:
    """The hub's settings the agencies must respect (read from deploy/routing.yaml by :func:`timing_from`)."""

    speed: float                 # simulated ms per wall ms (gridhub.core.clock.compressed_ms)
    sync_ms: int                 # the wall instant the simulated clock meets wall time
    grace_ms: int = 24 * HOUR    # routing's escalation.grace: the new deadline after a 督办
    max_extension_ms: int = 7 * 24 * HOUR  # routing's extension.max_each

    def now(self) -> int:
        return compressed_ms(int(time.time() * 1000), self.speed, self.sync_ms)



def timing_from(settings: Settings, speed: float, sync_ms: int) -> LoopTiming:
    import yaml

    from gridhub.core.yamlconf import parse_duration_ms

    doc = yaml.safe_load(settings.routing_rules.read_text(encoding="utf-8")) or {}
    return LoopTiming(
        speed=speed, sync_ms=sync_ms,
        grace_ms=parse_duration_ms((doc.get("escalation") or {}).get("grace", "24h")),
        max_extension_ms=parse_duration_ms((doc.get("extension") or {}).get("max_each", "7d")),
    )


@dataclass
class _Dispatch:
    dispatch_id: str
    case_id: str
    agency: str
    fate: str
    dispatched_at: int
    sign_deadline: int
    resolve_deadline: int


@dataclass
class LoopState:
    """What the loop did (for the summary) and what it knows."""

    sent: Counter[str] = field(default_factory=Counter)
    fates: Counter[str] = field(default_factory=Counter)
    case_orders: dict[str, set[str]] = field(default_factory=dict)
    withdrawn: set[str] = field(default_factory=set)
    escalated: set[str] = field(default_factory=set)  # dispatch ids the hub escalated (督办) for being late
    waiting: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # late actions awaiting their 督办
    last_sent: dict[str, int] = field(default_factory=dict)  # dispatch id -> time of its last answer
    seen: set[str] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)


def plan_dispatch(rng: random.Random, d: dict[str, Any],
                  timing: LoopTiming) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
    """The fate of one dispatch and its feedback actions as (simulated instant, action) pairs.  Pure."""
    did, case_id, agency = d["dispatchId"], d["caseId"], d["agency"]
    at = int(d["dispatchedAt"])
    sign_dl = int(d.get("signDeadline") or at + 2 * HOUR)
    resolve_dl = int(d.get("resolveDeadline") or at + 5 * 24 * HOUR)
    sign_win = max(MINUTE, sign_dl - at)

    def fb(action: str, t: int, note: str | None = None, deadline: int | None = None,
           after_escalation: bool = False) -> tuple[int, dict[str, Any]]:
        return t, {"dispatchId": did, "caseId": case_id, "agency": agency, "action": action, "time": t,
                   "note": note, "deadline": deadline, "_resolve_deadline": resolve_dl,
                   "_after_escalation": after_escalation}

    if d.get("role") != "lead":
        return "assist", [fb("sign", at + int(sign_win * rng.uniform(0.1, 0.5)))]
    fates = dict(FATES)
    if d.get("previousDispatchId") or agency.endswith(".zzzx"):
        fates.pop("return")  # a re-routed case is never handed back twice; the centres do not hand back
    fate = rng.choices(list(fates), list(fates.values()))[0]
    if fate == "return":
        return fate, [fb("return", at + int(sign_win * rng.uniform(0.2, 0.8)), rng.choice(RETURN_NOTES))]
    if fate == "late_sign":
        # after the hub fired the 签收 deadline (督办), well before the grace it granted runs out
        t_sign = sign_dl + int(rng.uniform(0.05, 0.25) * timing.grace_ms)
    else:
        t_sign = at + int(sign_win * rng.uniform(0.05, 0.7))
    out = [fb("sign", t_sign, after_escalation=fate == "late_sign")]
    if fate == "open":
        return fate, out
    deadline = resolve_dl
    if fate == "extend":
        extra = int(min(timing.max_extension_ms, 3 * 24 * HOUR) * rng.uniform(0.3, 1.0))
        t_ext = t_sign + int((resolve_dl - t_sign) * rng.uniform(0.2, 0.6))
        deadline = resolve_dl + extra
        out.append(fb("extend", t_ext, rng.choice(EXTEND_NOTES), deadline))
    if fate == "late_resolve":
        t_res = resolve_dl + int(rng.uniform(0.05, 0.25) * timing.grace_ms)
    else:
        start = max(t_sign, out[-1][0])
        t_res = start + int(max(MINUTE, deadline - start) * rng.uniform(0.05, 0.5))  # most well inside
    t_res = max(t_res, t_sign + MINUTE)
    out.append(fb("resolve", t_res, rng.choice(RESOLVE_NOTES), after_escalation=fate == "late_resolve"))
    for _, action in out:
        action["_fate"] = fate
    return fate, out


class ClosedLoop:
    """Agencies and citizens in one background thread (kafka-python consumer + the simulator's producer)."""

    def __init__(self, settings: Settings, producer: Any, hotline_docs: dict[str, dict[str, Any]],
                 timing: LoopTiming, seed: int = 1) -> None:
        self.settings = settings
        self.producer = producer
        self.hotline_docs = hotline_docs  # orderNo -> latest document the simulator sent (shared, read-only here)
        self.timing = timing
        self.seed = seed
        self.state = LoopState()
        self._heap: list[tuple[int, int, dict[str, Any]]] = []
        self._seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="closed-loop", daemon=True)
        self.failed = False

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    # --- scheduling ------------------------------------------------------------------------------
    def _push(self, at: int, item: dict[str, Any]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, item))

    def _on_dispatch(self, d: dict[str, Any]) -> None:
        did = d["dispatchId"]
        if d.get("action") == "withdraw":
            self.state.withdrawn.add(did)
            return
        if d.get("reason") == "escalation":
            # The hub fired a deadline of the dispatch this one supervises: its late answer may go now.
            self.state.escalated.add(str(d.get("previousDispatchId")))
            return  # the centre supervises (督办) and does not sign
        if did in self.state.seen:
            return  # a redelivery
        self.state.seen.add(did)
        rng = random.Random(f"{self.seed}|{did}")  # the same dispatch always meets the same fate
        fate, plan = plan_dispatch(rng, d, self.timing)
        self.state.fates[fate] += 1
        for at, action in plan:
            self._push(at, {"kind": "feedback", **action})

    def _on_report(self, r: dict[str, Any]) -> None:
        if r.get("source") == "hotline-12345" and r.get("case_id"):
            self.state.case_orders.setdefault(str(r["case_id"]), set()).add(str(r["source_ref"]))

    def _citizens(self, action: dict[str, Any]) -> None:
        """After a lead's 办结: each 12345 order of the case gets 已办结, then (mostly) a 回访."""
        rng = random.Random(f"{self.seed}|review|{action['dispatchId']}")
        late = action.get("_fate") in ("late_sign", "late_resolve") or action["time"] > action["_resolve_deadline"]
        weights = SATISFACTION_LATE if late else SATISFACTION_IN_TIME
        t = int(action["time"])
        self._push(t + rng.randint(5, 120) * MINUTE, {"kind": "order", "case": action["caseId"], "status": "已办结"})
        if rng.random() < REVIEW_REACHED:
            self._push(t + rng.randint(2, 30) * HOUR, {"kind": "order", "case": action["caseId"], "status": "已回访",
                                                       "satisfaction": rng.choices(SATISFACTION, weights)[0]})

    def _send(self, at: int, item: dict[str, Any]) -> None:
        if item["kind"] == "feedback":
            if item["dispatchId"] in self.state.withdrawn:
                self.state.sent["skipped_withdrawn"] += 1
                return
            did = item["dispatchId"]
            held = any(w[1]["dispatchId"] == did for w in self.state.waiting)
            if held or (item["_after_escalation"] and did not in self.state.escalated):
                self.state.waiting.append((at, item))  # the hub has not fired the deadline yet: keep the order
                return
            t = int(item["time"])
            if item["_after_escalation"]:
                t = max(t, self.timing.now())  # answered when the 督办 was seen
            if did in self.state.last_sent:
                t = max(t, self.state.last_sent[did] + MINUTE)  # one dispatch's answers never go back in time
            self.state.last_sent[did] = t
            item = {**item, "time": t}
            body = {k: v for k, v in item.items() if not k.startswith("_") and k != "kind"}
            self.producer.send(self.settings.topic("feedback"), key=item["caseId"].encode("utf-8"),
                               value=json.dumps(body, ensure_ascii=False).encode("utf-8"))
            self.state.sent[item["action"]] += 1
            if item["action"] == "resolve":
                self._citizens(item)
            return
        orders = sorted(self.state.case_orders.get(item["case"], ()))
        for order_no in orders:
            doc = self.hotline_docs.get(order_no)
            if doc is None:
                continue
            doc = {**doc, "status": item["status"]}
            if "satisfaction" in item:
                doc["satisfaction"] = item["satisfaction"]
            self.hotline_docs[order_no] = doc
            value = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            # The record time is the simulated instant: ingest takes it as the time the hub received the update.
            self.producer.send(self.settings.topic("raw.hotline-12345"), key=order_no.encode("utf-8"), value=value,
                               timestamp_ms=at)
            self.state.sent["review" if "satisfaction" in item else "order_resolved"] += 1

    # --- the thread --------------------------------------------------------------------------------
    def _assign(self, consumer: Any, topics: dict[str, str]) -> None:
        """Every partition of both topics, from the beginning: no consumer group, so no join or
        rebalance can leave the agencies without partitions (one process reads everything)."""
        from kafka import TopicPartition

        partitions: list[Any] = []
        deadline = time.monotonic() + 60
        for topic in topics:
            found = consumer.partitions_for_topic(topic)
            while not found and time.monotonic() < deadline and not self._stop.is_set():
                time.sleep(0.5)  # created a moment ago: metadata not there yet
                found = consumer.partitions_for_topic(topic)
            if not found:
                raise RuntimeError(f"topic {topic} has no partitions")
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)

    def _run(self) -> None:
        from kafka import KafkaConsumer

        from gridhub.core.codec import codec

        topics = {self.settings.topic("dispatches"): "Dispatch", self.settings.topic("reports.linked"): "Report"}
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
            metadata_max_age_ms=5000, client_id="gridhub-sim-agencies", **self.settings.kafka_client_options())
        try:
            self._assign(consumer, topics)
            while not self._stop.is_set():
                for tp, messages in consumer.poll(timeout_ms=200).items():
                    for msg in messages:
                        try:
                            record = codec(topics[tp.topic]).decode(msg.value)
                            if topics[tp.topic] == "Dispatch":
                                self._on_dispatch(record)
                            else:
                                self._on_report(record)
                        except Exception as exc:  # one bad record costs that record, not the loop
                            self.state.errors[type(exc).__name__] += 1
                            log.warning("closed_loop_record_skipped", topic=tp.topic, offset=msg.offset,
                                        error=f"{exc.__class__.__name__}: {exc}")
                now = self.timing.now()
                ready = [w for w in self.state.waiting if w[1]["dispatchId"] in self.state.escalated]
                if ready:
                    self.state.waiting = [w for w in self.state.waiting if w not in ready]
                    for at, item in ready:
                        self._push(at, item)
                while self._heap and self._heap[0][0] <= now:
                    at, _, item = heapq.heappop(self._heap)
                    self._send(at, item)
        except Exception as exc:  # a dead loop must be visible in the summary, not a silent thread
            log.error("closed_loop_failed", error=f"{exc.__class__.__name__}: {exc}")
            self.state.errors[type(exc).__name__] += 1
            self.failed = True
        finally:
            consumer.close()

    def summary(self) -> dict[str, Any]:
        return {"sent": dict(self.state.sent), "lead_fates": dict(self.state.fates),
                "pending": len(self._heap), "waiting_for_escalation": len(self.state.waiting),
                "errors": dict(self.state.errors)}
