"""In-process throughput of ``streams.ingest.normalize`` on a realistic document mix.

Three variants run over the same documents, so the ratio isolates the cost of
the adapters' logic (validation, region lookups, GCJ-02 conversion, PII
masking, taxonomy) from the unavoidable parse/encode work:

* ``json-roundtrip``: ``json.loads`` then ``json.dumps`` (the floor of any JSON stage);
* ``json-to-avro``: ``json.loads`` then Avro-encode a Report built by copying fields, no checks;
* ``normalize``: the real adapter, then Avro-encode what it produced (what an agent does).

Best of ``repeat`` passes (the least disturbed by other processes on the host).
"""

from __future__ import annotations

import json
import platform
import time
from typing import Any, Callable

import click

from gridhub.core.codec import codec
from streams.ingest.normalize import Rejected, normalize, report_id
from gridhub.simulate.generator import sample


def _passthrough_json(source: str, value: bytes) -> bytes:
    return json.dumps(json.loads(value), ensure_ascii=False).encode("utf-8")


def _passthrough_avro(now_ms: int) -> Callable[[str, bytes], bytes]:
    enc = codec("Report").encode

    def run(source: str, value: bytes) -> bytes:
        doc: dict[str, Any] = json.loads(value)
        ref = str(doc.get("eventId") or doc.get("orderNo") or doc.get("deviceId"))
        return enc({
            "report_id": report_id(source, ref), "source": source, "source_ref": ref, "kind": "incident",
            "county_code": str(doc.get("areaCode") or doc.get("streetCode") or "")[:6], "category": "other",
            "text": str(doc.get("description") or doc.get("content") or ""), "reported_at": now_ms,
            "received_at": now_ms, "severity": 1, "version": now_ms,
        })
    return run


def _normalize(registry: dict[str, dict[str, Any]], now_ms: int) -> Callable[[str, bytes], bytes]:
    rep, dev = codec("Report").encode, codec("DeviceEvent").encode

    def run(source: str, value: bytes) -> bytes:
        try:
            out = normalize(source, value, registry=registry, received_at_ms=now_ms, pii_key=b"bench-key")
        except Rejected:
            return b""
        if out.report is not None:
            return rep(out.report)
        if out.device_event is not None:
            return dev(out.device_event)
        return b""
    return run


def _best_rate(fn: Callable[[str, bytes], bytes], docs: list[tuple[str, bytes, bytes]], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for source, _key, value in docs:
            fn(source, value)
        best = min(best, time.perf_counter() - start)
    return len(docs) / best


def run_normalize_bench(n: int, repeat: int, seed: int, as_json: bool) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    records, registry = sample(n, seed=seed, end_ms=now_ms)
    # The simulator's mix of a day, heartbeats included: the worker normalises every raw document.
    docs = [(r.source, r.key.encode(), r.value()) for r in records]
    fn = _normalize(registry, now_ms)
    fn(*docs[0][::2])  # warm the lazy tables (divisions, taxonomy, codecs) outside the timing
    rejected = 0
    for source, _key, value in docs:
        try:
            normalize(source, value, registry=registry, received_at_ms=now_ms, pii_key=b"bench-key")
        except Rejected:
            rejected += 1
    rates = {
        "json-roundtrip": _best_rate(_passthrough_json, docs, repeat),
        "json-to-avro": _best_rate(_passthrough_avro(now_ms), docs, repeat),
        "normalize": _best_rate(fn, docs, repeat),
    }
    mix: dict[str, int] = {}
    for source, _key, _value in docs:
        mix[source] = mix.get(source, 0) + 1
    result = {
        "documents": len(docs), "repeat": repeat, "mix": mix, "rejected": rejected,
        "mean_document_bytes": round(sum(len(v) for _s, _k, v in docs) / len(docs)),
        "docs_per_second": {k: round(v) for k, v in rates.items()},
        "normalize_vs_json_roundtrip": round(rates["normalize"] / rates["json-roundtrip"], 3),
        "normalize_vs_json_to_avro": round(rates["normalize"] / rates["json-to-avro"], 3),
        "python": platform.python_version(), "machine": platform.machine(),
    }
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
    else:
        click.echo(f"gridhub bench normalize: {n} documents x best of {repeat}, mix {mix}, "
                   f"{result['mean_document_bytes']} B/doc mean, {rejected} rejected")
        click.echo(f"{'variant':<16}{'docs/s':>12}{'us/doc':>10}")
        for name, rate in rates.items():
            click.echo(f"{name:<16}{rate:>12,.0f}{1e6 / rate:>10.1f}")
        click.echo(f"normalize / json-roundtrip = {result['normalize_vs_json_roundtrip']:.3f}; "
                   f"normalize / json-to-avro = {result['normalize_vs_json_to_avro']:.3f}")
    return result
