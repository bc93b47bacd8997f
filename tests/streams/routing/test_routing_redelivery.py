"""streams/routing/processor.py: the outbox - a redelivered input re-emits exactly its own effects.

The crash this covers (state written, records not yet confirmed, SIGKILL) is explored by the model
in test_routing_model.py; here, the named scenarios of issue 14, without Kafka.
"""

from __future__ import annotations

from typing import Any

import pytest

from streams.routing import devices
from streams.routing import processor as proc
from streams.routing.processor import DictKV, Processor, decode
from streams.routing.rules import RuleSet, load_rules
from helpers.routing import write_rules

T0 = 1_760_000_000_000  # an arbitrary epoch-ms instant (2025-10-09)
MIN = 60_000


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return load_rules(write_rules(tmp_path_factory.mktemp("rules"), """
        rules:
          - id: garbage
            match: {category: [garbage]}
            lead: zhzf
            sign: 30m
            resolve: 1d
          - id: noise
            match: {category: [noise]}
            lead: town
    """))


def case(version: int, category: str = "garbage") -> dict[str, Any]:
    return {"case_id": "c-1", "county_code": "330502", "street_code": "330502001", "category": category,
            "title": "t", "address": "a", "lng": 120.1, "lat": 30.8, "severity": 1, "sources": ["four-platforms"],
            "report_ids": ["r1"], "report_count": 1, "first_seen": T0, "last_seen": T0, "status": "reported",
            "dispatchable": True, "device_ids": [], "version": version, "updated_at": T0 + version * MIN}


def ids(outcome: proc.Outcome) -> set[str]:
    fx = outcome.effects
    return {d["dispatchId"] + ":" + d["action"] for d in fx.dispatches} | {e["event_id"] for e in fx.events} \
        | {"lc:" + e["event_id"] for e in fx.lifecycle}


def test_case_v1_then_v2_then_v1_redelivered_re_emits_v1s_dispatch(rules: RuleSet) -> None:
    kv, p = DictKV(), Processor(lambda: rules)
    first = p.case(kv, ("cases", 3, 10), case(1))
    second = p.case(kv, ("cases", 3, 11), case(2, "noise"))  # re-routed: v1's dispatch withdrawn
    assert first.effects.dispatches and second.effects.dispatches
    again = p.case(kv, ("cases", 3, 10), case(1))  # the crash lost both records; v1 comes again
    assert again.replayed and ids(again) == ids(first)
    assert ids(p.case(kv, ("cases", 3, 11), case(2, "noise"))) == ids(second)
    # a NEW record with v1's content (another offset) is still a no-op: the version was seen
    assert not p.case(kv, ("cases", 3, 12), case(1)).effects


def test_sign_then_resolve_then_sign_redelivered(rules: RuleSet) -> None:
    kv, p = DictKV(), Processor(lambda: rules)
    d = p.case(kv, ("cases", 0, 1), case(1)).effects.dispatches[0]

    def fb(action: str, at: int) -> dict[str, Any]:
        return {"dispatchId": d["dispatchId"], "caseId": "c-1", "agency": d["agency"], "action": action,
                "time": at, "note": None, "deadline": None}

    early = p.feedback(kv, ("feedback", 0, 5), fb("resolve", T0 + 2 * MIN))  # resolve before sign: refused
    assert early.dead and "never signed" in early.dead
    sign = p.feedback(kv, ("feedback", 0, 6), fb("sign", T0 + 3 * MIN))
    resolve = p.feedback(kv, ("feedback", 0, 7), fb("resolve", T0 + 4 * MIN))
    assert resolve.effects.lifecycle  # `resolved` for fusion
    # all three redelivered on the final state: each does exactly what it did the first time
    assert p.feedback(kv, ("feedback", 0, 5), fb("resolve", T0 + 2 * MIN)).dead == early.dead
    assert ids(p.feedback(kv, ("feedback", 0, 6), fb("sign", T0 + 3 * MIN))) == ids(sign)
    assert ids(p.feedback(kv, ("feedback", 0, 7), fb("resolve", T0 + 4 * MIN))) == ids(resolve)


def test_outbox_is_pruned_once_the_committed_offset_passed(rules: RuleSet) -> None:
    committed: dict[tuple[str, int], int] = {}
    kv = DictKV()
    p = Processor(lambda: rules, committed=lambda t, part: committed.get((t, part)))
    p.case(kv, ("cases", 0, 1), case(1))
    p.case(kv, ("cases", 0, 2), case(2))
    assert [e["at"] for e in decode(kv.data[b"c-1"])["outbox"]] == [["cases", 0, 1], ["cases", 0, 2]]
    committed[("cases", 0)] = 2  # offset 1 committed (2 is the next to read): it is never redelivered
    p.case(kv, ("cases", 0, 3), case(3, "noise"))
    assert [e["at"] for e in decode(kv.data[b"c-1"])["outbox"]] == [["cases", 0, 2], ["cases", 0, 3]]


def test_outbox_without_committed_offsets_is_bounded(rules: RuleSet) -> None:
    kv, p = DictKV(), Processor(lambda: rules)
    for v in range(1, proc.OUTBOX_KEEP + 10):
        p.case(kv, ("cases", 0, v), case(v))
    assert len(decode(kv.data[b"c-1"])["outbox"]) == proc.OUTBOX_KEEP


