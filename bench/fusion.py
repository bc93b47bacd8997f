"""``gridhub bench fusion``: fusion engine throughput and the state size it ran at.

Simulated traffic (``gridhub.simulate``) is normalised first (not timed); then the reports
are fed to :class:`streams.fusion.engine.FusionEngine` in delivery order, on an in-memory
state or on RocksDB (``rocksdict``, the store of the production Faust tables), and timed.
A warm-up part of the traffic fills the state first, so the measured part runs against a
realistic number of open cases.  Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from typing import Any, Iterator

import click


class RocksKV:
    """:class:`streams.fusion.state.KV` on rocksdict (what Faust's rocksdb:// store uses)."""

    def __init__(self, path: str) -> None:
        from rocksdict import Rdict

        self.db: Any = Rdict(path)

    def get(self, key: str) -> bytes | None:
        value = self.db.get(key.encode())
        return bytes(value) if value is not None else None

    def set(self, key: str, value: bytes) -> None:
        self.db[key.encode()] = value

    def delete(self, key: str) -> None:
        del self.db[key.encode()]

    def size(self) -> tuple[int, int]:
        keys = size = 0
        for k, v in self.db.items():
            keys += 1
            size += len(k) + len(v)
        return keys, size

    def open_cases(self) -> int:
        return sum(1 for k, v in self.db.items() if k.startswith(b"c:") and b'"status":"reported"' in v)

    def close(self) -> None:
        self.db.close()


def normalised(seed: int, rate: float, duration_s: float, start_ms: int | None = None) -> Iterator[tuple[Any, Any]]:
    """Simulator records in delivery order, each with what ``normalize`` makes of it (None: rejected).

    The simulator's own device registry is used, and each record is "received" at its document time
    (kept increasing), as ingest would stamp it in a live run.
    """
    from gridhub.evaluation.fusion import doc_time_ms
    from gridhub.simulate.generator import DEFAULT_START_MS, devices_for, generate
    from streams.ingest.normalize import Rejected, normalize

    start = DEFAULT_START_MS if start_ms is None else start_ms
    registry = {d.device_id: d.registry_row() for d in devices_for(seed, rate, duration_s, start_ms=start)}
    clock = 0
    for rec in generate(seed, rate, duration_s, start_ms=start):
        clock = max(clock + 1, doc_time_ms(rec.source, rec.doc) or clock)
        try:
            yield rec, normalize(rec.source, rec.value(), registry=registry, received_at_ms=clock, pii_key=b"bench")
        except Rejected:
            yield rec, None


def _reports(seed: int, rate: float, duration_s: float) -> list[dict[str, Any]]:
    return [n.report for _, n in normalised(seed, rate, duration_s) if n is not None and n.report is not None]


def run_fusion_bench(hours: float, rate: float, warmup: float, seed: int, store: str, as_json: bool) -> None:
    from streams.fusion.config import load_config
    from streams.fusion.engine import FusionEngine
    from streams.fusion.state import MemoryKV

    t0 = time.perf_counter()
    reports = _reports(seed, rate, hours * 3600)
    prep_s = time.perf_counter() - t0
    split = int(len(reports) * warmup)
    engine = FusionEngine(load_config())
    tmp = tempfile.TemporaryDirectory(prefix="gridhub-bench-fusion-")
    kv: Any = MemoryKV() if store == "memory" else RocksKV(tmp.name)
    for r in reports[:split]:
        engine.process_report(kv, r)

    def state() -> dict[str, int]:
        if isinstance(kv, MemoryKV):
            cases = [kv.data[k] for k in kv.keys("c:")]
            return {"open_cases": sum(1 for v in cases if b'"status":"reported"' in v), "keys": len(kv.data),
                    "bytes": kv.size_bytes()}
        keys, size = kv.size()
        return {"open_cases": kv.open_cases(), "keys": keys, "bytes": size}

    before = state()
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    start = time.perf_counter()
    for r in reports[split:]:
        t = time.perf_counter()
        res = engine.process_report(kv, r)
        latencies.append(time.perf_counter() - t)
        outcomes[res.outcome] = outcomes.get(res.outcome, 0) + 1
    elapsed = time.perf_counter() - start
    after = state()
    measured = len(reports) - split
    latencies.sort()
    result = {
        "store": store, "simulated_hours": hours, "rate_records_per_s": rate, "reports_total": len(reports),
        "warmup_reports": split, "measured_reports": measured, "seconds": round(elapsed, 3),
        "reports_per_s": round(measured / elapsed, 1) if elapsed else None,
        "latency_ms_p50": round(statistics.median(latencies) * 1000, 3) if latencies else None,
        "latency_ms_p99": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 3) if latencies else None,
        "state_before": before, "state_after": after, "outcomes": outcomes,
        "normalise_seconds_untimed": round(prep_s, 1),
    }
    if isinstance(kv, RocksKV):
        kv.close()
    tmp.cleanup()
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return
    click.echo(f"fusion engine, {store} state: {measured} reports in {elapsed:.2f} s = "
               f"{result['reports_per_s']} reports/s (p50 {result['latency_ms_p50']} ms, "
               f"p99 {result['latency_ms_p99']} ms per report)")
    click.echo(f"state at start of the measured part: {before['open_cases']} open cases, "
               f"{before['keys']} keys, {before['bytes'] / 1e6:.2f} MB")
    click.echo(f"state at end:                        {after['open_cases']} open cases, "
               f"{after['keys']} keys, {after['bytes'] / 1e6:.2f} MB")
    click.echo("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
