"""The storage behind fusion: a flat key -> bytes map.

The engine sees state only through :class:`KV` so that the unit tests run it
on a dict and the worker runs it on ONE Faust table (``streams/fusion/agents.py``).
One table, not one per index, on purpose: every write of one report goes to
the same changelog partition in order, so after a crash the recovered state
is always a *prefix* of the writes of the interrupted report, and the engine
writes in an order where every prefix is safe (case first, indexes next, the
``(source, source_ref)`` entry last; see ``engine.FusionEngine._link``).

Keys (``county`` = 6-digit county code; everything of one county lives in
that county's partition because Faust stores a table write in the partition
of the event being processed):

===========================  ==============================================
``c:<case_id>``              case state (JSON, :class:`CaseState` fields)
``s:<source>|<source_ref>``  the case a source record was linked to, its version
``d:<county>:<device_id>``   the device's current case
``g:<county>:<cx>:<cy>``     case ids whose centroid is in that grid cell
``a:<county>:<address>``     case ids at that normalised address (road + number)
``r:<county>:<road>``        case ids on that road
``p:<county>:<place>``       case ids at that named place (estate, landmark)
``v:<county>:<village>``     case ids at that village / community (reference names)
``h:<county>:<reporter>``    case ids of that reporter (keyed phone hash: callbacks)
``t:<county>:<street>``      case ids in that township (street code, or named in the text)
``n:<county>:<street>``      case ids in that township that have no coordinates
``x:<county>:<hour>``        expiry bucket: ``c:``/``s:`` entries to re-check at that event-time hour
``w:<county>``               the county's event-time watermark and last swept hour
``j:<partition>[:<chunk>]``  the redo journal of a batch being flushed (:class:`BatchCache`)
===========================  ==============================================

Batches (issue 14)
------------------
The worker processes one partition's events as a batch through a :class:`BatchCache`: the
engine reads and writes the cache, and at the end of the batch each changed key is written
to the table ONCE (one changelog record per changed key per batch instead of one per write).
The per-report safe-prefix argument above does not survive that on its own: a crash in the
middle of a flush leaves a state that holds *some* of the batch's final values (those of
several reports) next to pre-batch values, and a redelivered report could then be matched
against a half-written neighbourhood and open a case under a new id.  So a flush is made
all-or-nothing with a redo journal (:func:`flush_plan`), and the agent keeps this order
(streams/fusion/agents.py):

1. process the batch into the cache and send its outputs;
2. wait until the broker acknowledged every output (``Deliveries.confirm``);
3. write the journal (``j:<p>:<i>`` chunks, then the ``j:<p>`` header naming them), then
   every changed key (``s:`` entries last), all to the batch's changelog partition;
4. wait until the broker acknowledged every changelog record, and only then let Faust
   acknowledge the inputs (the next ``take_events``);
5. delete the journal.

A crash at any point is safe, because the inputs are redelivered (not acknowledged before 4):

* before 3 (no journal header in the changelog): the state is exactly the pre-batch state
  (nothing of the batch reached the table), the engine is deterministic, so the redelivered
  events make the same decisions and re-emit the same records with the same ids;
* in or after 3 with the header in the changelog: all outputs were acknowledged (2) and, as
  one producer writes one changelog partition in order, every chunk before the header is
  there too.  Before the first redelivered event the agent re-applies the journal
  (:func:`journal_changes`), so the state is exactly the post-batch state, and every
  redelivered report finds its ``s:`` entry and re-emits its records with the same ids.  Re-
  applying is right even when the journal's deletion (5) was lost: a journal is deleted
  before the partition's next batch writes anything, so a journal in the table is always
  the partition's latest batch and its values are the keys' current ones;
* a header whose chunks are missing or belong to another batch (only after a crash in 5,
  or in 3 of the next batch before its header) is stale: that batch was flushed whole; it
  is deleted, not applied.
"""

from __future__ import annotations

import struct
import uuid
from typing import Any, Iterable, Iterator, Protocol

import orjson