def test_device_events_redelivered_re_emit_their_own_effects(rules: RuleSet) -> None:
    kv, p = DictKV(), Processor(lambda: rules)
    owners = devices.Owners((), "town")

    def ev(event_id: str, kind: str, at: int) -> dict[str, Any]:
        return {"event_id": event_id, "device_id": "SMK-1", "event_type": kind, "at": at,
                "county_code": "330502", "street_code": "330502001", "owner": None, "address": None, "detail": None}

    opened = p.device(kv, ("device-events", 1, 1), ev("e1", "offline", T0), owners, rules.catalog)
    closed = p.device(kv, ("device-events", 1, 2), ev("e2", "online", T0 + MIN), owners, rules.catalog)
    assert opened.effects.dispatches and closed.effects.dispatches[0]["action"] == "withdraw"
    assert ids(p.device(kv, ("device-events", 1, 1), ev("e1", "offline", T0), owners, rules.catalog)) == ids(opened)
    assert ids(p.device(kv, ("device-events", 1, 2), ev("e2", "online", T0 + MIN), owners, rules.catalog)) \
        == ids(closed)


def test_write_behind_writes_each_changed_key_once(rules: RuleSet) -> None:
    table = DictKV()
    kv = proc.WriteBehind(table.get)
    p = Processor(lambda: rules)
    for v in (1, 2, 3):
        p.case(kv, ("cases", 0, v), case(v))
    assert table.data == {}  # nothing reaches the table before the flush
    changes = kv.changes()
    assert list(changes) == [b"c-1"] and decode(changes[b"c-1"])["case_version"] == 3


def test_a_state_written_before_the_outbox_still_re_emits_its_last_input(rules: RuleSet) -> None:
    """Upgrade: the previous version kept the last input's effects as fx_src / fx."""
    kv, p = DictKV(), Processor(lambda: rules)
    first = p.case(kv, ("cases", 0, 1), case(1))
    state = decode(kv.data[b"c-1"])
    entry = state.pop("outbox")[0]
    state["fx_src"], state["fx"] = entry["at"], entry["fx"]
    kv.data[b"c-1"] = proc.encode(state)
    assert ids(p.case(kv, ("cases", 0, 1), case(1))) == ids(first)
    p.case(kv, ("cases", 0, 2), case(2, "noise"))
    upgraded = decode(kv.data[b"c-1"])
    assert "fx_src" not in upgraded and [e["at"] for e in upgraded["outbox"]] == [["cases", 0, 1], ["cases", 0, 2]]


def test_the_worker_reads_committed_offsets_from_the_faust_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    """agents._committed: Faust's Consumer._committed_offset (the next offset after a restart), None if unknown."""
    from collections import defaultdict
    from types import SimpleNamespace

    from faust.types import TP

    from streams.routing import agents

    offsets: defaultdict[TP, int | None] = defaultdict(lambda: None, {TP("t.cases", 1): 5})
    monkeypatch.setattr(agents, "app", SimpleNamespace(consumer=SimpleNamespace(_committed_offset=offsets)))
    assert agents._committed("t.cases", 1) == 5
    assert agents._committed("t.cases", 2) is None and TP("t.cases", 2) not in offsets  # no entry created
    monkeypatch.setattr(agents, "app", SimpleNamespace())  # no consumer yet
    assert agents._committed("t.cases", 1) is None


def test_an_unreadable_input_is_dead_lettered_and_the_batch_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """agents._run over a fake one-batch stream: the record whose transition raises goes to the dlq, the
    others of its batch are applied and written once."""
    import asyncio
    from types import SimpleNamespace

    from streams.routing import agents

    class Message:  # hashable and weak-referenceable, as streams.faust_fixes.mark_processed needs
        def __init__(self, **fields: Any) -> None:
            self.__dict__.update(fields)

    class Event:  # weak-referenceable, as partition_batches needs (Faust's current-event contextvar)
        def __init__(self, offset: int) -> None:
            self.message = Message(topic="t.cases", partition=2, offset=offset, value=b"x", key=b"k")
            self.key = b"k"

    class Stream:
        async def take_events(self, max_events: int, within: float) -> Any:
            yield [Event(7), Event(8)]

    dead: list[tuple[int, str]] = []

    async def dead_letter(event: Any, stage: str, reason: str, out: Any = None) -> None:
        dead.append((event.message.offset, reason))

    monkeypatch.setattr(agents, "dead_letter", dead_letter)

    def handle(kv: proc.WriteBehind, event: Any) -> proc.Outcome:
        if event.message.offset == 7:
            raise KeyError("version")
        kv.set(b"c-8", b"{}")
        return proc.Outcome()

    class Table:  # what Deliveries.table_write uses of a Faust table: the store and the changelog
        changelog_topic_name = "t.routing-cases-changelog"

        def __init__(self) -> None:
            self.data: dict[bytes, bytes] = {}
            self.changelog: list[tuple[int, bytes, bytes | None]] = []

        def __contains__(self, key: bytes) -> bool:
            return key in self.data

        def get(self, key: bytes) -> bytes | None:
            return self.data.get(key)

        def send_changelog(self, partition: int, key: bytes, value: bytes | None, **_: Any) -> Any:
            self.changelog.append((partition, key, value))
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

    table = Table()

    async def run() -> None:
        await agents._run(Stream(), "routing", table, handle)

    asyncio.run(run())
    assert dead == [(7, "cannot process: KeyError: 'version'")]
    assert table.data == {b"c-8": b"{}"}
    assert table.changelog == [(2, b"c-8", b"{}")]
