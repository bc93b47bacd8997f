"""normalize(): one test per rule of the three adapters (CONTRACTS.md 1.1-1.3)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from streams.ingest.versioning import status_rank

from gridhub.core.codec import codec
from gridhub.core.reference.geo import haversine_m, wgs84_to_gcj02
from streams.ingest.normalize import (MAX_DOCUMENT_BYTES, REPORT_NAMESPACE, Normalized, Rejected, normalize,
                                      report_id)
from gridhub.core.pii import reporter_hash

NOW = 1_790_000_000_000  # 2026-09-21T14:13:20Z: a fixed receipt time, so the tests never age
KEY = b"test-pii-key"
BEIJING = timezone(timedelta(hours=8))


def run(source: str, doc: Any, *, received: int = NOW, registry: dict[str, dict[str, Any]] | None = None,
        ) -> Normalized:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc, ensure_ascii=False).encode("utf-8")
    return normalize(source, raw, registry=registry, received_at_ms=received, pii_key=KEY)


def rejected(source: str, doc: Any, **kw: Any) -> str:
    with pytest.raises(Rejected) as info:
        run(source, doc, **kw)
    return info.value.reason


def four(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "eventId": "SPT-20260921-0001", "platform": "综合执法", "eventSource": "网格员上报",
        "categoryCode": "0302", "categoryName": "占道经营", "title": "店门口占道经营",
        "description": "吴兴区月河街道某店门口占道经营，网格员张三（13812345678）发现。",
        "occurTime": NOW - 3_600_000, "reportTime": NOW - 60_000, "streetCode": "330502001",
        "villageCode": None, "gridCode": "330502001001-03", "address": "月河街道人民路1号",
        "lng": 120.0930, "lat": 30.8930, "reporter": {"id": "W1", "name": "张三", "phone": "13812345678"},
        "urgency": "紧急", "attachments": ["https://img.example.org/1.jpg"], "status": "待受理",
    }
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not None}


def hotline(**over: Any) -> dict[str, Any]:
    accept = datetime.fromtimestamp((NOW - 120_000) / 1000, tz=BEIJING)
    doc: dict[str, Any] = {
        "orderNo": "2026092112345001", "channel": "电话", "acceptTime": f"{accept:%Y-%m-%d %H:%M:%S}",
        "caller": "李四", "phone": "0572-2345678", "appealType": "投诉", "categoryCode": "0102",
        "categoryName": "市容环卫/占道经营", "title": "占道经营", "content": "李四反映人民路有人占道经营，手机13912345678。",
        "address": "人民路", "areaCode": "330502", "streetCode": "330502001", "lng": 120.098, "lat": 30.890,
        "urgency": "一般", "deadline": "2026-09-26 18:00:00", "status": "已派发", "satisfaction": "",
    }
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not None}


def sensor(**over: Any) -> dict[str, Any]:
    at = datetime.fromtimestamp((NOW - 5_000) / 1000, tz=BEIJING)
    doc: dict[str, Any] = {
        "deviceId": "860000000000001", "deviceType": "smoke", "eventType": "alarm",
        "eventTime": at.isoformat(timespec="milliseconds"), "value": 42.5, "threshold": 30, "unit": "ppm",
        "lng": 120.09, "lat": 30.89, "streetCode": "330502001", "address": "月河街道人民路3号",
    }
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not None}


REGISTRY = {"860000000000001": {"deviceId": "860000000000001", "deviceType": "smoke", "streetCode": "330502002",
                                "villageCode": None, "address": "朝阳街道某小区5幢", "lng": 120.1, "lat": 30.88,
                                "owner": "某物业服务有限公司", "ownerPhone": "13700000000", "heartbeatSeconds": 300}}


# --------------------------------------------------------------------------- four-platforms

def test_four_platforms_report() -> None:
    r = run("four-platforms", four()).report
    assert r is not None
    assert r["report_id"] == str(uuid.uuid5(REPORT_NAMESPACE, "four-platforms|SPT-20260921-0001"))
    assert (r["source"], r["source_ref"], r["kind"]) == ("four-platforms", "SPT-20260921-0001", "incident")
    assert (r["county_code"], r["street_code"], r["grid_code"]) == ("330502", "330502001", "330502001001-03")
    assert r["category"] == "street_vending" and r["severity"] == 2
    assert r["reported_at"] == NOW - 60_000 and r["occurred_at"] == NOW - 3_600_000
    # version: the status rank above the report time (streams/ingest/versioning.py, issue 13)
    assert r["received_at"] == NOW and r["version"] == (status_rank("four-platforms", r["status"]) << 42) | r["reported_at"]
    assert (r["lng"], r["lat"]) == (120.093, 30.893)
    assert r["platform"] == "综合执法" and r["attachments"] == ["https://img.example.org/1.jpg"]
    codec("Report").decode(codec("Report").encode(r))  # schema-valid


def test_four_platforms_pii_is_hashed_and_masked() -> None:
    r = run("four-platforms", four()).report
    assert r is not None
    assert r["reporter_hash"] == reporter_hash(KEY, "13812345678", "张三")
    assert r["reporter_masked"] == "张* 138****5678"
    encoded = codec("Report").encode(r)
    assert "13812345678".encode() not in encoded and "张三".encode() not in encoded
    assert "张*" in r["text"] and "138****5678" in r["text"]


@pytest.mark.parametrize("platform", ["综治工作", "监管执法", "应急管理", "公共服务", "市场监管", "综合执法", "便民服务"])
def test_four_platforms_accepts_2021_and_legacy_platforms(platform: str) -> None:
    assert run("four-platforms", four(platform=platform)).report is not None


def test_four_platforms_unknown_platform() -> None:
    assert "unknown platform '城管平台'" in rejected("four-platforms", four(platform="城管平台"))


#: A description that names no kind of problem, so only the source's category decides.
NEUTRAL = {"title": "巡查上报", "description": "月河街道人民路1号，网格员张三（13812345678）现场查看后上报。"}


def test_four_platforms_category_by_name_when_code_unknown() -> None:
    r = run("four-platforms", four(categoryCode="7777", categoryName="违法建设", **NEUTRAL)).report
    assert r is not None and r["category"] == "illegal_construction"


def test_unknown_category_is_other_not_dropped() -> None:
    r = run("four-platforms", four(categoryCode="7777", categoryName="外星人", **NEUTRAL)).report
    assert r is not None and r["category"] == "other" and r["source_category_name"] == "外星人"


def test_content_fills_and_overrides_the_source_category() -> None:
    """The text decides when the source's category is unknown or contradicted (streams/ingest/classify.py)."""
    r = run("four-platforms", four(categoryCode="7777", categoryName="外星人")).report  # text: 占道经营
    assert r is not None and r["category"] == "street_vending"
    r = run("four-platforms", four(categoryCode="0302", categoryName="违法建设")).report  # name wins over code,
    assert r is not None and r["category"] == "street_vending"                        # the text over both
    h = run("hotline-12345", hotline(categoryName="城乡建设/市政设施/路灯照明", title="红绿灯坏了",
                                     content="人民路口的红绿灯不亮了，一直黄闪，车子抢着过很危险。")).report
    assert h is not None and h["category"] == "traffic"


