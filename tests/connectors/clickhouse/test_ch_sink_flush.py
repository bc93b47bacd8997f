"""Flush logic of the ClickHouse sink with a fake ClickHouse (no Kafka, no server): bisecting refused rows."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import DataError, RawRecord, RetriableError
from connectors.clickhouse.rows import REPORTS
from connectors.clickhouse.service import ClickHouseSink, SinkSettings
from gridhub.core.codec import codec
from gridhub.core.settings import Settings



REPORT = {
    "report_id": "r", "source": "four-platforms", "source_ref": "E1", "kind": "incident", "county_code": "330502",
    "street_code": "330502001", "category": "noise", "text": "噪音", "reported_at": 1_763_000_000_000,
    "received_at": 1_763_000_000_500, "severity": 1, "version": 1, "case_id": "c",
}


class FakeClickHouseSink(ClickHouseSink):
    """ClickHouse refuses any INSERT holding a row whose title is 'poison'; fails the first call if told to."""

    def __init__(self, fail_first: bool = False) -> None:
        super().__init__(Settings(namespace="tfake"), SinkSettings(migrate=False))
        self.stored: list[dict[str, Any]] = []
        self.calls = 0
        self.fail_first = fail_first

    def _insert_blocking(self, table: str, rows: list[dict[str, Any]]) -> None:
        self.calls += 1
        if self.fail_first and self.calls == 1:
            raise RetriableError("ClickHouse error 252: Too many parts")
        if any(r["title"] == "poison" for r in rows):
            raise DataError("ClickHouse refused the rows (code 53): type mismatch")
        self.stored.extend(rows)



def records(n: int, poison: set[int]) -> list[RawRecord]:
    out = []
    for i in range(n):
        value = codec("Report").encode({**REPORT, "report_id": f"r{i}", "title": "poison" if i in poison else "ok"})
        out.append(RawRecord(topic="tfake.reports.linked", key=b"c", value=value, partition=0, offset=i))
    return out


async def test_refused_rows_are_isolated_and_dead_lettered_with_their_original_bytes() -> None:
    sink = FakeClickHouseSink()
    batch = records(64, poison={5, 40}) + [RawRecord(topic="tfake.reports.linked", key=None, value=b"garbage",
                                                     partition=0, offset=64)]
    rows, _, unreadable = sink.rows(batch)
    assert len(rows[REPORTS]) == 64 and len(unreadable) == 1  # the garbage never becomes a row
    refused = await sink.write(batch)
    assert sorted(r["report_id"] for r in sink.stored) == sorted(f"r{i}" for i in range(64) if i not in {5, 40})
    by_offset = {r.offset: r.value for r in batch}
    # The runner dead-letters exactly these, with their original bytes (connectors/base.py, step 2).
    assert [(r.offset, r.value == by_offset[r.offset]) for r, _ in refused] == [(64, True), (5, True), (40, True)]
    assert all("refused" in reason or "Avro" in reason for _, reason in refused)


async def test_a_retriable_failure_leaves_the_batch_pending_for_the_retry() -> None:
    sink = FakeClickHouseSink(fail_first=True)
    batch = records(10, poison=set())
    with pytest.raises(RetriableError):
        await sink.write(batch)
    assert sink.stored == []
    assert await sink.write(batch) == []  # the runner repeats the same batch
    assert sorted(r["report_id"] for r in sink.stored) == [f"r{i}" for i in range(10)]
