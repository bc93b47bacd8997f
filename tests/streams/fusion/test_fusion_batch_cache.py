"""The per-batch write-behind cache and the redo journal of fusion's state (pure)."""

from __future__ import annotations

import pytest

from streams.fusion import state
from streams.fusion.state import BatchCache, MemoryKV, flush_plan, journal_changes


def test_reads_see_the_batch_writes_and_each_changed_key_is_written_once() -> None:
    kv = MemoryKV()
    kv.set("c:1", b"old")
    kv.set("g:1", b"[\"C1\"]")
    kv.set("w:1", b"same")
    cache = BatchCache(kv)
    cache.set("s:a|1", b"entry")
    cache.set("c:1", b"v1")
    cache.set("c:1", b"v2")
    assert cache.get("c:1") == b"v2" and kv.get("c:1") == b"old"  # write-behind
    cache.delete("g:1")
    assert cache.get("g:1") is None
    cache.set("x:1", b"tmp")
    cache.delete("x:1")            # added and removed in the batch: nothing to write
    cache.set("w:1", b"changed")
    cache.set("w:1", b"same")      # back to the stored value: not written either
    cache.delete("never")          # deleting what does not exist writes nothing
    changes = cache.changes()
    assert changes == [("c:1", b"v2"), ("g:1", None), ("s:a|1", b"entry")]  # s: entries last
    assert len({k for k, _ in changes}) == len(changes)


B1, B2, B3 = "1" * 32, "2" * 32, "3" * 32  # batch ids (uuid4().hex in the worker)


def _apply(kv: MemoryKV, writes: list[tuple[str, bytes | None]]) -> None:
    for key, value in writes:
        kv.set(key, value) if value is not None else kv.delete(key)


def test_journal_is_one_record_and_replays_the_batch() -> None:
    changes: list[tuple[str, bytes | None]] = [("c:1", b"case"), ("g:gone", None), ("s:a|1", b"entry")]
    plan = flush_plan(7, changes, batch_id=B1)
    assert [k for k, _ in plan] == ["j:7", "c:1", "g:gone", "s:a|1"]
    kv = MemoryKV()
    _apply(kv, plan[:1])  # crashed right after the journal
    assert journal_changes(kv, 7) == changes
    assert journal_changes(kv, 8) is None  # another partition's journal is its own
    assert flush_plan(1, []) == []  # nothing changed: no journal either


def test_journal_round_trip_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "JOURNAL_CHUNK_BYTES", 64)
    changes: list[tuple[str, bytes | None]] = [(f"c:{i}", f"value-{i}".encode() * 3) for i in range(10)]
    changes.append(("g:gone", None))
    plan = flush_plan(7, changes, batch_id=B1)
    journal = [k for k, _ in plan if k.startswith("j:")]
    assert len(journal) > 3 and journal[-1] == "j:7"  # several chunks, the header after them
    assert plan[len(journal):] == changes
    kv = MemoryKV()
    _apply(kv, plan[:len(journal)])  # crashed right after the header
    assert journal_changes(kv, 7) == changes


def test_a_chunked_journal_whose_chunks_are_from_another_batch_is_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "JOURNAL_CHUNK_BYTES", 64)
    big = [(f"c:{i}", b"x" * 40) for i in range(4)]
    kv = MemoryKV()
    _apply(kv, flush_plan(1, big, batch_id=B1))
    assert journal_changes(kv, 1) == big  # complete: re-applying changes nothing
    second = flush_plan(1, [(k, b"y" * 40) for k, _ in big], batch_id=B2)
    _apply(kv, second[:1])  # the next batch wrote its first chunk, not yet its header
    assert journal_changes(kv, 1) == []