def test_direct_answers_are_consultations_whatever_the_text() -> None:
    h = run("hotline-12345", hotline(appealType="咨询", status="已办结", categoryName="公安交警/道路通行/路况咨询",
                                     content="下穿通道积水这么深，还能不能开车过去？")).report
    assert h is not None and h["category"] == "consultation" and h["dispatchable"] is False


def test_village_must_belong_to_street() -> None:
    r = run("four-platforms", four(streetCode="330102001", villageCode="330102001051")).report
    assert r is not None and (r["county_code"], r["village_code"]) == ("330102", "330102001051")
    assert "does not belong to streetCode" in rejected("four-platforms", four(villageCode="330102001051"))
    assert "unknown villageCode" in rejected("four-platforms", four(streetCode="330102001", villageCode="330102001999"))
    assert "malformed villageCode" in rejected("four-platforms", four(villageCode="3301020010"))


@pytest.mark.parametrize("urgency,severity", [("一般", 1), ("紧急", 2), ("特急", 3), (None, 1)])
def test_severity(urgency: str | None, severity: int) -> None:
    r = run("four-platforms", four(urgency=urgency)).report
    assert r is not None and r["severity"] == severity


def test_unknown_urgency() -> None:
    assert "unknown urgency" in rejected("four-platforms", four(urgency="很急"))


