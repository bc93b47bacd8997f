"""Effects confirmed before commit (issue 14, item 2).

Faust 0.15 only *logs* a failed send (``faust/topics.py``, ``Topic._on_published``) and
``producer.flush()`` waits for completion, not success, so an input whose output Kafka
refused (a record over ``max.message.bytes``, a topic the principal may not write, a
timeout) would be committed anyway and its effect lost.  Agents therefore send through a
:class:`Deliveries`: it keeps the broker's future of every record an input (or a batch of
inputs) produced, and :meth:`Deliveries.confirm` waits for all of them *before* the agent
moves on, i.e. before Faust may acknowledge (and later commit) those inputs.  If any record
was refused, the worker stops at once without acknowledging anything
(:func:`streams.app.fail_stop`): the restarted worker processes the inputs again, and the
deterministic ids make the repeat the same records.

Usage inside an agent::

    out = Deliveries("fusion")
    async for events in batches:           # one partition's events
        for event in events:
            ...
            await out.send(cases_topic, key=k, value=v)
        await out.confirm(events)          # raises nothing: refused -> the process exits
"""

from __future__ import annotations

import asyncio
import weakref
from contextlib import contextmanager
from typing import Any, AsyncIterator, Iterator, Sequence

import faust
from faust.streams import _current_event

from gridhub.core.logging import get_logger
from streams.faust_fixes import mark_processed

log = get_logger(__name__)


class Deliveries:
    """The not-yet-confirmed records of the inputs being processed (one per agent, reused)."""

    def __init__(self, stage: str, timeout_s: float | None = None) -> None:
        self.stage = stage
        self.timeout_s = timeout_s
        self._pending: list[asyncio.Future[Any]] = []
        self._topics: list[str] = []  # of each pending record: the log names the ones never confirmed

    def __len__(self) -> int:
        return len(self._pending)

    async def send(self, topic: faust.TopicT, *, key: bytes | None, value: bytes | None,
                   headers: Any = None, partition: int | None = None) -> None:
        """Hand the record to the producer (it batches them: ``producer_linger_ms``) and keep its future."""
        future = await topic.send(key=key, value=value, headers=headers, partition=partition)
        self.track(future, topic.get_topic_name())

    def table_write(self, table: Any, partition: int, key: bytes, value: bytes | None) -> None:
        """Write ``key`` of a Faust table in ``partition`` (None: delete) and keep its changelog record's future.

        What ``table[key] = value`` does (the store, then ``Table.send_changelog``), with the
        changelog record's ``FutureMessage`` kept so that :meth:`confirm` waits for it too: Faust
        only logs a refused changelog record (``Collection._on_changelog_sent``).  The partition
        is explicit, so a batch flush needs no current event for the changelog (the RocksDB store
        still picks its per-partition database from the current event: :func:`partition_batches`
        sets it to the batch's).
        """
        if value is None:
            try:
                del table.data[key]
            except KeyError:
                pass
            self.track(table.send_changelog(partition, key, None, value_serializer="raw"), table.changelog_topic_name)
        else:
            table.data[key] = value
            self.track(table.send_changelog(partition, key, value), table.changelog_topic_name)

    def track(self, future: Any, topic: str = "?") -> None:
        """Also wait for a future produced elsewhere (a table's changelog record, ``send_soon``)."""
        self._pending.append(future)
        self._topics.append(topic)

    async def confirm(self, events: Sequence[faust.EventT]) -> None:
        """Wait until the broker acknowledged every pending record; on any refusal stop the worker
        without acknowledging ``events`` (:func:`streams.app.fail_stop`)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        topics, self._topics = self._topics, []
        timeout = self.timeout_s if self.timeout_s is not None else _confirm_timeout_s()
        _, unresolved = await asyncio.wait(pending, timeout=timeout)
        failed: list[BaseException]
        if unresolved:
            # Neither acknowledged nor refused in that time: the producer is stuck (a dead broker it
            # keeps waiting for, a send task that died).  Waiting longer would stall the partition
            # silently; the restarted worker produces the same records again.
            waiting = sorted({topic for future, topic in zip(pending, topics) if future in unresolved})
            failed = [asyncio.TimeoutError(f"{len(unresolved)} of {len(pending)} records "
                                           f"unconfirmed after {timeout:.0f} s (topics: {', '.join(waiting)})")]
        else:
            failed = [_failure(f) for f in pending if f.cancelled() or f.exception() is not None]
        if failed:
            from streams.app import fail_stop  # late: keeps this module importable without building the app

            log.critical("effects_refused", stage=self.stage, refused=len(failed), of=len(pending),
                         inputs=len(events), error=f"{type(failed[0]).__name__}: {failed[0]}")
            fail_stop(events[-1], self.stage, failed[0])


def _failure(future: asyncio.Future[Any]) -> BaseException:
    """Why a resolved future did not deliver its record."""
    if future.cancelled():
        return asyncio.CancelledError("send cancelled")
    return future.exception() or RuntimeError("no exception")


def _confirm_timeout_s() -> float:
    from gridhub.core.settings import get_settings  # late: no settings read at import

    return float(get_settings().confirm_timeout_s)


@contextmanager
def current_event(event: faust.EventT) -> Iterator[None]:
    """Faust's current event set to ``event`` in the block (table writes land in its partition)."""
    # Faust's own contextvar (faust.streams._current_event), as Stream._c_aiter sets it per event.
    previous = _current_event.get(None)
    _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.set(previous)  # not reset(token): an async generator's aclose() may run in another context


async def partition_groups(stream: Any, *, max_events: int,
                           within_s: float) -> AsyncIterator[list[list[faust.EventT]]]:
    """Each ``take_events`` list as lists of events of one partition number, in arrival order.

    For agents that confirm once per list rather than once per partition: a list of 500 events
    spread over 12 partitions is then 1 broker round trip (2 for fusion), not 12 (24); set the
    current event per group (:func:`current_event`) for table reads and writes.  Faust
    acknowledges the whole list when the next one is asked for.
    """
    async for events in stream.take_events(max_events, within=within_s):
        groups: dict[int, list[faust.EventT]] = {}
        for event in events:
            groups.setdefault(event.message.partition, []).append(event)
        yield list(groups.values())
        # The caller asked for the next list: it confirmed this one's effects.  Only now may Faust's
        # acknowledgement (take_events, on the next iteration) count towards the committed offset;
        # a list abandoned half-way (the agent cancelled, the worker stopping) is read again.
        mark_processed(events)


async def partition_batches(stream: Any, *, max_events: int, within_s: float) -> AsyncIterator[list[faust.EventT]]:
    """The stream's events as lists of events of ONE partition number, in arrival order.

    Why per partition number rather than per topic-partition: an agent reading two
    co-partitioned topics (fusion: ``reports`` + ``case-lifecycle``) must apply one county's
    records of both in the order they arrived, and a Faust table stores a write in the
    partition of the *current event*.  While a batch is being processed the current event is
    its last event, so table writes made for the batch land in that partition's store and
    changelog partition (``faust.tables.base.Collection.partition_for_key``).

    Faust acknowledges the events of a ``take_events`` list when the caller asks for the next
    list: confirm every effect (:meth:`Deliveries.confirm`) before that.
    """
    async for groups in partition_groups(stream, max_events=max_events, within_s=within_s):
        for group in groups:
            with current_event(group[-1]):
                yield group
