"""Fixes for faust-streaming 0.15.3: stream records lost or stalled around a rebalance or a failed send.

Found with tests/streams/fusion/test_fusion_worker.py (SIGKILL a fusion worker
mid-stream, restart it, compare with an uninterrupted run), which failed in
about half of the local runs: the restarted worker either skipped a run of
~150 records per partition (the group's committed offset then stuck at the hole
for good) or processed nothing at all.  Two bugs and one defence; 4-7 were
found later by CI runs and the two-worker kill tests:

1. **Queues cleared after the fetcher filled them** (upstream
   faust-streaming/faust#596, open).  ``Recovery.on_recovery_completed`` (and
   ``_resume_streams``, its twin for apps without tables) resumes the stream
   partitions, then awaits ``perform_seek()``, then calls
   ``app.flow_control.resume()``, which clears every stream queue (mode's
   ``FlowControlEvent.resume`` clears on *every* call).  Flow was already on
   for the changelog read, so during the seek the fetcher drained records into
   the agents' queues and marked their offsets read; the clear dropped them
   unacknowledged.  Measured: offsets 106-~257 of both loaded partitions lost,
   committed offsets stuck at 106 / 106.  Fix: seek first, then resume the
   partitions and the flow with no ``await`` in between (the order upstream
   chose for the same race in faust-streaming/faust#217).
2. **A paused partition read to its end** (not reported upstream).  Faust hands
   its live ``_active_partitions`` set to aiokafka's
   ``Fetcher.fetched_records(partitions)``, which waits in the consumer
   thread; when recovery finishes reading the changelogs it pauses them and
   the set becomes empty, and aiokafka reads an empty set as "every
   partition" (``if partitions and tp not in partitions``).  It returned all
   653 buffered records of a paused stream partition, Faust dropped them as
   paused, and the consumer position stayed at the end.  Fix: pass a snapshot.
3. **Defence for never-committed partitions.**  Records dropped for a paused
   partition are re-read after the seek to the committed offset, except where
   the group never committed (a worker killed within its first commit
   interval): aiokafka's ``seek_to_committed`` leaves those where the dropped
   read stopped.  Fix: reset them by the auto-offset-reset policy, which is
   what the position would be had nothing been read.
4. **A topic missing from the metadata snapshot taken for a mismatch** (not
   reported upstream).  Before a table's first write Faust compares the
   partition counts of the source topic and the changelog as the group
   leader's aiokafka coordinator last saw them; a topic that was not in that
   metadata counts as 0 partitions, so a changelog created a moment before
   the group formed raised ``PartitionsMismatch`` ("has 12 partitions, but
   the changelog ... has 0") on *every* write until the next metadata refresh
   (``metadata_max_age_ms``, minutes), crashing the agent over and over; the
   crashing record is acknowledged by the stream's ``finally`` and lost.
   Seen in CI: tests/scale/test_two_workers.py.  Fix: 0 means "not known
   yet", not "different"; the check runs again on the next write and still
   raises for two known, different counts.  The start-up hooks
   (streams/fusion ``prepare_topics``, streams/routing/service.py) create the
   changelogs and wait for their leaders, so the window is rarely open.
5. **Records acknowledged that no agent processed** (not reported upstream;
   found by tests/scale/test_two_workers_per_domain.py and the 3-broker kill
   test in CI: runs of consecutive records committed unprocessed around a
   rebalance).  The stream iterator (``Stream._c_aiter``) *skips and acks* every
   event it takes while the flow is suspended (a rebalance, a recovery) or whose
   fetch generation is not the current one.  Such an ack lands in
   ``Consumer._acked`` while the partition's committed offset is unknown
   (``on_partitions_revoked`` popped it), so ``_new_offset`` treats the skipped
   run as done: for a partition the group never committed it commits past the
   unprocessed records before them, and the next rebalance seeks there.  Fix:
   the consumer records an ack only for a message an agent finished with
   (:func:`mark_processed`, called by ``streams.delivery.partition_groups``
   once the batch's effects were confirmed) and fetched in the current
   generation; any other ack only releases the message (``wait_empty``), and its
   record is read again.  Cost: a batch processed across a rebalance is
   processed again (same ids), never skipped.
6. **A producer buffer that dies on its first failed send** (not reported
   upstream).  A table's changelog records go through ``ProducerBuffer``: its one
   task awaits ``Topic.publish_message``, which raises when the producer cannot
   take the record (``KafkaTimeoutError`` waiting for metadata or buffer space
   while a broker is down); the exception ends the task, the record's future is
   never resolved, and neither is any later changelog record's: agents waiting
   for them (``Deliveries.confirm``) hang, and so does Faust's commit
   (``producer.flush``).  Seen in CI as a stream stalled for 300 s.  Fix: the
   exception is set on that record's future (``confirm`` then stops the worker,
   exit 70) and the task carries on.
7. **Records fetched before a rebalance stamped with the new generation** (not
   reported upstream; found by tests/scale/test_two_workers_per_domain.py with
   ~1,000 topics on the broker: 33 linked reports lost).  ``Consumer.getmany``
   reads the generation *after* waiting for the consumer thread's fetch, so a
   fetch that began before a rebalance and returns after it hands over records
   from the old position (offsets 104.. of ``reports``) as current ones, just
   after ``perform_seek`` set the partition back to its committed offset (74).
   ``_drain_messages`` then records 75..103 as a "gap" (offsets the log does not
   have, as after compaction) and counts them as done: once 104 is processed the
   commit passes 75..103, which no agent ever saw.  Fix: the generation is read
   before the wait, and a fetch that straddled a generation change is dropped
   (its records are read again from the committed offset).  That was not all: the
   two-worker routing case still logged gaps on ``cases`` (not compacted in the
   test: no real hole) within one generation, with aiokafka's position past the
   record.  Whatever put the position there, a gap is now verified before it
   counts: the fetch loop seeks back to the first skipped offset once
   (``offset_gap_rechecked``); records that exist come back in order, and a real
   hole (compaction, a transaction marker) brings the same record again and only
   then becomes a gap, logged as ``consumer_offset_gap``.  And a seek stored the
   offset to read *next* where the loop keeps the offset read *last*, so a first
   record one past the sought offset skipped that offset unnoticed (a fusion run
   lost one sensor alarm this way: no gap logged, the commit passed it); a seek
   now stores the offset before its target.

:func:`install` refuses any other Faust version, so an upgrade gets a fresh look
(is #596 fixed there?) instead of a silent override.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, AsyncIterator, Iterable, Mapping, cast

import faust
from faust.tables.base import Collection
from faust.tables.recovery import Recovery
from faust.transport.consumer import CONSUMER_FETCHING, Consumer, ensure_TP
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.producer import ProducerBuffer
from faust.types.tuples import FutureMessage, Message, ack_lock
from mode.utils.futures import notify

from gridhub.core.logging import get_logger

log = get_logger(__name__)

FIXED_VERSION = "0.15.3"

#: The library's own methods, kept for the tests that show the loss they cause.
ORIGINAL_ON_RECOVERY_COMPLETED = Recovery.on_recovery_completed
ORIGINAL_GETMANY = AIOKafkaConsumerThread.getmany
ORIGINAL_VERIFY_PARTITIONS = Collection._verify_source_topic_partitions
ORIGINAL_ACK = Consumer.ack
ORIGINAL_SEND_PENDING = ProducerBuffer._send_pending
ORIGINAL_ADD_GAP = Consumer._add_gap
ORIGINAL_PERFORM_SEEK = Consumer.perform_seek
ORIGINAL_CONSUMER_GETMANY = Consumer.getmany

#: Messages whose batch an agent finished (5 in the module doc); weak: a message is forgotten with its event.
_processed: "weakref.WeakSet[Message]" = weakref.WeakSet()


def mark_processed(events: Iterable[faust.EventT]) -> None:
    """The events' effects are confirmed: their acks may count towards the committed offset."""
    for event in events:
        _processed.add(event.message)


