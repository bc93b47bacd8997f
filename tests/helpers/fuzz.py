"""Hypothesis strategies shared by the fuzz tests: junk JSON and structured mutations of valid documents.

The seed corpus is real simulator traffic (``gridhub.simulate.generate``), so a
mutation starts from a document the hub accepts and changes one or a few things
about it; that reaches the deep branches of each adapter (division codes, time
bounds, registry look-ups) that random JSON never gets past the first
required-field check to see.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from gridhub.simulate import DEFAULT_START_MS, devices_for, generate

#: 300 examples per property: the brief's budget for a 2-core CI box (each test stays under ~10 s).
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

#: Simulator arguments of the seed corpus: 20 records/s for 15 simulated minutes is ~18k records,
#: enough for every scenario kind (fires, updates, consultations) to occur.
SEED, RATE, DURATION = 7, 20.0, 900.0


Corpus = dict[str, list[tuple[dict[str, Any], int]]]


@lru_cache(maxsize=4)
def build_corpus(start_ms: int = DEFAULT_START_MS) -> tuple[Corpus, dict[str, dict[str, Any]]]:
    """Valid documents per source (with their delivery times) and the device registry they rely on."""
    by_source: Corpus = {"four-platforms": [], "hotline-12345": [], "sensors": []}
    kinds: dict[tuple[str, str], int] = {}
    for rec in generate(SEED, RATE, DURATION, start_ms=start_ms):
        # At most 15 of each (source, kind): variety without a huge sampled_from list.
        n = kinds.get((rec.source, rec.kind), 0)
        if n < 15:
            kinds[(rec.source, rec.kind)] = n + 1
            by_source[rec.source].append((rec.doc, rec.at_ms))
    registry = {d.device_id: d.registry_row() for d in devices_for(SEED, RATE, DURATION, start_ms=start_ms)}
    return by_source, registry


CORPUS, REGISTRY = build_corpus()

# --------------------------------------------------------------------------- junk values

DEEP = "\u0001DEEP"  # marker prefix (a control char: never in real documents)
_DEEP_RE = re.compile(r'"(?:\\u0001|\u0001)DEEP(\d+)"')

ODD_TEXT = st.sampled_from([
    "", " ", "\u0000", "\ufeff", "\u200b\u200d", "\u202e反转", "𠀀𪚥🧨", "e\u0301" * 50, "\ud800", "\udfff",
    "330502", "330502100", "330502100001", "999999999", "0" * 9, "3305021001", "-1", "1e309", "NaN",
    "2025-06-16 09:00:00", "2025-02-30 25:61:61", "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00+00:00",
    "2025-06-16T09:00:00", "特急", "alarm", "heartbeat", "综治工作", "13812345678",
])
HUGE_TEXT = st.builds(lambda c, n: c * n, st.sampled_from(["a", "测", "🧨", "\\", '"']),
                      st.sampled_from([1_000, 70_000, 300_000]))
NUMBERS = st.one_of(
    st.integers(), st.integers(min_value=-(2 ** 80), max_value=2 ** 80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 2 ** 63, 2 ** 63 - 1, -(2 ** 63), 2 ** 64, 1e308, -0.0, 5e-324, 10 ** 30]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=40), ODD_TEXT)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)), max_leaves=25)
JUNK = st.one_of(SCALARS, HUGE_TEXT, JSON_VALUES,
                 # deeply nested: recursion limits in the parser or the adapters (spliced in by dumps())
                 st.integers(min_value=50, max_value=5000).map(lambda n: f"{DEEP}{n}"))


def dumps(doc: Any, *, ascii_only: bool) -> bytes:
    """JSON bytes; NaN / Infinity become the (invalid JSON) tokens Python writes, as a sloppy source would.

    A ``DEEP<n>`` string value becomes ``n`` nested arrays: built as text, because a Python object that
    deep would overflow the stack of the fuzzer itself before it reached the code under test.
    """
    text = json.dumps(doc, ensure_ascii=ascii_only, allow_nan=True)
    text = _DEEP_RE.sub(lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)), text)
    return text.encode("utf-8", errors="surrogatepass")


@st.composite
def mutated(draw: st.DrawFn, source: str, corpus: Corpus | None = None,
            max_mutations: int = 4) -> tuple[bytes, int]:
    """A valid document of ``source`` with up to ``max_mutations`` structural mutations, serialised; with its
    receipt time (shifted now and then past the accepted time bounds)."""
    doc, at_ms = draw(st.sampled_from((corpus or CORPUS)[source]))
    doc = json.loads(json.dumps(doc))  # a deep copy: the corpus is shared
    for _ in range(draw(st.integers(min_value=1 if max_mutations else 0, max_value=max_mutations))):
        op = draw(st.sampled_from(["drop", "replace", "replace", "add", "wrap", "nested"]))
        keys = sorted(doc)
        if op == "drop" and keys:
            doc.pop(draw(st.sampled_from(keys)))
        elif op == "replace" and keys:
            doc[draw(st.sampled_from(keys))] = draw(JUNK)
        elif op == "add":
            doc[draw(st.one_of(st.text(max_size=10), ODD_TEXT))] = draw(JUNK)
        elif op == "wrap" and keys:
            key = draw(st.sampled_from(keys))
            doc[key] = draw(st.sampled_from([[doc[key]], {"value": doc[key]}]))
        elif op == "nested":
            doc["reporter"] = draw(st.one_of(JUNK, st.fixed_dictionaries(
                {"id": SCALARS, "name": st.one_of(ODD_TEXT, HUGE_TEXT, st.text()), "phone": SCALARS})))
    shift = draw(st.sampled_from([0, 0, 0, -1, 1, 10 ** 12, -(10 ** 12)]))
    return dumps(doc, ascii_only=draw(st.booleans())), at_ms + shift

