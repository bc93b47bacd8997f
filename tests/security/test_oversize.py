"""No input can stall a feed (issue 16): oversized documents through the gateway and straight onto a
raw topic, in a real ``gridhub run --only ingest,gateway`` worker; the documents after them still
become reports.  (The MQTT bridge's paths: tests/connectors/mqtt_bridge/test_mqtt_oversize.py.)"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from typing import Any, Callable

import pytest

from gridhub.core.codec import codec
from gridhub.core.dlq import DLQ_MAX_VALUE, PREVIEW_BYTES, parse_dead_letter_headers
from gridhub.core.settings import Settings
from helpers.documents import Documents

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _post(url: str, body: bytes, token: str = "dev-four-platforms") -> tuple[int, dict[str, Any] | list[Any]]:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"{}")


def _padded(doc: dict[str, Any], size: int) -> bytes:
    """``doc`` with a description padded so the document is exactly ``size`` bytes."""
    doc = dict(doc, description="")
    base = len(json.dumps(doc, ensure_ascii=False).encode())
    doc["description"] = "x" * (size - base)
    out = json.dumps(doc, ensure_ascii=False).encode()
    assert len(out) == size
    return out


def test_oversized_documents_never_stall_ingest(settings: Settings, worker: Callable[..., Any],
                                                kafka_producer: Any, consume: Callable[..., list[Any]]) -> None:
    gen = Documents(int(time.time() * 1000), seed=16)
    good = [gen.four_platforms() for _ in range(3)]
    w = worker(settings, only="ingest,gateway")
    url = f"http://127.0.0.1:{settings.gateway_port}/v1/ingest/four-platforms"

    status, _ = _post(url, json.dumps(good[0], ensure_ascii=False).encode())
    deadline = time.monotonic() + 60
    while status == 503 and time.monotonic() < deadline:  # the gateway's producer still connecting
        time.sleep(1)
        status, _ = _post(url, json.dumps(good[0], ensure_ascii=False).encode())
    assert status == 202

    # 1. the gateway refuses a body above the limit with a clear 413
    too_big = _padded(gen.four_platforms(), DLQ_MAX_VALUE + 50_000)
    status, answer = _post(url, too_big)
    assert status == 413 and isinstance(answer, dict)
    error = answer["error"]
    assert error["code"] == "body_too_large" and error["limit_bytes"] == DLQ_MAX_VALUE
    assert error["size_bytes"] == len(too_big) and f"{DLQ_MAX_VALUE} bytes" in error["message"]

    # 2. a document the gateway takes but ingest rejects (over normalize's 256 KiB) is dead-lettered whole
    accepted_big = _padded(gen.four_platforms(), DLQ_MAX_VALUE - 10_000)
    status, _ = _post(url, accepted_big)
    assert status == 202
    status, _ = _post(url, json.dumps(good[1], ensure_ascii=False).encode())
    assert status == 202

    # 3. a client writing the raw topic directly, just under Kafka's limit: too big to dead-letter whole
    direct = _padded(gen.four_platforms(), 999_900)
    kafka_producer.send(settings.topic("raw.four-platforms"), key=b"direct", value=direct).get(30)
    kafka_producer.send(settings.topic("raw.four-platforms"), key=good[2]["eventId"].encode(),
                        value=json.dumps(good[2], ensure_ascii=False).encode()).get(30)

    reports = consume("reports", 3, 120)
    refs = {codec("Report").decode(r.value)["source_ref"] for r in reports}
    assert refs == {d["eventId"] for d in good}, "the feed stopped behind an oversized document"
    letters = consume("dlq", 2, 60)
    by_size = sorted(letters, key=lambda r: len(r.value))
    truncated, whole = by_size
    assert whole.value == accepted_big  # fits: the original bytes
    info = parse_dead_letter_headers(truncated.headers)
    assert truncated.value == direct[:PREVIEW_BYTES]
    assert info.extra["size"] == str(len(direct)) and info.extra["sha256"] == hashlib.sha256(direct).hexdigest()
    assert info.stage == "normalize" and "exceeds" in info.reason
    assert "Traceback" not in w.log_text()
