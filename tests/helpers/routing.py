"""Helpers of the routing integration tests: build inputs, read topics until a condition holds."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

from gridhub.core.codec import codec
from gridhub.core.dlq import parse_dead_letter_headers
from gridhub.core.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


#: Time in epoch ms for the pure routing tests: an arbitrary instant (2025-10-09) and its units.
T0 = 1_760_000_000_000
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR


def now_ms() -> int:
    return int(time.time() * 1000)


def make_case(case_id: str, category: str = "garbage", *, severity: int = 1, sources: tuple[str, ...] = ("four-platforms",),
              county: str = "330502", street: str | None = "330502001", version: int = 1,
              dispatchable: bool = True, at: int | None = None) -> dict[str, Any]:
    at = at or now_ms()
    return {"case_id": case_id, "county_code": county, "street_code": street, "category": category,
            "title": f"{category} 测试", "address": "测试路1号", "lng": 120.09, "lat": 30.87, "severity": severity,
            "sources": list(sources), "report_ids": [f"r-{case_id}"], "report_count": 1, "first_seen": at,
            "last_seen": at, "status": "reported", "dispatchable": dispatchable, "device_ids": [],
            "version": version, "updated_at": at}


def produce_case(producer: Any, settings: Settings, case: dict[str, Any]) -> None:
    producer.send(settings.topic("cases"), key=case["case_id"].encode(), value=codec("Case").encode(case)).get(30)


def feedback_doc(dispatch: dict[str, Any], action: str, **kw: Any) -> dict[str, Any]:
    doc = {"dispatchId": dispatch["dispatchId"], "caseId": dispatch["caseId"], "agency": dispatch["agency"],
           "action": action, "time": kw.pop("time", now_ms()), "note": kw.pop("note", None)}
    doc.update(kw)
    return doc


def send_feedback(producer: Any, settings: Settings, doc: dict[str, Any] | bytes, key: str | None = None) -> bytes:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc, ensure_ascii=False).encode()
    case_key = key if key is not None else (doc["caseId"] if isinstance(doc, dict) else "")
    producer.send(settings.topic("feedback"), key=case_key.encode(), value=raw).get(30)
    return raw


def review_report(case_id: str, satisfaction: str = "满意") -> dict[str, Any]:
    t = now_ms()
    return {"report_id": f"rv-{case_id}", "source": "hotline-12345", "source_ref": f"ORD-{case_id}",
            "kind": "incident", "county_code": "330502", "street_code": "330502001", "category": "garbage",
            "text": "回访", "reported_at": t, "received_at": t, "severity": 1, "status": "已回访", "version": 2,
            "satisfaction": satisfaction, "case_id": case_id}


def write_rules(tmp: Path, body: str, agencies: Path | None = None) -> Path:
    path = tmp / "routing.yaml"
    path.write_text(f"agencies: {agencies or DEPLOY / 'agencies.yaml'}\ncategories: {DEPLOY / 'categories.yaml'}\n"
                    + textwrap.dedent(body), encoding="utf-8")
    return path


def events_for(events: list[dict[str, Any]], case_id: str) -> list[str]:
    return [e["event"] for e in events if e["case_id"] == case_id]


def dead_letters(records: list[Any]) -> list[tuple[str, str, bytes]]:
    out = []
    for r in records:
        info = parse_dead_letter_headers(r.headers)
        out.append((info.stage, info.reason, r.value))
    return out


def hotline_order(order_no: str, **kw: Any) -> dict[str, Any]:
    """A valid 12345 order (CONTRACTS 1.2) accepted now, in 月河街道 (330502001); ``kw`` overrides fields."""
    beijing = timezone(timedelta(hours=8))
    doc = {"orderNo": order_no, "channel": "电话", "acceptTime": datetime.now(beijing).strftime("%Y-%m-%d %H:%M:%S"),
           "caller": "张三", "phone": "13800001111", "appealType": "投诉", "categoryName": "市容环卫/占道经营",
           "title": "流动摊贩占道经营", "content": "月河街道红旗路口有流动摊贩占道经营，影响通行，请处理。电话13800001111",
           "address": "湖州市吴兴区月河街道红旗路12号", "areaCode": "330502", "streetCode": "330502001",
           "lng": 120.0985, "lat": 30.8702, "urgency": "一般", "status": "已派发"}
    doc.update(kw)
    return doc


def produce_raw(producer: Any, settings: Settings, source: str, key: str, doc: dict[str, Any]) -> None:
    """One raw document of ``source`` to its namespaced raw topic, acknowledged."""
    producer.send(settings.topic(f"raw.{source}"), key=key.encode(),
                  value=json.dumps(doc, ensure_ascii=False).encode()).get(30)