def ack(self: Consumer, message: Message) -> bool:
    """``Consumer.ack`` that records only processed messages of the current generation (5 in the module doc)."""
    if message in _processed and message.generation_id == cast(Any, self.app).consumer_generation_id:
        result: bool = ORIGINAL_ACK(self, message)
        return result
    with ack_lock:
        if not message.acked:
            message.acked = True  # released, not done: nothing of it reaches _acked, so it is read again
            self._unacked_messages.discard(message)
            notify(self._waiting_for_ack)
    return False


async def _send_pending(self: ProducerBuffer, fut: FutureMessage) -> None:
    """``ProducerBuffer._send_pending`` that fails the record's future instead of the buffer (6 in the module doc)."""
    try:
        await ORIGINAL_SEND_PENDING(self, fut)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure belongs to the record, which confirm() reports
        log.warning("changelog_send_failed", topic=fut.message.channel.get_topic_name(),
                    error=f"{type(exc).__name__}: {exc}")
        if not fut.done():
            fut.set_exception(exc)


async def consumer_getmany(self: Consumer, timeout: float) -> AsyncIterator[tuple[Any, Message]]:
    """``Consumer.getmany`` of 0.15.3 with the generation read before the fetch (7 in the module doc)."""
    app = cast(Any, self.app)
    generation_id = app.consumer_generation_id
    records, active_partitions = await self._wait_next_records(timeout)
    if records is None or self.should_stop:
        return
    if app.consumer_generation_id != generation_id:
        # Fetched from the positions before the rebalance; the partitions were sought to their
        # committed offsets since, and these records are read again from there.
        dropped = sum(len(r) for r in records.values())
        if dropped:
            log.info("stale_fetch_dropped", records=dropped, fetched_in=generation_id, now=app.consumer_generation_id)
        return
    records_it = self.scheduler.iterate(records)
    to_message = self._to_message
    if self.flow_active:
        for tp, record in records_it:
            if not self.flow_active or app.consumer_generation_id != generation_id:
                break
            if active_partitions is None or tp in active_partitions or tp in self._buffered_partitions:
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                yield tp, to_message(tp, record)
    else:
        try:
            await self.perform_seek()
        except Exception as ex:  # as the library: logged, the next rebalance seeks again
            self.log.warning(f"exception performing seek when flow not active {ex}")


