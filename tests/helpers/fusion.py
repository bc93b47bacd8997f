"""Report builders for the fusion unit tests (plain dicts shaped like the Avro Report)."""

from __future__ import annotations

import uuid
from typing import Any

from streams.fusion.config import load_config
from streams.fusion.engine import FusionEngine
from streams.fusion.state import MemoryKV

T0 = 1_750_035_600_000  # 2025-06-16 09:00 +08:00
MIN = 60_000
HOUR = 3_600_000
# 湖州市吴兴区 / 月河街道; a point on 红旗路 near the old town
COUNTY, STREET = "330502", "330502001"
LAT, LNG = 30.8703, 120.0933


def north(metres: float) -> float:
    """Latitude offset for ``metres`` to the north."""
    return metres / 111_320.0


def report(source_ref: str, *, source: str = "four-platforms", kind: str = "incident", t: int = T0,
           category: str = "street_vending", text: str = "红旗路有流动摊贩占道经营卖水果", lat: float | None = LAT,
           lng: float | None = LNG, address: str | None = None, street: str | None = STREET,
           county: str = COUNTY, version: int | None = None, device_id: str | None = None,
           severity: int = 1, dispatchable: bool = True, title: str | None = None) -> dict[str, Any]:
    return {
        "report_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{source}|{source_ref}")), "source": source,
        "source_ref": source_ref, "kind": kind, "county_code": county, "street_code": street,
        "village_code": None, "grid_code": None, "category": category, "source_category_code": None,
        "source_category_name": None, "title": title, "text": text, "address": address, "lng": lng, "lat": lat,
        "occurred_at": None, "reported_at": t, "received_at": t + MIN, "severity": severity, "status": None,
        "version": version if version is not None else t + MIN, "dispatchable": dispatchable,
        "reporter_hash": None, "reporter_masked": None, "channel": None, "appeal_type": None,
        "event_source": None, "platform": None, "deadline": None, "satisfaction": None, "device_id": device_id,
        "device_type": None, "value": None, "threshold": None, "unit": None, "attachments": [], "case_id": None,
    }


def alarm(device: str, t: int, *, category: str = "fire", lat: float | None = LAT, lng: float | None = LNG,
          address: str | None = "红旗路88号翠苑小区3幢", kind: str = "incident") -> dict[str, Any]:
    return report(f"{device}@{t}", source="sensors", kind=kind, t=t, category=category,
                  text=f"智慧烟感设备 {device} 告警", lat=lat, lng=lng, address=address, device_id=device)


class Harness:
    """One engine + one in-memory state; ``feed`` returns the case id each report got (None: none)."""

    def __init__(self) -> None:
        self.engine = FusionEngine(load_config())
        self.kv = MemoryKV()
        self.results: list[Any] = []

    def feed(self, *reports: dict[str, Any]) -> list[str | None]:
        out = []
        for r in reports:
            res = self.engine.process_report(self.kv, r)
            self.results.append(res)
            out.append(res.linked[-1]["case_id"] if res.linked else None)
        return out

    def lifecycle(self, case_id: str | None, event: str, at: int) -> Any:
        return self.engine.process_lifecycle(self.kv, {"case_id": case_id, "event": event, "at": at})

    def case(self, case_id: str | None) -> Any:
        from streams.fusion.state import JsonState

        return JsonState(self.kv).get(f"c:{case_id}")
