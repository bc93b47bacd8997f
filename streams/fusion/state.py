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
against a half-written neighbourhood and open a case under a new id (the model-based test,
tests/streams/fusion/test_fusion_batch_model.py, finds that within seconds without the
journal).  So a flush is made all-or-nothing with a redo journal (:func:`flush_plan`), and
the agent keeps this order (streams/fusion/agents.py):

1. process the batch into the cache and send its outputs;
2. wait until the broker acknowledged every output (``Deliveries.confirm``);
3. write the journal ``j:<p>`` (the batch's writes in one record; a very large batch: chunks
   ``j:<p>:<i>``, then the header naming them), then every changed key (``s:`` entries last),
   all to the batch's changelog partition;
4. wait until the broker acknowledged every changelog record, and only then let Faust
   acknowledge the inputs (the next ``take_events``).

The journal stays: the partition's next batch that changes anything overwrites it, so the
journal in the table is always the partition's latest flushed batch.  After a restart or a
rebalance, before the first event of a partition, the agent re-applies it
(:func:`journal_changes`).  A crash at any point is safe, because the inputs are redelivered
(not acknowledged before 4):

* before 3 (no new journal in the changelog): the state is exactly the pre-batch state (the
  previous journal re-applied changes nothing: its values are current), the engine is
  deterministic, so the redelivered events make the same decisions and re-emit the same
  records with the same ids;
* in or after 3 with the new journal in the changelog: all outputs were acknowledged (2) and,
  as one producer writes one changelog partition in order, every chunk before a header is
  there too.  Re-applying the journal makes the state exactly the post-batch state, and every
  redelivered report finds its ``s:`` entry and re-emits its records with the same ids (the
  engine's duplicate path); inputs of earlier batches not yet committed are recognised the same way;
* a chunked header whose chunks belong to another batch (a crash while the next large batch was
  writing its chunks, before its header) names a batch that was flushed whole: nothing to redo.
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
_BATCH_ID_LEN = 32  # uuid4().hex
#: First byte of a journal header: the batch's writes inline (one record: the usual case), or the
#: JSON ``{"b": batch id, "n": chunks}`` of a journal too large for one record.
_INLINE, _CHUNKED = b"\x01", b"\x02"


def journal_key(partition: int, chunk: int | None = None) -> str:
    return f"j:{partition}" if chunk is None else f"j:{partition}:{chunk}"


def flush_plan(partition: int, changes: list[tuple[str, bytes | None]],
               batch_id: str | None = None) -> list[tuple[str, bytes | None]]:
    """The writes of one batch flush, in order: the journal (one record, or chunks then their
    header), then the changes.  Empty when nothing changed (no journal either)."""
    if not changes:
        return []
    bid = (batch_id or uuid.uuid4().hex).encode("ascii")
    assert len(bid) == _BATCH_ID_LEN
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
    if len(chunks) == 1:
        return [(journal_key(partition), _INLINE + chunks[0]), *changes]
    header = _CHUNKED + dumps({"b": bid.decode("ascii"), "n": len(chunks)})
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


def journal_changes(kv: KV, partition: int) -> list[tuple[str, bytes | None]] | None:
    """The writes of the partition's latest flushed batch, to re-apply after a restart (None: no journal).

    Empty for a stale journal (a chunked one whose chunks belong to another batch; see the module
    docstring).  Re-applying a journal whose flush completed changes nothing: it is the partition's
    latest batch, so its values are the keys' current ones."""
    raw = kv.get(journal_key(partition))
    if raw is None:
        return None
    if raw[:1] == _INLINE:
        body = raw[1:]
        return _decode_chunk(body, body[:_BATCH_ID_LEN]) or []
    header = loads(raw[1:])
    bid, n = str(header["b"]).encode("ascii"), int(header["n"])
    changes: list[tuple[str, bytes | None]] = []
    for i in range(n):
        chunk = kv.get(journal_key(partition, i))
        decoded = _decode_chunk(chunk, bid) if chunk is not None else None
        if decoded is None:
            return []
        changes.extend(decoded)
    return changes
