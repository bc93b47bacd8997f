"""streams/faust_fixes.py: records fetched while a resumed worker seeks must reach the agents.

A fake consumer and fetcher, real ``mode`` flow control: the fetcher moves records into the
stream queue only for resumed partitions while the consumer's flow is active, as Faust's
does, and ``perform_seek`` yields to the event loop the way a broker round trip does.  The
library's order loses what the fetcher queued during the seek; the fixed order loses nothing.
The real-broker proof is tests/streams/fusion/test_fusion_worker.py (SIGKILL and restart).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, Callable

import faust
import pytest
from aiokafka import TopicPartition
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from streams import faust_fixes

STREAM_TP = ("reports", 0)
CHANGELOG_TP = ("fusion-state-changelog", 0)


class FakeConsumer:
    def __init__(self) -> None:
        self.resumed: set[Any] = set()
        self.flow_active = True  # Recovery resumed the flow for the changelog read already
        self.position = 0
        self.sought = False

    def assignment(self) -> set[Any]:
        return {STREAM_TP, CHANGELOG_TP}

    def resume_partitions(self, tps: set[Any]) -> None:
        self.resumed |= set(tps)

    def resume_flow(self) -> None:
        self.flow_active = True

    async def perform_seek(self) -> None:
        for _ in range(5):  # a broker round trip: the fetcher gets the event loop meanwhile
            await asyncio.sleep(0)
        self.sought = True


async def _fetch(consumer: FakeConsumer, queue: FlowControlQueue, total: int) -> None:
    while consumer.position < total:
        if STREAM_TP in consumer.resumed and consumer.flow_active:
            queue.put_nowait(consumer.position)  # Faust marks the offset read here
            consumer.position += 1
        await asyncio.sleep(0)


def _recovery(consumer: FakeConsumer, flow_control: FlowControlEvent) -> Any:
    async def send() -> None:
        return None

    async def maybe_start() -> None:
        return None

    async def wait(coro: Any, timeout: float) -> Any:
        return await coro

    tables = SimpleNamespace(values=lambda: [], on_actives_ready=lambda: None, on_standbys_ready=lambda: None)
    app = SimpleNamespace(consumer=consumer, conf=SimpleNamespace(broker_request_timeout=30.0),
                          flow_control=flow_control, on_rebalance_complete=SimpleNamespace(send=send),
                          consumer_generation_id=2, _fetcher=SimpleNamespace(maybe_start=maybe_start),
                          assignor=SimpleNamespace(assigned_standbys=lambda: set()),
                          on_rebalance_end=lambda: None)
    log = SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None, dev=lambda *a, **k: None)
    return SimpleNamespace(app=app, log=log, tables=tables, actives_for_table={}, standbys_for_table={},
                           completed=asyncio.Event(), _set_recovery_ended=lambda: None, _wait=wait,
                           _is_changelog_tp=lambda tp: tp == CHANGELOG_TP)


async def _resume_and_drain(method: Callable[..., Any], total: int = 50) -> list[int]:
    flow_control = FlowControlEvent(initially_suspended=False)
    queue: FlowControlQueue = FlowControlQueue(flow_control=flow_control, clear_on_resume=True)
    consumer = FakeConsumer()
    fetcher = asyncio.ensure_future(_fetch(consumer, queue, total))
    await method(_recovery(consumer, flow_control), generation_id=2)
    await asyncio.wait_for(fetcher, timeout=5)
    assert consumer.sought
    return [queue.get_nowait() for _ in range(queue.qsize())]


def test_the_fixed_order_hands_every_fetched_record_to_the_agents() -> None:
    delivered = asyncio.run(_resume_and_drain(faust_fixes.on_recovery_completed))
    assert delivered == list(range(50))


def test_the_library_order_loses_what_was_fetched_during_the_seek() -> None:
    """Documents the bug the fix exists for (if this starts passing, upstream fixed it)."""
    delivered = asyncio.run(_resume_and_drain(faust_fixes.ORIGINAL_ON_RECOVERY_COMPLETED))
    assert delivered[0] > 0 and delivered == list(range(delivered[0], 50))  # offsets 0.. are gone


def test_install_refuses_another_faust_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust, "__version__", "0.99.0")
    with pytest.raises(RuntimeError, match="faust-streaming/faust#596"):
        faust_fixes.install()


def test_getmany_hands_the_consumer_thread_a_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka reads an empty partition set as "all partitions"; the live set Faust passes empties
    itself when recovery pauses the changelogs, so the thread must get a copy."""
    seen: list[set[Any]] = []

    async def original(self: Any, active_partitions: set[Any], timeout: float) -> dict[Any, Any]:
        await asyncio.sleep(0)  # the consumer thread waits for records meanwhile
        seen.append(set(active_partitions))
        return {}

    monkeypatch.setattr(faust_fixes, "ORIGINAL_GETMANY", original)
    live = {CHANGELOG_TP}

    async def run() -> None:
        call = asyncio.ensure_future(faust_fixes.getmany(Any, live, 1.0))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        live.clear()  # Recovery pauses the changelog partitions
        await call

    asyncio.run(run())
    assert seen == [{CHANGELOG_TP}]


