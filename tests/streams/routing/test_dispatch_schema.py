"""Dispatch v2 (issue 15): agencies on the v1 schema keep working; v2 readers read v1 records."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from gridhub.core.codec import SCHEMA_DIR, codec
from streams.routing import lifecycle as lc
from streams.routing.rules import RuleSet, load_rules

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
V1 = fastavro.parse_schema(json.loads((SCHEMA_DIR / "history" / "Dispatch.v1.avsc").read_text("utf-8")))
T0 = 1_760_000_000_000


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(DEPLOY / "routing.yaml")


def enriched(rules: RuleSet) -> dict[str, Any]:
    case = {"case_id": "c-d", "county_code": "330502", "street_code": "330502001", "category": "garbage",
            "title": "垃圾堆放", "address": "红旗路12号", "lng": 120.1, "lat": 30.87, "severity": 2,
            "sources": ["hotline-12345"], "report_ids": ["r1"], "report_count": 1, "first_seen": T0, "last_seen": T0,
            "status": "reported", "dispatchable": True, "device_ids": [], "version": 1, "updated_at": T0}
    report = {"report_id": "r1", "source": "hotline-12345", "source_ref": "ORD-9", "case_id": "c-d",
              "county_code": "330502", "text": "垃圾堆放，联系电话13812345678", "reported_at": T0, "received_at": T0,
              "attachments": ["https://img.example.cn/a.jpg", "not-a-url"], "reporter_hash": "ab" * 32,
              "reporter_masked": "王* 138****5678", "deadline": None}
    state, _ = lc.on_linked(None, report)
    _, fx = lc.on_case(state, case, rules)
    return fx.dispatches[0]


def test_v2_dispatch_carries_what_agencies_act_on(rules: RuleSet) -> None:
    d = enriched(rules)
    assert (d["urgency"], d["orderNos"], d["eventIds"], d["photoUrls"]) == ("紧急", ["ORD-9"], [],
                                                                            ["https://img.example.cn/a.jpg"])
    assert d["description"] == "垃圾堆放，联系电话138****5678" and d["contactRelayId"] == "hotline-12345:" + "ab" * 8
    assert "13812345678" not in json.dumps(d, ensure_ascii=False)
    assert (d["title"], d["address"], d["lng"], d["lat"]) == ("垃圾堆放", "红旗路12号", 120.1, 30.87)


def test_an_agency_on_the_v1_schema_reads_v2_records(rules: RuleSet) -> None:
    data = codec("Dispatch").encode(enriched(rules))
    body = data[10:]
    # the README's snippet: its own (v1) schema as the writer schema; new fields are appended, so it reads v1's
    naive = fastavro.schemaless_reader(io.BytesIO(body), V1)
    # a careful agency resolves the writer schema (looked up by fingerprint) against its v1 reader schema
    resolved = fastavro.schemaless_reader(io.BytesIO(body), codec("Dispatch").schema, V1)
    for got in (naive, resolved):
        assert isinstance(got, dict)
        assert (got["dispatchId"], got["caseId"], got["role"], got["category"], got["action"]) == (
            enriched(rules)["dispatchId"], "c-d", "lead", "garbage", "dispatch")
        assert "urgency" not in got


def test_the_hub_reads_v1_records_with_defaults() -> None:
    v1_record = {"dispatchId": "d1", "caseId": "c1", "agency": "330502.zhzf", "countyCode": "330502", "role": "lead",
                 "reason": "triage", "category": "garbage", "severity": 1, "dispatchedAt": T0}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, V1, v1_record)
    from gridhub.core.codec import MAGIC, _fingerprint

    got = codec("Dispatch").decode(MAGIC + _fingerprint(V1) + buf.getvalue())
    assert (got["urgency"], got["orderNos"], got["photoUrls"], got["clock"]) == (None, [], [], "natural")
