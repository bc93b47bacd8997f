"""Routing's per-input decision, pure: ``(KV, input position, input) -> effects``.

The Faust agents (streams/routing/agents.py) decode records, hand them here and produce what
comes back; everything that decides what an input does lives in this module, over a plain
key-value view of the routing table, so it is unit-tested (and crash-tested: the Hypothesis
state machine in tests/streams/routing/test_routing_model.py) without Kafka.

**Outbox (issue 14 item 3).**  Every input applied to a case leaves an entry in the case's
state: its position (topic, partition, offset) and exactly the effects it produced (or the
reason it was dead-lettered).  A redelivered input - the worker died after writing state but
before the input's offset was committed - finds its entry and re-emits those effects with the
same ids, whatever was applied to the case after it (case v1 then v2, sign then resolve): the
lifecycle's version and already-applied checks would otherwise make it a no-op and lose a
dispatch or a ``resolved``.  An input whose state write was lost finds no entry and is simply
computed again (ids are deterministic).  Entries are pruned once the input partition's
committed offset has passed them (the consumer's committed offsets, ``committed(topic,
partition)``): Kafka never redelivers below the committed offset, so they can never be asked
for again.  :data:`OUTBOX_KEEP` is a safety net for a consumer that reports no committed offset.

**Bounded state (item 4).**  A closed case gets an expiry instant (``closed_at +
retention.closed_days``); the deadline index ticks it then, and the tick deletes the key (a
tombstone in the changelog).

**Deadline index (item 4).**  :class:`DeadlineIndex` keeps ``(due, case)`` in a heap, updated
on every state write and rebuilt from the table when the worker's partitions change, so a
deadline scan reads only the entries that are due, not every case ever routed.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol

from gridhub.core.errors import Rejected
from gridhub.core.logging import get_logger
from streams.routing import centre, devices
from streams.routing import lifecycle as lc
from streams.routing.lifecycle import decode_state as decode, encode_state as encode
from streams.routing.rules import RuleSet

log = get_logger(__name__)

#: Where an input record sits: (topic, partition, offset), the identity of a redelivery.
Position = tuple[str, int, int]
#: ``committed(topic, partition)``: the next offset the group will read after a restart, or None if unknown.
Committed = Callable[[str, int], "int | None"]

#: Outbox entries kept per key when the consumer cannot say what is committed (a fresh assignment
#: before its first commit).  Faust commits every 2.8 s (``broker_commit_interval``) and a case gets
#: a handful of inputs in its life (versions, 签收/办结, 回访, ticks), so 64 inputs of ONE case inside
#: one uncommitted window does not happen in practice; dropping one beyond it is logged.
OUTBOX_KEEP = 64
#: A due entry ticked but not yet cleared by the tick's state write is ticked again this much later
#: (hub-clock ms): a tick lost with a crashed worker is not lost forever.  12 x the default 5 s scan.
RETICK_MS = 60_000


class KV(Protocol):
    """The routing table as the processor sees it: bytes keys, JSON bytes values, ``None`` = absent."""

    def get(self, key: bytes) -> bytes | None: ...

    def set(self, key: bytes, value: bytes | None) -> None: ...


class DictKV:
    """A KV over a dict (tests, and the model's "durable" store)."""

    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        self.data: dict[bytes, bytes] = data if data is not None else {}
        self.reads = 0

    def get(self, key: bytes) -> bytes | None:
        self.reads += 1
        return self.data.get(key)

    def set(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value


class WriteBehind:
    """A batch's view of the table: reads fall through, writes stay here until :meth:`changes`.

    One changelog record per changed key per batch instead of one per event (issue 14 item 1);
    a key set to ``None`` is deleted (a tombstone) at flush.
    """

    _ABSENT = object()

    def __init__(self, reader: Callable[[bytes], bytes | None]) -> None:
        self._reader = reader
        self._dirty: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self._dirty:
            return self._dirty[key]
        return self._reader(key)

    def set(self, key: bytes, value: bytes | None) -> None:
        self._dirty[key] = value

    def changes(self) -> dict[bytes, bytes | None]:
        """The writes of the batch, and forget them (the caller writes them to the table)."""
        out, self._dirty = self._dirty, {}
        return out


@dataclass
class Outcome:
    """What one input does: effects to produce, or the reason to dead-letter it."""

    effects: lc.Effects = field(default_factory=lc.Effects)
    dead: str | None = None  # dead-letter reason (the agent sends the original bytes)
    stage: str = "routing"  # the dead letter's error.stage
    replayed: bool = False  # re-emitted from the outbox (a redelivery)


def _expiry(state: Mapping[str, Any], rules: RuleSet) -> int | None:
    """When the state may leave the table: ``retention.closed`` after the case closed.  A placeholder
    (a linked report whose case never came, e.g. a late 回访 of an expired case) expires as long
    after it was created, so it cannot stay for good either."""
    if state.get("status") == "closed" and state.get("closed_at") is not None:
        return int(state["closed_at"]) + rules.retention_closed_ms
    if state.get("placeholder"):
        return int(state["opened_at"]) + rules.retention_closed_ms
    return None


def _outbox(state: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The state's outbox entries; a state written before the outbox kept its last input as
    ``fx_src`` / ``fx``, read as a first entry so an upgrade loses no redelivery."""
    if not state:
        return []
    entries = list(state.get("outbox") or [])
    if state.get("fx_src") is not None:
        entries.insert(0, {"at": list(state["fx_src"]), "fx": state.get("fx") or {}})
    return entries


def _effects(doc: Mapping[str, Any] | None) -> lc.Effects:
    return lc.Effects(**(doc or {}))


class Processor:
    """The routing decision per input; one per worker, stateless apart from its settings.

    ``rules`` returns the current rules (they reload live; ``retention.closed`` is one of them);
    ``committed`` the consumer's committed offsets; ``index`` (optional) is told about every state
    write so the deadline scan stays exact.
    """

    def __init__(self, rules: Callable[[], RuleSet], committed: Committed | None = None,
                 index: "DeadlineIndex | None" = None) -> None:
        self.rules = rules
        self.committed: Committed = committed or (lambda topic, partition: None)
        self.index = index

    # ----------------------------------------------------------------- outbox
    def _replay(self, state: Mapping[str, Any] | None, pos: Position) -> Outcome | None:
        for entry in _outbox(state):
            if tuple(entry["at"]) == tuple(pos):
                fx = _effects(entry.get("fx"))
                log.info("redelivered_effects_resent", topic=pos[0], partition=pos[1], offset=pos[2],
                         dispatches=len(fx.dispatches), events=len(fx.events), dead=entry.get("dead"))
                return Outcome(fx, dead=entry.get("dead"), stage=entry.get("stage", "routing"), replayed=True)
        return None

    def _remember(self, state: dict[str, Any], pos: Position, fx: lc.Effects | None, dead: str | None = None,
                  stage: str = "routing") -> None:
        """Add this input's entry; drop those the committed offsets have passed (never asked for again)."""
        kept = []
        for entry in _outbox(state):
            topic, partition, offset = entry["at"]
            committed = self.committed(str(topic), int(partition))
            if committed is not None and int(offset) < committed:
                continue
            kept.append(entry)
        entry_doc: dict[str, Any] = {"at": list(pos)}
        if fx:
            entry_doc["fx"] = fx.as_doc()
        if dead is not None:
            entry_doc["dead"], entry_doc["stage"] = dead, stage
        kept.append(entry_doc)
        if len(kept) > OUTBOX_KEEP:
            log.warning("routing_outbox_full", key=state.get("case_id") or state.get("device_id"),
                        dropped=kept[0]["at"], keep=OUTBOX_KEEP)
            kept = kept[-OUTBOX_KEEP:]
        state["outbox"] = kept
        state.pop("fx_src", None)  # the one-entry form written before the outbox (now in ``kept``)
        state.pop("fx", None)

    # ----------------------------------------------------------------- case inputs
    def _apply(self, kv: KV, key: bytes, pos: Position,
               step: Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, lc.Effects]],
               stage: str = "routing", remember_rejections: bool = True) -> Outcome:
        old = decode(kv.get(key))
        replay = self._replay(old, pos)
        if replay is not None:
            return replay
        try:
            new, fx = step(old)
        except Rejected as exc:
            if old is not None and remember_rejections:
                # A later input may make this one legal (resolve before sign, then sign): the redelivery
                # must be dead-lettered again, not applied to the newer state.
                state = dict(old)
                self._remember(state, pos, None, dead=str(exc), stage=stage)
                self._write(kv, key, state, pos[1])
            return Outcome(dead=str(exc), stage=stage)
        if new is None or (new is old and not fx):
            return Outcome(fx)
        new = dict(new) if new is old else new
        lc.with_replies(new, fx)  # issue 15: status.<source> replies, remembered in the state
        self._remember(new, pos, fx)
        self._write(kv, key, new, pos[1])
        return Outcome(fx)

    def _write(self, kv: KV, key: bytes, state: dict[str, Any], partition: int) -> None:
        rules = self.rules()
        state["partition"] = partition
        state["due"] = lc.next_due(state, rules)
        state["expires"] = _expiry(state, rules)
        kv.set(key, encode(state))
        if self.index is not None:
            self.index.update(key, state)

    def case(self, kv: KV, pos: Position, case: Mapping[str, Any]) -> Outcome:
        """A case version from fusion: route it, or re-route it (lifecycle.on_case)."""
        key = str(case["case_id"]).encode("utf-8")

        def step(old: dict[str, Any] | None) -> tuple[dict[str, Any] | None, lc.Effects]:
            try:
                return lc.on_case(old, case, self.rules())
            except (KeyError, TypeError, ValueError) as exc:
                raise Rejected(f"cannot route case: {exc.__class__.__name__}: {exc}") from exc

        return self._apply(kv, key, pos, step)

    def feedback(self, kv: KV, pos: Position, fb: Mapping[str, Any]) -> Outcome:
        """An agency action, already parsed and its sender verified (lifecycle.on_feedback)."""
        return self._apply(kv, str(fb["caseId"]).encode("utf-8"), pos,
                           lambda old: lc.on_feedback(old, fb, self.rules()), stage="feedback")

    def report(self, kv: KV, pos: Position, report: Mapping[str, Any]) -> Outcome:
        """A report linked to a case: source ids for the replies, a 12345 办理时限, a 回访."""
        if not report.get("case_id"):
            return Outcome()
        rules = self.rules()

        def step(old: dict[str, Any] | None) -> tuple[dict[str, Any] | None, lc.Effects]:
            new, fx = lc.on_linked(old, report)
            if report.get("source") == "hotline-12345" and report.get("satisfaction"):  # 回访
                at = int(report.get("received_at") or report["reported_at"])
                new, review_fx = lc.on_review(new, str(report["satisfaction"]), at, report.get("report_id"), rules)
                for name in ("dispatches", "events", "lifecycle", "status"):
                    getattr(fx, name).extend(getattr(review_fx, name))
            return new, fx

        return self._apply(kv, str(report["case_id"]).encode("utf-8"), pos, step)

    def command(self, kv: KV, pos: Position, cmd: Mapping[str, Any]) -> Outcome:
        """A county centre action (centre.on_command)."""
        return self._apply(kv, str(cmd["caseId"]).encode("utf-8"), pos,
                           lambda old: centre.on_command(old, dict(cmd), self.rules()), stage="case-command")

    def tick(self, kv: KV, pos: Position, key: bytes, now: int) -> Outcome:
        """A deadline tick for ``key`` at hub-clock ``now``: fire what is due, or expire a closed case."""
        old = decode(kv.get(key))
        if old is None:
            return Outcome()
        replay = self._replay(old, pos)
        if replay is not None:
            return replay
        expires = old.get("expires")
        if expires is not None and int(expires) <= now and _expiry(old, self.rules()) is not None:
            kv.set(key, None)  # retention.closed_days passed: the changelog gets a tombstone
            if self.index is not None:
                self.index.update(key, None)
            log.info("routing_case_expired", case_id=old.get("case_id"), closed_at=old.get("closed_at"))
            return Outcome()
        new, fx = lc.on_tick(old, now, self.rules())
        if not fx:
            if self.index is not None:
                self.index.update(key, old)  # nothing due after all (e.g. a stale tick): keep the entry exact
            return Outcome()
        lc.with_replies(new, fx)
        self._remember(new, pos, fx)
        self._write(kv, key, new, pos[1])
        return Outcome(fx)

    # ----------------------------------------------------------------- devices
    def device(self, kv: KV, pos: Position, ev: Mapping[str, Any], owners: devices.Owners,
               catalog: Any) -> Outcome:
        """A DeviceEvent to the device's open device cases (devices.on_device_event), with the same outbox."""
        key = str(ev["device_id"]).encode("utf-8")
        old = decode(kv.get(key))
        replay = self._replay(old, pos)
        if replay is not None:
            return replay
        new, fx = devices.on_device_event(old, ev, owners, catalog)
        if old is not None and new == old:
            return Outcome(fx)
        self._remember(new, pos, fx)
        kv.set(key, encode(new))
        return Outcome(fx)


# --------------------------------------------------------------------------- deadline index
class DeadlineIndex:
    """``(due, case)`` of this worker's partitions, earliest first: a scan reads only what is due.

    In memory, rebuilt from the table (:meth:`rebuild`) whenever the worker's set of partitions
    changes (after the table's recovery, so it reflects the changelog: deadlines survive a restart),
    and kept exact by :meth:`update` on every state write.  Stale heap entries (a case whose due
    moved) are skipped lazily: ``current`` holds each key's live due.  ``examined`` counts heap
    entries looked at, the figure the tests use to show a scan does not walk every case.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, bytes, int]] = []  # (when to tick, key, due it ticks for)
        self.current: dict[bytes, tuple[int, int]] = {}  # key -> (due, partition)
        self.overdue: set[bytes] = set()  # open cases with a fired deadline (the OVERDUE_CASES gauge)
        self.examined = 0

    def __len__(self) -> int:
        return len(self.current)

    @staticmethod
    def due_of(state: Mapping[str, Any]) -> int | None:
        dues = [int(v) for v in (state.get("due"), state.get("expires")) if v is not None]
        return min(dues) if dues else None

    def update(self, key: bytes, state: Mapping[str, Any] | None) -> None:
        due = self.due_of(state) if state is not None else None
        if state is not None and state.get("status") in lc.OPEN_STATES \
                and any(d.get("fired") for d in state.get("dispatches", {}).values()):
            self.overdue.add(key)
        else:
            self.overdue.discard(key)
        if due is None:
            self.current.pop(key, None)
            return
        partition = int((state or {}).get("partition", 0))
        if self.current.get(key) == (due, partition):
            return
        self.current[key] = (due, partition)
        heapq.heappush(self._heap, (due, key, due))

    def rebuild(self, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        """From the table's (key, value) pairs: the one full read, at a change of partitions."""
        self._heap, self.current, self.overdue = [], {}, set()
        for key, raw in items:
            state = decode(raw)
            if state is not None and "case_id" in state:
                self.update(key, state)
        heapq.heapify(self._heap)

    def drop_partitions(self, keep: set[int]) -> None:
        for key, (_, partition) in list(self.current.items()):
            if partition not in keep:
                del self.current[key]
                self.overdue.discard(key)

    def pop_due(self, now: int, retick_ms: int = RETICK_MS) -> list[tuple[bytes, int, int]]:
        """``(key, due, partition)`` of every case due at ``now``, each once per :data:`RETICK_MS`."""
        out: list[tuple[bytes, int, int]] = []
        while self._heap and self._heap[0][0] <= now:
            when, key, due = heapq.heappop(self._heap)
            self.examined += 1
            live = self.current.get(key)
            if live is None or live[0] != due:
                continue  # stale: the case moved on since this entry was pushed
            out.append((key, due, live[1]))
            heapq.heappush(self._heap, (max(now, when) + retick_ms, key, due))
        return out