def test_seek_to_committed_resets_never_committed_stream_partitions() -> None:
    class FakeAIOKafkaConsumer:
        def __init__(self) -> None:
            self.to_beginning: list[Any] = []

        async def seek_to_committed(self) -> dict[Any, int | None]:
            return {TopicPartition("reports", 0): None, TopicPartition("reports", 1): 42,
                    TopicPartition("fusion-state-changelog", 0): None}

        async def seek_to_beginning(self, *tps: Any) -> None:
            self.to_beginning.extend(tps)

    aiokafka_consumer = FakeAIOKafkaConsumer()

    async def call_thread(fn: Callable[[], Any]) -> Any:
        return await fn()

    thread = SimpleNamespace(_ensure_consumer=lambda: aiokafka_consumer, call_thread=call_thread,
                             app=SimpleNamespace(tables=SimpleNamespace(changelog_topics={"fusion-state-changelog"}),
                                                 conf=SimpleNamespace(consumer_auto_offset_reset="earliest")))
    committed = asyncio.run(faust_fixes.seek_to_committed(thread))  # type: ignore[arg-type]
    assert len(committed) == 3  # Faust still gets every committed offset, unchanged
    assert aiokafka_consumer.to_beginning == [TopicPartition("reports", 0)]


def _table(counts: dict[str, int]) -> Any:
    """What ``_verify_source_topic_partitions`` reads: the leader's metadata snapshot, by topic."""
    consumer = SimpleNamespace(topic_partitions=lambda topic: counts.get(topic))
    return SimpleNamespace(app=SimpleNamespace(consumer=consumer), name="fusion-state",
                           changelog_topic_name="fusion-state-changelog", _verified_source_topics_for_partitions=set())


def test_a_changelog_missing_from_the_metadata_is_not_a_mismatch() -> None:
    snapshot = {"reports": 12, "fusion-state-changelog": 0}  # created just before the group formed
    table = _table(snapshot)
    with pytest.raises(faust.exceptions.PartitionsMismatch):  # what the library does, on every write
        faust_fixes.ORIGINAL_VERIFY_PARTITIONS(table, "reports")
    faust_fixes._verify_source_topic_partitions(table, "reports")
    assert table._verified_source_topics_for_partitions == set()  # checked again once the metadata has it
    snapshot["fusion-state-changelog"] = 12
    faust_fixes._verify_source_topic_partitions(table, "reports")
    assert table._verified_source_topics_for_partitions == {"reports"}


def test_two_known_different_partition_counts_still_raise() -> None:
    with pytest.raises(faust.exceptions.PartitionsMismatch, match="has 6 partitions"):
        faust_fixes._verify_source_topic_partitions(_table({"reports": 12, "fusion-state-changelog": 6}), "reports")


def _acking_consumer(generation: int) -> Any:
    """What ``Consumer.ack`` reads and writes, with a rebalance's state: the committed offset unknown."""
    from collections import defaultdict

    app = SimpleNamespace(consumer_generation_id=generation, topics=SimpleNamespace(acks_enabled_for=lambda t: True))
    return SimpleNamespace(app=app, _committed_offset=defaultdict(lambda: None), _acked_index=defaultdict(set),
                           _acked=defaultdict(list), _unacked_messages=set(), _n_acked=0, _waiting_for_ack=None)


