"""Fixes for faust-streaming 0.15.3: stream records lost when a worker resumes after a rebalance.

Found with tests/streams/fusion/test_fusion_worker.py (SIGKILL a fusion worker
mid-stream, restart it, compare with an uninterrupted run), which failed in
about half of the local runs: the restarted worker either skipped a run of
~150 records per partition (the group's committed offset then stuck at the hole
for good) or processed nothing at all.  Two bugs, one defence, and a
fourth found by a CI run:

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

:func:`install` refuses any other Faust version, so an upgrade gets a fresh look
(is #596 fixed there?) instead of a silent override.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping, cast

import faust
from faust.tables.base import Collection
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

FIXED_VERSION = "0.15.3"

#: The library's own methods, kept for the tests that show the loss they cause.
ORIGINAL_ON_RECOVERY_COMPLETED = Recovery.on_recovery_completed
ORIGINAL_GETMANY = AIOKafkaConsumerThread.getmany
ORIGINAL_VERIFY_PARTITIONS = Collection._verify_source_topic_partitions


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
    """Replace the five methods (idempotent)."""
    if faust.__version__ != FIXED_VERSION:
        raise RuntimeError(f"streams/faust_fixes.py patches faust-streaming {FIXED_VERSION}, found "
                           f"{faust.__version__}: check whether faust-streaming/faust#596 is fixed there "
                           "and update or remove the patch")
    Recovery.on_recovery_completed = on_recovery_completed  # type: ignore[method-assign]
    Recovery._resume_streams = _resume_streams  # type: ignore[method-assign]
    AIOKafkaConsumerThread.getmany = getmany  # type: ignore[method-assign]
    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign,assignment]
    Collection._verify_source_topic_partitions = _verify_source_topic_partitions  # type: ignore[method-assign]
