"""``gridhub bench json``: orjson against the standard ``json`` on the hub's real state values.

The hub's hot paths write and read JSON state for every event (issue 14 item 8):

* fusion: ``streams/fusion/state.py`` ``dumps`` (``sort_keys``, compact, UTF-8) / ``loads`` of every
  ``c:`` / ``s:`` / index entry the engine touches;
* routing: ``streams/routing/agents.py``, the case state (``json.dumps(new, ensure_ascii=False,
  separators=(",", ":"))``) written on every transition and parsed on every input and tick.

The values are real: simulated traffic is normalised and fused by the pure
:class:`streams.fusion.engine.FusionEngine` on an in-memory state (every value it holds at the
end: cases, links, indexes, expiry buckets), and every case version it emitted goes through the
pure routing lifecycle (``lifecycle.on_case`` plus what ``_commit`` adds) to give the routing
state.  Each variant encodes / decodes all values; the best of ``repeat`` passes is reported.

Equal bytes matter, not only speed: fusion keys its crash-safety on "the same state is always
the same bytes" and a changelog written by one encoder is read by the other after an upgrade, so
the run also counts values whose orjson bytes differ from json's and values each decoder reads
differently.  Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any, Callable

import click


def fusion_values(hours: float, seed: int) -> tuple[list[Any], list[dict[str, Any]]]:
    """Every state value the fusion engine holds after ``hours`` of simulated traffic (decoded), and
    the case versions it emitted (Avro dicts, as routing reads them from ``cases``)."""
    from bench.fusion import normalised
    from streams.fusion.config import load_config
    from streams.fusion.engine import FusionEngine
    from streams.fusion.state import MemoryKV

    engine = FusionEngine(load_config())
    kv = MemoryKV()
    cases: list[dict[str, Any]] = []
    for _, n in normalised(seed, 4.0, hours * 3600):
        if n is not None and n.report is not None:
            cases += engine.process_report(kv, n.report).cases
    return [json.loads(v) for v in kv.data.values()], cases


def routing_values(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The routing state of every case after each version, as ``streams/routing/agents.py`` stores it."""
    from gridhub.core.settings import get_settings
    from streams.routing import lifecycle as lc
    from streams.routing.rules import load_rules

    rules = load_rules(get_settings().routing_rules)
    state: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for offset, case in enumerate(cases):
        old = state.get(case["case_id"])
        new, fx = lc.on_case(json.loads(json.dumps(old)) if old else None, case, rules)
        if new is None:
            continue
        lc.with_replies(new, fx)
        new["partition"] = 0
        new["due"] = lc.next_due(new, rules)
        new["fx_src"], new["fx"] = ["cases", 0, offset], asdict(fx)  # what _commit stores with it
        state[case["case_id"]] = new
        out.append(json.loads(json.dumps(new, ensure_ascii=False)))
    return out


def _best(variants: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Best of ``repeat`` passes per variant, the variants interleaved pass by pass (on a shared box
    a slow spell then hits every variant, not only the one running), with the garbage collector
    off during the passes, as ``timeit`` does: the values held for the run make a large heap whose
    collections would land on whichever variant runs then."""
    import gc

    best = {name: float("inf") for name in variants}
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            for name, fn in variants.items():
                t = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t)
    finally:
        if enabled:
            gc.enable()
    return best


def compare(values: list[Any], sort_keys: bool, repeat: int) -> dict[str, Any]:
    """dumps and loads of ``values`` with json (the hub's options) and orjson (the same output)."""
    import orjson

    def json_dumps(v: Any) -> bytes:
        return json.dumps(v, ensure_ascii=False, sort_keys=sort_keys, separators=(",", ":")).encode("utf-8")

    option = orjson.OPT_SORT_KEYS if sort_keys else 0

    def orjson_dumps(v: Any) -> bytes:
        return orjson.dumps(v, option=option)

    encoded = [json_dumps(v) for v in values]
    differ = sum(1 for v, raw in zip(values, encoded) if orjson_dumps(v) != raw)
    read_differently = sum(1 for raw in encoded if orjson.loads(raw) != json.loads(raw))
    n = len(values)
    t = _best({
        "json_dumps": lambda: [json_dumps(v) for v in values],
        "orjson_dumps": lambda: [orjson_dumps(v) for v in values],
        "json_loads": lambda: [json.loads(raw) for raw in encoded],
        "orjson_loads": lambda: [orjson.loads(raw) for raw in encoded],
    }, repeat)
    return {"values": n, "mean_bytes": round(sum(map(len, encoded)) / max(n, 1)),
            **{f"{k}_us": round(v * 1e6 / max(n, 1), 3) for k, v in t.items()},
            "dumps_speedup": round(t["json_dumps"] / t["orjson_dumps"], 2),
            "loads_speedup": round(t["json_loads"] / t["orjson_loads"], 2),
            "bytes_differ": differ, "read_differently": read_differently}


def run_json_bench(hours: float, repeat: int, seed: int, as_json: bool) -> None:
    fusion, cases = fusion_values(hours, seed)
    routing = routing_values(cases)
    result = {"simulated_hours": hours, "fusion": compare(fusion, True, repeat),
              "routing": compare(routing, False, repeat)}
    if as_json:
        click.echo(json.dumps(result))
        return
    for name in ("fusion", "routing"):
        r: dict[str, Any] = result[name]  # type: ignore[assignment]
        click.echo(f"{name} state: {r['values']} values, {r['mean_bytes']} B mean")
        click.echo(f"  dumps  json {r['json_dumps_us']:>8.2f} us  orjson {r['orjson_dumps_us']:>7.2f} us  "
                   f"x{r['dumps_speedup']}  ({r['bytes_differ']} values with other bytes)")
        click.echo(f"  loads  json {r['json_loads_us']:>8.2f} us  orjson {r['orjson_loads_us']:>7.2f} us  "
                   f"x{r['loads_speedup']}  ({r['read_differently']} values read differently)")