def _messages(offsets: range, generation: int) -> list[Any]:
    from faust.types.tuples import Message

    out = []
    for offset in offsets:
        m = Message("raw.sensors", 0, offset, 0.0, 0, None, None, b"v", None, generation_id=generation)
        out.append(m)
    return out


def test_a_skipped_record_does_not_count_towards_the_commit() -> None:
    """The stream iterator skips and acks what it takes during a rebalance; the library commits it."""
    from faust.types import TP

    tp = TP("raw.sensors", 0)
    library, fixed = _acking_consumer(3), _acking_consumer(3)
    skipped = _messages(range(520, 541), 3)  # taken while the flow was suspended: never processed
    for m in skipped:
        faust_fixes.ORIGINAL_ACK(library, m)
    assert library._acked[tp] == list(range(520, 541))  # -> _new_offset commits 541, past 0..519
    for m in _messages(range(520, 541), 3):
        assert faust_fixes.ack(fixed, m) is False
    assert fixed._acked[tp] == [] and fixed._unacked_messages == set()


def test_a_processed_record_counts_only_in_its_own_generation() -> None:
    from faust.types import TP

    tp = TP("raw.sensors", 0)
    consumer = _acking_consumer(4)
    old, new = _messages(range(0, 5), 3), _messages(range(5, 10), 4)
    faust_fixes.mark_processed([SimpleNamespace(message=m) for m in old + new])  # type: ignore[misc]
    for m in old + new:
        consumer._unacked_messages.add(m)
        faust_fixes.ack(consumer, m)
    assert consumer._acked[tp] == [5, 6, 7, 8, 9]  # the old generation's are read again by their new owner
    assert consumer._unacked_messages == set()  # and released: wait_empty does not wait for them


def test_a_failed_changelog_send_fails_its_future_and_the_buffer_carries_on() -> None:
    from faust.transport.producer import ProducerBuffer

    async def run() -> tuple[Any, Any]:
        sent: list[str] = []

        async def publish(fut: Any, wait: bool) -> None:
            if fut.name == "refused":
                raise RuntimeError("KafkaTimeoutError: no metadata in 60 s")
            sent.append(fut.name)
            fut.set_result("ok")

        def future(name: str) -> Any:
            fut = asyncio.get_running_loop().create_future()
            fut.name = name  # type: ignore[attr-defined]
            fut.message = SimpleNamespace(channel=SimpleNamespace(publish_message=publish,  # type: ignore[attr-defined]
                                                                  get_topic_name=lambda: "t-changelog"))
            return fut

        refused, after = future("refused"), future("after")
        buffer = SimpleNamespace()
        with pytest.raises(RuntimeError):  # the library: the buffer's one task ends here
            await faust_fixes.ORIGINAL_SEND_PENDING(buffer, refused)  # type: ignore[arg-type]
        await faust_fixes._send_pending(buffer, refused)  # type: ignore[arg-type]
        await faust_fixes._send_pending(buffer, after)  # type: ignore[arg-type]
        assert sent == ["after"]
        return refused, after

    refused, after = asyncio.run(run())
    assert isinstance(refused.exception(), RuntimeError) and after.result() == "ok"


def _fetching_consumer(generation_after_wait: int) -> Any:
    """A consumer whose fetch began in generation 3 and returns offsets 104-106 of ``reports``/0 once the
    generation is ``generation_after_wait`` (a rebalance, with its seek, happened during the wait)."""
    from faust.types import TP

    tp = TP("reports", 0)
    app = SimpleNamespace(consumer_generation_id=3, monitor=SimpleNamespace(track_tp_end_offset=lambda tp, hw: None))

    async def wait_next_records(timeout: float) -> Any:
        app.consumer_generation_id = generation_after_wait
        return {tp: [104, 105, 106]}, {tp}

    return SimpleNamespace(
        app=app, should_stop=False, flow_active=True, _buffered_partitions=set(), highwater=lambda tp: 200,
        _wait_next_records=wait_next_records,
        scheduler=SimpleNamespace(iterate=lambda records: ((tp, r) for tp, rs in records.items() for r in rs)),
        _to_message=lambda tp, offset: _messages(range(offset, offset + 1), app.consumer_generation_id)[0])