def gap_to_recheck(checked: Mapping[Any, int], tp: Any, offset: int, read_offset: int | None) -> bool:
    """Whether the record at ``offset`` skips offsets after ``read_offset`` that were not verified yet.

    Faust takes any such skip for a hole in the log (compaction, a transaction marker) and counts the
    skipped offsets as done.  It is also what a record fetched from a stale position looks like (7 in
    the module doc), so the consumer seeks back to the first skipped offset once: a real hole brings
    the same record right after the seek (``checked[tp] == offset``: now counted as a gap), records
    that exist come back in order.
    """
    return read_offset is not None and offset - read_offset > 1 and checked.get(tp) != offset


def last_read_before(offset: int | None) -> int | None:
    """The read offset after a seek to ``offset``: the offset *before* it (7 in the module doc).

    Faust's fetch loop keeps the last offset read per partition, but its seeks stored the offset to
    read next; so the first record after a seek could skip exactly one offset unnoticed (a gap of 1
    is "the next record"), and the commit then passed it: one record lost.
    """
    return offset - 1 if offset is not None and offset >= 0 else None


async def perform_seek(self: Consumer) -> None:
    """``Consumer.perform_seek`` of 0.15.3 with the read offsets as "last read" (7 in the module doc)."""
    committed = await self.seek_to_committed()
    self._read_offset.update({tp: last_read_before(offset) for tp, offset in committed.items()})
    self._committed_offset.update({ensure_TP(tp): offset if offset else None  # as the library
                                   for tp, offset in committed.items() if offset is not None})


async def seek(self: Consumer, partition: Any, offset: int) -> None:
    """``Consumer.seek`` of 0.15.3 with the read offset as "last read" (7 in the module doc)."""
    await self._seek(partition, offset)
    self._read_offset[ensure_TP(partition)] = last_read_before(offset)


async def _drain_messages(self: Consumer, fetcher: Any) -> None:  # pragma: no cover - the fetcher loop
    """``Consumer._drain_messages`` of 0.15.3 that verifies a gap with the broker before counting its
    offsets as done (7 in the module doc)."""
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = cast(Any, self)._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    yield_every, num_since_yield = 100, 0  # the library's: yield to the loop every 100 records
    gaps_checked: dict[Any, int] = {}  # tp -> the record after the last gap sought back to verify
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            rechecking: set[Any] = set()  # partitions sought back during this fetch
            set_flag(CONSUMER_FETCHING)
            ait = cast(Any, getmany(timeout=1.0))
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await asyncio.sleep(0)
                        num_since_yield = 0
                    if tp in rechecking:
                        continue  # the rest of a fetch taken back by a seek: fetched again in order
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset is not None and acks_enabled_for(message.topic):
                            if gap_to_recheck(gaps_checked, tp, offset, r_offset):
                                gaps_checked[tp] = offset
                                rechecking.add(tp)
                                log.warning("offset_gap_rechecked", topic=tp.topic, partition=tp.partition,
                                            offset=offset, read_offset=r_offset)
                                try:
                                    await seek(self, tp, r_offset + 1)
                                except Exception as exc:  # noqa: BLE001 - revoked meanwhile: re-sought on assignment
                                    log.warning("offset_gap_recheck_failed", topic=tp.topic,
                                                partition=tp.partition, error=f"{type(exc).__name__}: {exc}")
                                continue
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                        set_read_offset(tp, offset)
                unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


async def _add_gap(self: Consumer, tp: Any, offset_from: int, offset_to: int) -> None:
    """``Consumer._add_gap``, logged: offsets the consumer will count as done without reading them."""
    log.warning("consumer_offset_gap", topic=tp.topic, partition=tp.partition, offset_from=offset_from,
                offset_to=offset_to, committed=self._committed_offset.get(tp),
                generation=cast(Any, self.app).consumer_generation_id)
    await ORIGINAL_ADD_GAP(self, tp, offset_from, offset_to)