class KV(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryKV:
    """The dict-backed :class:`KV` of unit tests, the evaluation and the benchmark."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set(self, key: str, value: bytes) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def keys(self, prefix: str = "") -> Iterator[str]:
        return (k for k in self.data if k.startswith(prefix))

    def size_bytes(self) -> int:
        return sum(len(k.encode()) + len(v) for k, v in self.data.items())


def dumps(value: Any) -> bytes:
    # Sorted keys, compact, UTF-8 (what json.dumps(ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    # wrote): the same state is always the same bytes.  orjson: the state (de)serialisation was the largest
    # per-document cost of fusion in the e2e profile (docs/benchmarks.md).
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def loads(raw: bytes) -> Any:
    return orjson.loads(raw)


class JsonState:
    """Typed JSON helpers over a :class:`KV`."""

    def __init__(self, kv: KV) -> None:
        self.kv = kv

    def get(self, key: str) -> Any:
        raw = self.kv.get(key)
        return None if raw is None else loads(raw)

    def set(self, key: str, value: Any) -> None:
        self.kv.set(key, dumps(value))

    def delete(self, key: str) -> None:
        self.kv.delete(key)

    def list_add(self, key: str, item: str) -> None:
        items: list[str] = self.get(key) or []
        if item not in items:
            items.append(item)
            self.set(key, items)

    def list_remove(self, key: str, item: str) -> None:
        items: list[str] | None = self.get(key)
        if items and item in items:
            items.remove(item)
            if items:
                self.set(key, items)
            else:
                self.delete(key)


# --------------------------------------------------------------------------- batches (issue 14)


class BatchCache:
    """A write-behind :class:`KV` over another one, for one batch: reads see the batch's own
    writes; :meth:`changes` gives each changed key once, with its final value (None: deleted).

    Values read from the backing store are kept for the batch too (one table / RocksDB read per
    key per batch).  Bytes, not parsed values, are cached: the engine mutates what it reads, and
    a parsed object shared between reads would carry a mutation the engine never wrote.
    """

    def __init__(self, backing: KV) -> None:
        self.backing = backing
        #: key -> final value in this batch (None = deleted); only keys written in the batch
        self.writes: dict[str, bytes | None] = {}
        #: key -> the backing store's value (None = absent), for keys read or written in this batch
        self._before: dict[str, bytes | None] = {}

    def _backing(self, key: str) -> bytes | None:
        try:
            return self._before[key]
        except KeyError:
            value = self._before[key] = self.backing.get(key)
            return value

    def get(self, key: str) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self._backing(key)

    def set(self, key: str, value: bytes) -> None:
        self._backing(key)
        self.writes[key] = value

    def delete(self, key: str) -> None:
        if self.get(key) is None:
            return
        self.writes[key] = None

    def changes(self) -> list[tuple[str, bytes | None]]:
        """Each key the batch changed, once, with its final bytes (None: delete); ``s:`` entries last.

        A key whose final value equals its value before the batch (added then removed) is left out."""
        out = [(k, v) for k, v in self.writes.items() if v != self._before.get(k)]
        out.sort(key=lambda kv: kv[0].startswith("s:"))  # stable: s: entries last, the rest in write order
        return out

    def clear(self) -> None:
        self.writes.clear()
        self._before.clear()


#: Largest journal chunk, bytes: half of Kafka's default max.message.bytes (1 MiB + 12), so a chunk
#: and its record overhead always fit the changelog topic.
JOURNAL_CHUNK_BYTES = 512 * 1024
_DELETED = 0xFFFFFFFF  # value length of a delete in a journal frame
_FRAME = struct.Struct(">II")


def journal_key(partition: int, chunk: int | None = None) -> str:
    return f"j:{partition}" if chunk is None else f"j:{partition}:{chunk}"


def flush_plan(partition: int, changes: list[tuple[str, bytes | None]],
               batch_id: str | None = None) -> list[tuple[str, bytes | None]]:
    """The writes of one batch flush, in order: journal chunks, journal header, then the changes.

    Empty when nothing changed (no journal either)."""
    if not changes:
        return []
    bid = (batch_id or uuid.uuid4().hex).encode("ascii")
    chunks: list[bytes] = []
    parts: list[bytes] = [bid]
    size = len(bid)
    for key, value in changes:
        kb = key.encode("utf-8")
        frame = _FRAME.pack(len(kb), _DELETED if value is None else len(value)) + kb + (value or b"")
        if size + len(frame) > JOURNAL_CHUNK_BYTES and len(parts) > 1:
            chunks.append(b"".join(parts))
            parts, size = [bid], len(bid)
        parts.append(frame)
        size += len(frame)
    chunks.append(b"".join(parts))
    header = dumps({"b": bid.decode("ascii"), "n": len(chunks)})
    return ([(journal_key(partition, i), chunk) for i, chunk in enumerate(chunks)]
            + [(journal_key(partition), header)] + list(changes))


def _decode_chunk(raw: bytes, bid: bytes) -> list[tuple[str, bytes | None]] | None:
    if not raw.startswith(bid):
        return None
    out: list[tuple[str, bytes | None]] = []
    pos = len(bid)
    while pos < len(raw):
        klen, vlen = _FRAME.unpack_from(raw, pos)
        pos += _FRAME.size
        key = raw[pos:pos + klen].decode("utf-8")
        pos += klen
        if vlen == _DELETED:
            out.append((key, None))
        else:
            out.append((key, raw[pos:pos + vlen]))
            pos += vlen
    return out


def journal_changes(kv: KV, partition: int) -> tuple[list[tuple[str, bytes | None]], list[str]] | None:
    """After a crash: the journal of the partition's interrupted flush, if any.

    Returns None when there is no journal, else ``(changes to re-apply, journal keys to delete)``;
    the changes are empty for a stale journal (see the module docstring)."""
    header_raw = kv.get(journal_key(partition))
    if header_raw is None:
        return None
    header = loads(header_raw)
    bid, n = str(header["b"]).encode("ascii"), int(header["n"])
    keys = [journal_key(partition, i) for i in range(n)]
    changes: list[tuple[str, bytes | None]] = []
    for key in keys:
        raw = kv.get(key)
        decoded = _decode_chunk(raw, bid) if raw is not None else None
        if decoded is None:
            changes = []
            break
        changes.extend(decoded)
    return changes, [*keys, journal_key(partition)]


def journal_cleanup(partition: int, plan: Iterable[tuple[str, bytes | None]]) -> list[str]:
    """The journal keys of a flushed plan, to delete once its writes are acknowledged (header last)."""
    header = journal_key(partition)
    keys = [k for k, _ in plan if k.startswith(header + ":")]
    return [*keys, header] if keys else []