async def _fetched(getmany: Any, consumer: Any) -> list[tuple[int, int]]:
    return [(m.offset, m.generation_id) async for _, m in getmany(consumer, 1.0)]


def test_a_fetch_that_straddles_a_rebalance_is_dropped() -> None:
    """The library stamps records fetched before the rebalance with the new generation: processed and
    acked as current, they let the commit pass the offsets between the seek and them (fix 7)."""
    stale_as_current = asyncio.run(_fetched(faust_fixes.ORIGINAL_CONSUMER_GETMANY, _fetching_consumer(4)))
    assert stale_as_current == [(104, 4), (105, 4), (106, 4)]
    assert asyncio.run(_fetched(faust_fixes.consumer_getmany, _fetching_consumer(4))) == []


def test_a_fetch_within_one_generation_is_handed_over_whole() -> None:
    assert asyncio.run(_fetched(faust_fixes.consumer_getmany, _fetching_consumer(3))) == [(104, 3), (105, 3), (106, 3)]


def test_a_gap_is_sought_back_once_before_it_counts() -> None:
    """Faust counts offsets a record skips as done; the fixed loop first seeks back to them (fix 7)."""
    checked: dict[Any, int] = {}
    tp = ("cases", 2)
    assert faust_fixes.gap_to_recheck(checked, tp, 33, read_offset=26) is True  # 27..32 skipped: verify
    checked[tp] = 33
    # after the seek back, the same record first again: a real hole (compaction), now a gap
    assert faust_fixes.gap_to_recheck(checked, tp, 33, read_offset=27) is False
    assert faust_fixes.gap_to_recheck(checked, tp, 40, read_offset=34) is True  # another gap: verified too
    assert faust_fixes.gap_to_recheck(checked, tp, 27, read_offset=26) is False  # the next record: no gap
    assert faust_fixes.gap_to_recheck(checked, tp, 33, read_offset=None) is False  # nothing read yet


def test_install_replaces_the_fetcher_loop() -> None:
    from faust.transport.consumer import Consumer

    faust_fixes.install()
    assert Consumer._drain_messages is faust_fixes._drain_messages
    assert Consumer.getmany is faust_fixes.consumer_getmany


def test_a_seek_leaves_the_offset_before_its_target_as_read() -> None:
    """After a seek to the committed 26, a first record 27 must look like a skip (fix 7): Faust stored
    26 as *read*, so 27 passed as the next record and 26 was committed unprocessed."""
    from collections import defaultdict

    from faust.types import TP

    async def seek_to_committed() -> dict[Any, int | None]:
        return {TP("cases", 0): 26, TP("cases", 1): 0, TP("cases", 2): None}

    library = SimpleNamespace(seek_to_committed=seek_to_committed, _read_offset=defaultdict(lambda: None),
                              _committed_offset={})
    asyncio.run(faust_fixes.ORIGINAL_PERFORM_SEEK(library))  # type: ignore[arg-type]
    assert library._read_offset[TP("cases", 0)] == 26  # "read": a first record 27 then passes as the next one
    assert faust_fixes.gap_to_recheck({}, TP("cases", 0), 27, library._read_offset[TP("cases", 0)]) is False
    consumer = SimpleNamespace(seek_to_committed=seek_to_committed, _read_offset=defaultdict(lambda: None),
                               _committed_offset={})
    asyncio.run(faust_fixes.perform_seek(consumer))  # type: ignore[arg-type]
    assert dict(consumer._read_offset) == {TP("cases", 0): 25, TP("cases", 1): -1, TP("cases", 2): None}
    assert consumer._committed_offset == {TP("cases", 0): 26, TP("cases", 1): None}
    checked: dict[Any, int] = {}
    assert faust_fixes.gap_to_recheck(checked, TP("cases", 0), 27, consumer._read_offset[TP("cases", 0)]) is True
    assert faust_fixes.gap_to_recheck(checked, TP("cases", 0), 26, consumer._read_offset[TP("cases", 0)]) is False
    assert faust_fixes.gap_to_recheck(checked, TP("cases", 1), 1, consumer._read_offset[TP("cases", 1)]) is True