async def _seek_resume_and_finish(recovery: Any, standbys_ready: bool) -> None:
    """Seek the stream partitions to their committed offsets, resume them and the flow, end the rebalance."""
    consumer = recovery.app.consumer
    stream_tps = {tp for tp in consumer.assignment() if not recovery._is_changelog_tp(tp)}
    if stream_tps:
        recovery.log.info("Seek stream partitions to committed offsets.")
        await recovery._wait(consumer.perform_seek(), timeout=recovery.app.conf.broker_request_timeout)
    # no await from here until the flow is resumed: nothing can be queued and then cleared
    consumer.resume_partitions(stream_tps)
    recovery.completed.set()
    recovery.app.flow_control.resume()
    consumer.resume_flow()
    await recovery.app._fetcher.maybe_start()
    recovery.tables.on_actives_ready()
    if standbys_ready:
        recovery.tables.on_standbys_ready()
    recovery.app.on_rebalance_end()
    recovery.log.info("Worker ready")


async def on_recovery_completed(self: Recovery, generation_id: int = 0) -> None:
    """``Recovery.on_recovery_completed`` of 0.15.3, seeking before resuming (see module doc)."""
    app = cast(Any, self.app)
    self.log.info("Restore complete!")
    await app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callbacks = [asyncio.ensure_future(table.on_recovery_completed(self.actives_for_table[table],
                                                                   self.standbys_for_table[table]))
                 for table in self.tables.values()]
    if callbacks:
        await asyncio.wait(callbacks)
    if app.consumer_generation_id != generation_id:
        self.log.warning(f"Recovery rebalancing again app id {app.consumer_generation_id} param {generation_id}")
        return
    await _seek_resume_and_finish(self, standbys_ready=not app.assignor.assigned_standbys())


async def _resume_streams(self: Recovery, generation_id: int = 0) -> None:
    """``Recovery._resume_streams`` of 0.15.3 (apps without tables), seeking before resuming."""
    app = cast(Any, self.app)
    await app.on_rebalance_complete.send()
    if app.consumer_generation_id != generation_id:
        self.log.warning("Recovery rebalancing again")
        return
    await _seek_resume_and_finish(self, standbys_ready=True)


async def getmany(self: AIOKafkaConsumerThread, active_partitions: Any, timeout: float) -> Any:
    """``getmany`` with a snapshot of the active partitions (bug 2 in the module doc)."""
    snapshot = None if active_partitions is None else set(active_partitions)
    return await ORIGINAL_GETMANY(self, snapshot, timeout)


async def seek_to_committed(self: AIOKafkaConsumerThread) -> Mapping[Any, int | None]:
    """``seek_to_committed`` that also resets never-committed stream partitions (3 in the module doc)."""
    consumer = self._ensure_consumer()
    changelogs = set(cast(Any, self).app.tables.changelog_topics)
    reset_to_end = cast(Any, self).app.conf.consumer_auto_offset_reset == "latest"

    async def seek() -> Mapping[Any, int | None]:
        committed: Mapping[Any, int | None] = await consumer.seek_to_committed()
        never = [tp for tp, offset in committed.items() if offset is None and tp.topic not in changelogs]
        if never:
            await (consumer.seek_to_end if reset_to_end else consumer.seek_to_beginning)(*never)
        return committed

    result: Mapping[Any, int | None] = await self.call_thread(seek)
    return result


def _verify_source_topic_partitions(self: Collection, source_topic: str) -> None:
    """The library's check, skipped while either topic is missing from the metadata (4 in the module doc)."""
    if source_topic in self._verified_source_topics_for_partitions:
        return
    consumer = cast(Any, self.app).consumer
    if not consumer.topic_partitions(source_topic) or not consumer.topic_partitions(self.changelog_topic_name):
        return  # not known yet (0) or not the group leader (None): check again on the next write
    ORIGINAL_VERIFY_PARTITIONS(self, source_topic)


def install() -> None:
    """Replace the twelve methods (idempotent)."""
    if faust.__version__ != FIXED_VERSION:
        raise RuntimeError(f"streams/faust_fixes.py patches faust-streaming {FIXED_VERSION}, found "
                           f"{faust.__version__}: check whether faust-streaming/faust#596 is fixed there "
                           "and update or remove the patch")
    Recovery.on_recovery_completed = on_recovery_completed  # type: ignore[method-assign]
    Recovery._resume_streams = _resume_streams  # type: ignore[method-assign]
    AIOKafkaConsumerThread.getmany = getmany  # type: ignore[method-assign]
    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign,assignment]
    Collection._verify_source_topic_partitions = _verify_source_topic_partitions  # type: ignore[method-assign]
    Consumer.ack = ack  # type: ignore[method-assign]
    ProducerBuffer._send_pending = _send_pending  # type: ignore[method-assign]
    Consumer._add_gap = _add_gap  # type: ignore[method-assign]
    Consumer.getmany = consumer_getmany  # type: ignore[method-assign]
    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]
    Consumer.seek = seek  # type: ignore[method-assign]
