"""Property: whatever a source sends, ``normalize`` either returns encodable records or raises ``Rejected``.

Any other exception would be an agent-level failure: the ingest agent would
dead-letter it with an "unexpected" reason at best, and a record the Avro codec
cannot encode would fail *after* normalisation, far from its cause.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from helpers.fuzz import CORPUS, FUZZ, JSON_VALUES, REGISTRY, dumps, mutated
from hypothesis import event, given
from hypothesis import strategies as st

from gridhub.core.codec import codec
from streams.ingest.normalize import Normalized, Rejected, normalize

SOURCES = ["four-platforms", "hotline-12345", "sensors"]
PII_KEY = b"fuzz-pii-key"


def check(source: str, value: bytes, received_at_ms: int, *, note: bool = True) -> Normalized | None:
    """Run normalize; assert the contract on the outcome; return the result (None when rejected)."""
    try:
        out = normalize(source, value, registry=REGISTRY, received_at_ms=received_at_ms, pii_key=PII_KEY)
    except Rejected as exc:
        assert isinstance(exc.reason, str) and exc.reason.strip(), "a rejection needs a reason"
        if note:
            event("rejected")
        return None
    if note:
        event("accepted")
    assert isinstance(out, Normalized)
    assert out.report is not None or out.device_event is not None or out.heartbeat is not None
    if out.report is not None:
        encoded = codec("Report").encode(out.report)
        decoded = codec("Report").decode(encoded)
        assert decoded["report_id"] == out.report["report_id"]
        for name in ("lng", "lat", "value", "threshold"):
            v = out.report[name]
            assert v is None or math.isfinite(v), f"{name} must be finite, got {v!r}"
        assert out.report["county_code"], "a report without a county cannot be partitioned"
    if out.device_event is not None:
        codec("DeviceEvent").decode(codec("DeviceEvent").encode(out.device_event))
    return out


def test_seed_corpus_is_accepted() -> None:
    """The mutations start from valid documents: prove they are (else the fuzzing only tests rejection)."""
    for source in SOURCES:
        docs = CORPUS[source]
        assert len(docs) >= 5, source
        accepted = [check(source, json.dumps(doc, ensure_ascii=False).encode(), at, note=False) for doc, at in docs]
        assert all(a is not None for a in accepted), source


@pytest.mark.parametrize("source", SOURCES)
@FUZZ
@given(value=st.binary(max_size=2048), received=st.integers(min_value=0, max_value=2 ** 45))
def test_arbitrary_bytes(source: str, value: bytes, received: int) -> None:
    check(source, value, received)


@pytest.mark.parametrize("source", SOURCES)
@FUZZ
@given(doc=JSON_VALUES, ascii_only=st.booleans())
def test_arbitrary_json(source: str, doc: Any, ascii_only: bool) -> None:
    check(source, dumps(doc, ascii_only=ascii_only), 1750035600000)


@pytest.mark.parametrize("source", SOURCES)
@FUZZ
@given(data=st.data())
def test_mutated_documents(source: str, data: st.DataObject) -> None:
    value, received = data.draw(mutated(source))
    check(source, value, received)


@FUZZ
@given(source=st.text(max_size=20), value=st.binary(max_size=64))
def test_unknown_source_is_rejected(source: str, value: bytes) -> None:
    if source in SOURCES:
        return
    with pytest.raises(Rejected):
        normalize(source, value, received_at_ms=0, pii_key=PII_KEY)
