"""Raw documents in, closed case out: ingest + fusion + routing in one `gridhub run` worker."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from helpers.kafka import TopicReader

from helpers.routing import feedback_doc, hotline_order, produce_raw, send_feedback

pytestmark = pytest.mark.integration
BEIJING = timezone(timedelta(hours=8))




def test_raw_documents_to_closed_case(settings: Any, worker: Any, kafka_producer: Any) -> None:
    worker(settings, only="ingest,fusion,routing")
    linked = TopicReader(settings, "reports.linked", "Report")
    events = TopicReader(settings, "case-events", "CaseEvent")
    zhzf = TopicReader(settings, "dispatch.330502.zhzf", "Dispatch")

    produce_raw(kafka_producer, settings, "hotline-12345", "E2E-H1", hotline_order("E2E-H1"))
    produce_raw(kafka_producer, settings, "hotline-12345", "E2E-ASK",
             hotline_order("E2E-ASK", appealType="咨询", status="已办结", categoryName="政策咨询/其他",
                    title="社保咨询", content="咨询社保卡补办的地点和时间", address="湖州市吴兴区爱山街道",
                    streetCode="330502003", lng=120.0901, lat=30.8611))
    produce_raw(kafka_producer, settings, "sensors", "E2E-SMOKE-1",
             {"deviceId": "E2E-SMOKE-1", "deviceType": "smoke", "eventType": "alarm",
              "eventTime": datetime.now(BEIJING).isoformat(timespec="seconds"), "value": 48.0, "threshold": 30.0,
              "unit": "ppm", "lng": 120.1102, "lat": 30.8815, "streetCode": "330502002",
              "address": "湖州市吴兴区朝阳街道某小区3幢"})

    # Fusion opened cases; routing dispatched the complaint to 综合执法, the alarm to 消防 and 应急 at once.
    reports = linked.until(lambda vs: {"E2E-H1", "E2E-ASK"} <= {v["source_ref"] for v in vs}
                           and any(v["source"] == "sensors" for v in vs), what="linked reports")
    case_of = {v["source_ref"]: v["case_id"] for v in reports}
    case_id = case_of["E2E-H1"]
    d = next(v for v in zhzf.until(lambda vs: any(v["caseId"] == case_id for v in vs), what="zhzf dispatch")
             if v["caseId"] == case_id)
    assert (d["role"], d["category"], d["streetCode"]) == ("lead", "street_vending", "330502001")
    payload = json.dumps(d, ensure_ascii=False, default=str)
    assert "13800001111" not in payload and "张三" not in payload  # no personal data leaves for agencies
    fire_case = next(v["case_id"] for v in reports if v["source"] == "sensors")
    for agency, role in (("330502.xfjy", "lead"), ("330502.yjgl", "assist")):
        fire = TopicReader(settings, f"dispatch.{agency}", "Dispatch")
        got = fire.until(lambda vs: any(v["caseId"] == fire_case for v in vs), what=f"{agency} dispatch")
        assert [v["role"] for v in got if v["caseId"] == fire_case] == [role]

    # The agency signs, reports progress, resolves; the hotline's 回访 update carries the satisfaction.
    for action in ("sign", "progress", "resolve"):
        send_feedback(kafka_producer, settings, feedback_doc(d, action, note=f"{action}: 已处理"))
    events.until(lambda vs: any(e["case_id"] == case_id and e["event"] == "resolved" for e in vs), what="resolved")
    produce_raw(kafka_producer, settings, "hotline-12345", "E2E-H1", hotline_order("E2E-H1", status="已回访", satisfaction="满意"))
    history = events.until(lambda vs: any(e["case_id"] == case_id and e["event"] == "closed" for e in vs),
                           timeout=90, what="closed")

    mine = [e for e in history if e["case_id"] == case_id]
    routing = [e["event"] for e in mine if e["event"] in {"dispatched", "signed", "progress", "resolved", "reviewed",
                                                          "closed", "overdue", "escalated", "returned"}]
    assert mine[0]["event"] == "created"  # fusion's event opens the history
    assert routing == ["dispatched", "signed", "progress", "resolved", "reviewed", "closed"]
    assert [e["state"] for e in mine if e["event"] in routing] == ["dispatched", "signed", "in_progress", "resolved",
                                                                   "reviewed", "closed"]
    assert json.loads(next(e for e in mine if e["event"] == "reviewed")["detail"])["satisfaction"] == "满意"
    assert all(e["at"] <= f["at"] for e, f in zip(mine, mine[1:]) if e["event"] in routing and f["event"] in routing)
    # The consultation the hotline answered directly was never dispatched.
    ask = case_of["E2E-ASK"]
    assert not [e for e in events.settle(2) if e["case_id"] == ask and e["event"] == "dispatched"]
