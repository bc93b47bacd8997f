"""Pure transforms of the ClickHouse sink: Avro facts -> rows, without Kafka or ClickHouse."""

from __future__ import annotations

import json

import pytest

from connectors.clickhouse.rows import (CASE_EVENTS, DISPATCHES, REPORTS, RowError, TopicMap, case_event_row,
                                        dead_letter_row, dispatch_row, to_row)
from gridhub.core.codec import codec
from gridhub.core.dlq import dead_letter_headers
from gridhub.core.settings import Settings

REPORT = {
    "report_id": "r-1", "source": "hotline-12345", "source_ref": "GD2026001", "kind": "incident",
    "county_code": "330502", "street_code": "330502001", "category": "city.street_vending", "text": "占道经营",
    "reported_at": 1_763_000_000_123, "received_at": 1_763_000_001_999, "severity": 2, "version": 3,
    "case_id": "c-1", "satisfaction": "满意",
}


def test_report_row_keeps_the_contract_columns_and_converts_ms_to_seconds() -> None:
    row = to_row(REPORTS, codec("Report").encode(REPORT))
    assert (row["source"], row["source_ref"], row["case_id"]) == ("hotline-12345", "GD2026001", "c-1")
    assert row["reported_at"] == 1_763_000_000 and row["received_at"] == 1_763_000_001
    assert row["street_code"] == "330502001" and row["village_code"] == ""  # unknown text is '' (no Nullable keys)
    assert row["occurred_at"] is None and row["version"] == 3 and row["dispatchable"] == 1


def test_unlinked_report_has_empty_case_id() -> None:
    assert to_row(REPORTS, codec("Report").encode({**REPORT, "case_id": None}))["case_id"] == ""


def test_case_event_detail_fields_are_copied_out() -> None:
    row = case_event_row({"event_id": "e1", "case_id": "c-1", "county_code": "330502", "event": "dispatched",
                          "at": 1_763_000_000_000, "agency": "330502.zhzf", "dispatch_id": "d1",
                          "detail": json.dumps({"role": "lead", "sign_deadline": 1_763_003_600_000,
                                                "resolve_deadline": 1_763_086_400_000})})
    assert (row["role"], row["clock"], row["deadline"]) == ("lead", "", 1_763_086_400)
    review = case_event_row({"event_id": "e2", "case_id": "c-1", "county_code": "330502", "event": "reviewed",
                             "at": 1, "detail": json.dumps({"satisfaction": "基本满意"}, ensure_ascii=False)})
    assert review["satisfaction"] == "基本满意" and review["agency"] == ""


def test_case_event_with_broken_detail_is_a_row_error() -> None:
    with pytest.raises(RowError, match="not JSON"):
        case_event_row({"event_id": "e", "case_id": "c", "county_code": "330502", "event": "overdue", "at": 0,
                        "detail": "{clock: sign"})


def test_withdrawal_outranks_the_dispatch_it_withdraws() -> None:
    base = {"dispatchId": "d1", "caseId": "c-1", "agency": "330502.zhzf", "countyCode": "330502", "role": "lead",
            "reason": "rule:r1", "category": "x", "severity": 1, "dispatchedAt": 1_763_000_000_000,
            "resolveDeadline": 1_763_086_400_000}
    dispatch, withdraw = dispatch_row(base), dispatch_row({**base, "action": "withdraw"})
    assert dispatch["deadline"] == 1_763_086_400 and dispatch["sign_deadline"] is None
    assert withdraw["version"] > dispatch["version"]


def test_garbage_bytes_and_out_of_range_values_are_row_errors() -> None:
    with pytest.raises(RowError, match="Avro"):
        to_row(REPORTS, b'{"report_id": "json, not avro"}')
    with pytest.raises(RowError, match="severity"):
        to_row(REPORTS, codec("Report").encode({**REPORT, "severity": 999}))
    with pytest.raises(RowError):  # a Report where a CaseEvent belongs
        to_row(CASE_EVENTS, codec("Report").encode(REPORT))


def test_dead_letter_row_reads_the_error_headers() -> None:
    headers = dead_letter_headers("normalize", "streetCode 123 is unknown", "ns.raw.sensors", 3, 42)
    row = dead_letter_row(1, 7, b"dev-1", b'{"bad": true}', headers, 1_763_000_000_000)
    assert (row["stage"], row["source_topic"], row["source_partition"], row["source_offset"]) == \
        ("normalize", "ns.raw.sensors", 3, 42)
    assert (row["dlq_partition"], row["dlq_offset"], row["value"], row["key"]) == (1, 7, '{"bad": true}', "dev-1")


def test_dead_letter_row_is_masked_and_keeps_the_hash_of_the_original() -> None:
    """Analysts read dead_letters: the rejected document's personal data is masked there (issue 16)."""
    import hashlib
    import json as _json

    doc = {"orderNo": "X1", "caller": "欧阳雪梅", "phone": "13912345678",
           "content": "联系人：欧阳雪梅，电话0572-2123456，身份证330102199001011234"}
    raw = _json.dumps(doc, ensure_ascii=False).encode()
    headers = dead_letter_headers("normalize", "phone 13912345678 of 欧阳雪梅 is odd", "ns.raw.hotline-12345", 0, 1,
                                  extra={"note": "caller 13912345678"})
    row = dead_letter_row(0, 1, b"X1", raw, headers, 1_763_000_000_000)
    text = repr(row)
    for secret in ("雪梅", "12345678", "2123456", "19900101"):
        assert secret not in text, (secret, text)
    assert "欧***" in row["value"] and "139****5678" in row["reason"]
    assert _json.loads(row["extra"])["value_sha256"] == hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize("namespace", ["", "t1a2b3c4"])
def test_topic_map_and_subscription_agree(namespace: str) -> None:
    s = Settings(namespace=namespace)
    topics = TopicMap(s)
    wanted = {"reports.linked": REPORTS, "dispatches": DISPATCHES, "case-events": CASE_EVENTS, "cases": "cases",
              "dlq": "dead_letters", "device-events": "device_events"}  # device_events: issue 15
    assert sorted(topics.topics) == sorted(s.topic(name) for name in wanted)
    for name, table in wanted.items():
        assert topics.table_for(s.topic(name)) == table
    # the agencies' own topics are not read: their dispatches arrive on `dispatches` too
    for other in ("reports", "raw.sensors", "case-lifecycle", "dispatch.330502.zhzf", "feedback"):
        assert topics.table_for(s.topic(other)) is None
        assert s.topic(other) not in topics.topics
