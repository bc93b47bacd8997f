"""The per-batch write-behind cache and the redo journal of fusion's state (pure)."""

from __future__ import annotations

import pytest

from streams.fusion import state
from streams.fusion.state import BatchCache, MemoryKV, flush_plan, journal_changes, journal_cleanup


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


def test_journal_round_trip_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "JOURNAL_CHUNK_BYTES", 64)
    changes: list[tuple[str, bytes | None]] = [(f"c:{i}", f"value-{i}".encode() * 3) for i in range(10)]
    changes.append(("g:gone", None))
    plan = flush_plan(7, changes, batch_id="b1")
    journal = [k for k, _ in plan if k.startswith("j:")]
    assert len(journal) > 3 and journal[-1] == "j:7"  # several chunks, the header after them
    assert plan[len(journal):] == changes
    kv = MemoryKV()
    for key, value in plan[:len(journal)]:  # crashed right after the header
        assert value is not None
        kv.set(key, value)
    found = journal_changes(kv, 7)
    assert found is not None
    redo, keys = found
    assert redo == changes and keys == journal_cleanup(7, plan) and keys[-1] == "j:7"
    assert journal_changes(kv, 8) is None  # another partition's journal is its own


def test_a_journal_whose_chunks_are_from_another_batch_is_stale() -> None:
    kv = MemoryKV()
    first = flush_plan(1, [("c:1", b"a")], batch_id="old")
    second = flush_plan(1, [("c:1", b"b")], batch_id="new")
    for key, value in first:
        kv.set(key, value) if value is not None else kv.delete(key)
    kv.delete("j:1:0")  # the old one's cleanup deleted its chunk, then the crash (header left)
    found = journal_changes(kv, 1)
    assert found is not None and found[0] == []
    kv.set(*second[0])  # the next batch wrote its chunk, not yet its header
    found = journal_changes(kv, 1)
    assert found is not None and found[0] == []
    assert flush_plan(1, []) == []  # nothing changed: no journal either