def test_time_bounds() -> None:
    assert run("four-platforms", four(reportTime=NOW + 23 * 3600_000)).report is not None
    assert "in the future" in rejected("four-platforms", four(reportTime=NOW + 25 * 3600_000))
    assert run("four-platforms", four(reportTime=NOW - 399 * 86400_000)).report is not None
    assert "in the past" in rejected("four-platforms", four(reportTime=NOW - 401 * 86400_000))
    assert "in the past" in rejected("four-platforms", four(reportTime=(NOW - 60_000) // 1000))  # seconds, not ms
    assert "'occurTime' is more than 400 days" in rejected("four-platforms", four(occurTime=1))


def test_coordinates_rules() -> None:
    assert "outside Zhejiang" in rejected("four-platforms", four(lng=116.40, lat=39.90))
    assert "outside Zhejiang" in rejected("four-platforms", four(lng=30.89, lat=120.09))
    assert "given together" in rejected("four-platforms", four(lat=None))
    assert "must be a number" in rejected("four-platforms", four(lng="120.1"))
    r = run("four-platforms", four(lng=None, lat=None)).report
    assert r is not None and r["lng"] is None


@pytest.mark.parametrize("field", ["eventId", "platform", "description", "reportTime", "streetCode"])
def test_four_platforms_required_fields(field: str) -> None:
    doc = four()
    del doc[field]
    assert rejected("four-platforms", doc) == f"missing required field {field!r}"


def test_wrong_types() -> None:
    assert "'reportTime' must be an integer" in rejected("four-platforms", four(reportTime=str(NOW)))
    assert "'reportTime' must be an integer" in rejected("four-platforms", four(reportTime=True))
    assert "'description' must be a string" in rejected("four-platforms", four(description=["x"]))
    assert "'reporter' must be an object" in rejected("four-platforms", four(reporter="张三"))
    assert "'reporter.phone' must be a string" in rejected("four-platforms", four(reporter={"phone": 13812345678}))
    assert "'attachments' must be an array of strings" in rejected("four-platforms", four(attachments=[1]))
    assert "required field 'description' is empty" in rejected("four-platforms", four(description="  "))


# --------------------------------------------------------------------------- hotline-12345

def test_hotline_report() -> None:
    r = run("hotline-12345", hotline()).report
    assert r is not None
    assert r["report_id"] == report_id("hotline-12345", "2026092112345001")
    assert r["reported_at"] == NOW - 120_000  # Beijing wall time -> UTC epoch ms
    assert r["deadline"] == int(datetime(2026, 9, 26, 10, 0, tzinfo=timezone.utc).timestamp() * 1000)
    assert r["category"] == "street_vending" and r["county_code"] == "330502"
    assert (r["channel"], r["appeal_type"], r["status"]) == ("电话", "投诉", "已派发")
    assert r["satisfaction"] is None and r["dispatchable"] is True
    assert r["reporter_masked"] == "李* 0572****5678"
    assert "李*" in r["text"] and "139****5678" in r["text"] and "13912345678" not in r["text"]
    codec("Report").encode(r)


def test_hotline_gcj02_converted_within_5_m() -> None:
    wgs = (120.098, 30.890)
    gcj = wgs84_to_gcj02(*wgs)
    assert haversine_m(lng1=wgs[0], lat1=wgs[1], lng2=gcj[0], lat2=gcj[1]) > 100  # the raw offset is hundreds of metres
    r = run("hotline-12345", hotline(lng=gcj[0], lat=gcj[1])).report
    assert r is not None and haversine_m(lng1=r["lng"], lat1=r["lat"], lng2=wgs[0], lat2=wgs[1]) < 5
    r = run("hotline-12345", hotline(lng=str(gcj[0]), lat=str(gcj[1]))).report  # CSV exports: text cells
    assert r is not None and haversine_m(lng1=r["lng"], lat1=r["lat"], lng2=wgs[0], lat2=wgs[1]) < 5


def test_hotline_redelivery_same_id_higher_version() -> None:
    first = run("hotline-12345", hotline(status="已派发"), received=NOW).report
    later = run("hotline-12345", hotline(status="已回访", satisfaction="满意"), received=NOW + 86_400_000).report
    assert first is not None and later is not None
    assert later["report_id"] == first["report_id"]
    assert later["version"] > first["version"]
    assert (later["status"], later["satisfaction"]) == ("已回访", "满意")


@pytest.mark.parametrize("appeal,status,dispatchable", [
    ("咨询", "已办结", False), ("感谢", "已办结", False), ("咨询", "已派发", True), ("投诉", "已办结", True)])
def test_hotline_consultations_not_dispatched(appeal: str, status: str, dispatchable: bool) -> None:
    r = run("hotline-12345", hotline(appealType=appeal, status=status)).report
    assert r is not None and r["dispatchable"] is dispatchable


def test_hotline_region_rules() -> None:
    assert "unknown areaCode '330599'" in rejected("hotline-12345", hotline(areaCode="330599", streetCode=""))
    assert "malformed areaCode" in rejected("hotline-12345", hotline(areaCode="3305"))
    assert "unknown areaCode '110101'" in rejected("hotline-12345", hotline(areaCode="110101", streetCode=""))
    assert "does not belong to areaCode" in rejected("hotline-12345", hotline(streetCode="330102001"))
    r = run("hotline-12345", hotline(streetCode="")).report  # empty cell = absent
    assert r is not None and r["street_code"] is None and r["county_code"] == "330502"


def test_hotline_time_formats() -> None:
    assert "must be 'YYYY-MM-DD HH:MM:SS'" in rejected("hotline-12345", hotline(acceptTime="2026/09/21 10:00"))
    assert "not a valid date" in rejected("hotline-12345", hotline(acceptTime="2026-02-30 10:00:00"))
    r = run("hotline-12345", hotline(deadline="2026-09-26")).report
    assert r is not None and r["deadline"] == int(datetime(2026, 9, 26, 23, 59, 59, 999000, tzinfo=BEIJING)
                                                  .timestamp() * 1000)
    assert "'deadline'" in rejected("hotline-12345", hotline(deadline="next week"))


@pytest.mark.parametrize("field", ["orderNo", "acceptTime", "content", "areaCode"])
def test_hotline_required_fields(field: str) -> None:
    doc = hotline()
    del doc[field]
    assert rejected("hotline-12345", doc) == f"missing required field {field!r}"


# --------------------------------------------------------------------------- sensors

def test_sensor_alarm_report() -> None:
    doc = sensor()
    out = run("sensors", doc)
    r = out.report
    assert r is not None and out.device_event is None
    assert r["source_ref"] == f"860000000000001@{doc['eventTime']}"
    assert (r["kind"], r["category"], r["severity"]) == ("incident", "fire", 3)
    assert r["reported_at"] == NOW - 5_000 and r["county_code"] == "330502"
    assert (r["device_id"], r["device_type"], r["value"], r["threshold"], r["unit"]) == (
        "860000000000001", "smoke", 42.5, 30.0, "ppm")
    assert out.heartbeat == ("860000000000001", NOW - 5_000)  # any event proves liveness
    codec("Report").encode(r)


@pytest.mark.parametrize("device_type,category,severity", [
    ("smoke", "fire", 3), ("electric", "electrical_fire", 3), ("gas", "gas_leak", 3),
    ("water_level", "flood", 2), ("manhole", "manhole", 2), ("radiation", "other", 2)])
def test_sensor_taxonomy_and_severity(device_type: str, category: str, severity: int) -> None:
    r = run("sensors", sensor(deviceType=device_type)).report
    assert r is not None and (r["category"], r["severity"]) == (category, severity)


def test_sensor_recover() -> None:
    r = run("sensors", sensor(eventType="recover")).report
    assert r is not None and r["kind"] == "recover"


def test_sensor_event_time_kept_as_delivered_in_source_ref() -> None:
    a = run("sensors", sensor(eventTime="2026-09-21T22:13:15+08:00")).report
    b = run("sensors", sensor(eventTime="2026-09-21T14:13:15Z")).report
    assert a is not None and b is not None
    assert a["reported_at"] == b["reported_at"]          # the same instant ...
    assert a["source_ref"] != b["source_ref"]            # ... but the source's own id is the text delivered
    assert "has no UTC offset" in rejected("sensors", sensor(eventTime="2026-09-21T14:13:15"))
    assert "ISO-8601" in rejected("sensors", sensor(eventTime="yesterday"))


@pytest.mark.parametrize("event_type", ["fault", "low_battery", "selftest"])
def test_sensor_maintenance_events(event_type: str) -> None:
    out = run("sensors", sensor(eventType=event_type, lng=None, lat=None, streetCode=None), registry=REGISTRY)
    assert out.report is None and out.heartbeat is not None
    ev = out.device_event
    assert ev is not None
    assert (ev["event_type"], ev["device_id"], ev["street_code"], ev["county_code"]) == (
        event_type, "860000000000001", "330502002", "330502")
    assert ev["owner"] == "某物业服务有限公司"
    codec("DeviceEvent").encode(ev)


def test_sensor_private_owner_masked() -> None:
    registry = {"860000000000001": {**REGISTRY["860000000000001"], "owner": "王五"}}
    ev = run("sensors", sensor(eventType="fault"), registry=registry).device_event
    assert ev is not None and ev["owner"] == "王*"


def test_sensor_heartbeat_is_liveness_only() -> None:
    out = run("sensors", sensor(eventType="heartbeat", streetCode=None, lng=None, lat=None))
    assert out.report is None and out.device_event is None
    assert out.heartbeat == ("860000000000001", NOW - 5_000)


def test_sensor_unknown_event_type() -> None:
    assert "unknown eventType 'explode'" in rejected("sensors", sensor(eventType="explode"))


def test_sensor_location_from_registry() -> None:
    r = run("sensors", sensor(lng=None, lat=None, streetCode=None, address=None), registry=REGISTRY).report
    assert r is not None
    assert (r["street_code"], r["county_code"], r["lng"], r["lat"]) == ("330502002", "330502", 120.1, 30.88)
    assert r["address"] == "朝阳街道某小区5幢"
    assert "13700000000" not in json.dumps(r, ensure_ascii=False)  # owner phone never copied


def test_sensor_event_location_wins_over_registry() -> None:
    r = run("sensors", sensor(), registry=REGISTRY).report
    assert r is not None and r["street_code"] == "330502001" and r["lng"] == 120.09


def test_sensor_unknown_location() -> None:
    reason = rejected("sensors", sensor(streetCode=None))
    assert reason.startswith("unknown device location")


# --------------------------------------------------------------------------- entry-point rules

def test_unknown_source() -> None:
    assert "unknown source 'weibo'" in rejected("weibo", four())


def test_oversized() -> None:
    doc = four(description="占" * (MAX_DOCUMENT_BYTES // 3 + 10))
    assert "exceeds the 262144-byte limit" in rejected("four-platforms", doc)


def test_parse_errors() -> None:
    assert "not valid UTF-8" in rejected("four-platforms", b'{"eventId": "\xff"}')
    assert "malformed JSON" in rejected("four-platforms", b'{"eventId": ')
    assert "duplicate key 'eventId'" in rejected("four-platforms", b'{"eventId": "a", "eventId": "b"}')
    assert "got array" in rejected("sensors", b"[]")
    assert "document is empty" in rejected("sensors", b"")
    assert "JSON does not allow NaN" in rejected("sensors", b'{"value": NaN}')


def test_utf8_bom_accepted() -> None:
    raw = b"\xef\xbb\xbf" + json.dumps(four(), ensure_ascii=False).encode()
    assert run("four-platforms", raw).report is not None


def test_pure_and_deterministic() -> None:
    a = run("hotline-12345", hotline())
    b = run("hotline-12345", hotline())
    assert a == b
