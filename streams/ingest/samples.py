"""Realistic, valid source documents, for the benchmark and the tests.

Not a simulator of incidents (``gridhub simulate`` is): these are single
documents in the exact wire shape of CONTRACTS.md 1.1-1.3, with real division
codes, personal data in the places it really appears, and the category /
urgency / event-type mix the feeds show, so that ``gridhub bench normalize``
measures the work a worker really does.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

from gridhub.core.reference import divisions
from gridhub.core.timeutil import BEIJING
from gridhub.core.reference.geo import wgs84_to_gcj02


#: Share of each source in a realistic day (12345 and the platforms dominate; sensors are bursty).
MIX = (("four-platforms", 0.45), ("hotline-12345", 0.35), ("sensors", 0.20))

_FOUR_CATEGORIES = [("0302", "占道经营"), ("0301", "违法建设"), ("0303", "垃圾乱堆"), ("0305", "噪声扰民"),
                    ("0101", "矛盾纠纷"), ("0402", "消防隐患"), ("0601", "道路设施"), ("0501", "水污染"),
                    ("0201", "食品安全"), ("0999", "新增类别")]
_HOTLINE_CATEGORIES = ["市容环卫/占道经营", "环境保护/噪声污染", "城乡建设/违法建设", "交通管理/违法停车",
                       "市场监管/消费维权", "劳动保障/欠薪", "政策咨询/其他", "城乡建设/市政设施/路灯不亮"]
_PLATFORMS = ["综治工作", "监管执法", "应急管理", "公共服务", "市场监管", "综合执法", "便民服务"]
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英"
_TEXTS = ["{addr}附近有流动摊贩占道经营，影响通行，请尽快处理。联系人：{name}，电话{phone}。",
          "{addr}工地夜间施工噪音很大，已经持续一周，严重影响休息，来电人{name}要求处理。",
          "反映{addr}河道有污水直排，水面发黑有异味，请环保部门核查。回电 {phone}",
          "{addr}人行道地砖破损多处，老人容易绊倒，请市政维修。",
          "咨询{addr}附近的社保办理地点和时间。"]
_SENSOR_EVENTS = [("alarm", 0.35), ("recover", 0.25), ("heartbeat", 0.25), ("fault", 0.05),
                  ("low_battery", 0.05), ("selftest", 0.05)]
_DEVICE_TYPES = {"smoke": ("ppm", 30.0), "electric": ("℃", 70.0), "gas": ("%LEL", 20.0),
                 "water_level": ("m", 3.5), "manhole": ("°", 15.0)}


class SampleGenerator:
    """Deterministic (seeded) generator of valid documents around ``now_ms``."""

    def __init__(self, now_ms: int, seed: int = 141) -> None:
        self.now_ms = now_ms
        self.rng = random.Random(seed)
        d = divisions()
        self.villages = sorted(d.villages.values(), key=lambda v: v.code)
        self.counter = 0
        #: device registry records (CONTRACTS.md 1.3) for the devices this generator emits
        self.registry: dict[str, dict[str, Any]] = {}
        for i in range(200):  # 200 devices: enough spread, small enough to fit any test table
            village = self.rng.choice(self.villages)
            device_type = self.rng.choice(sorted(_DEVICE_TYPES))
            lng, lat = self._point()
            device_id = f"86{i:013d}"  # IMEI-like, 15 digits
            self.registry[device_id] = {
                "deviceId": device_id, "deviceType": device_type, "streetCode": village.parent,
                "villageCode": village.code, "address": f"{village.name}{i % 40 + 1}号楼",
                "lng": lng, "lat": lat, "owner": f"{village.name}物业服务有限公司",
                "ownerPhone": self._phone(), "heartbeatSeconds": 300,
            }

    # --- small parts --------------------------------------------------------------------------
    def _point(self) -> tuple[float, float]:
        # The populated north of the province (Hangzhou-Huzhou-Jiaxing-Shaoxing-Ningbo).
        return round(self.rng.uniform(119.6, 121.8), 6), round(self.rng.uniform(29.3, 30.9), 6)

    def _phone(self) -> str:
        return f"1{self.rng.choice('3456789')}{self.rng.randrange(10**9):09d}"

    def _name(self) -> str:
        return self.rng.choice(_SURNAMES) + "".join(self.rng.choice(_GIVEN) for _ in range(self.rng.choice((1, 2))))

    def _text(self, addr: str, name: str, phone: str) -> str:
        return self.rng.choice(_TEXTS).format(addr=addr, name=name, phone=phone)

    def _recent_ms(self) -> int:
        return self.now_ms - self.rng.randrange(60_000, 6 * 3600_000)  # reported in the last 6 hours

    # --- documents ------------------------------------------------------------------------------
    def four_platforms(self) -> dict[str, Any]:
        self.counter += 1
        village = self.rng.choice(self.villages)
        code, name = self.rng.choice(_FOUR_CATEGORIES)
        reported = self._recent_ms()
        person, phone = self._name(), self._phone()
        lng, lat = self._point()
        addr = f"{village.name}{self.rng.randrange(1, 200)}号"
        return {
            "eventId": f"SPT{reported // 1000}{self.counter:06d}", "platform": self.rng.choice(_PLATFORMS),
            "eventSource": self.rng.choice(["网格员上报", "群众上报", "巡查发现"]),
            "categoryCode": code, "categoryName": name, "title": f"{name}问题",
            "description": self._text(addr, person, phone), "occurTime": reported - 600_000,
            "reportTime": reported, "streetCode": village.parent, "villageCode": village.code,
            "gridCode": f"{village.code}-{self.rng.randrange(1, 9):02d}", "address": addr, "lng": lng, "lat": lat,
            "reporter": {"id": f"W{self.rng.randrange(10**6):06d}", "name": person, "phone": phone},
            "urgency": self.rng.choice(["一般", "一般", "一般", "紧急", "特急"]),
            "attachments": [f"https://img.example.org/{self.counter}.jpg"], "status": "待受理",
        }

    def hotline(self) -> dict[str, Any]:
        self.counter += 1
        village = self.rng.choice(self.villages)
        accepted = datetime.fromtimestamp(self._recent_ms() / 1000, tz=BEIJING)
        person, phone = self._name(), self._phone()
        lng, lat = wgs84_to_gcj02(*self._point())
        addr = f"{village.name}{self.rng.randrange(1, 200)}号"
        category = self.rng.choice(_HOTLINE_CATEGORIES)
        appeal = "咨询" if category.startswith("政策咨询") else self.rng.choice(["投诉", "求助", "举报", "建议"])
        county = divisions().county_of_street(village.parent) or ""
        return {
            "orderNo": f"12345{accepted:%Y%m%d}{self.counter:06d}", "channel": self.rng.choice(["电话", "微信", "网站"]),
            "acceptTime": f"{accepted:%Y-%m-%d %H:%M:%S}", "caller": person, "phone": phone, "appealType": appeal,
            "categoryCode": f"{self.rng.randrange(100, 999)}", "categoryName": category, "title": category.split("/")[-1],
            "content": self._text(addr, person, phone), "address": addr, "areaCode": county,
            "streetCode": village.parent if self.rng.random() < 0.7 else "", "lng": round(lng, 6), "lat": round(lat, 6),
            "urgency": self.rng.choice(["一般", "一般", "紧急"]),
            "deadline": f"{accepted + timedelta(days=5):%Y-%m-%d %H:%M:%S}",
            "status": "已办结" if appeal == "咨询" else "已派发", "satisfaction": "",
        }

    def sensor(self, event_type: str | None = None) -> dict[str, Any]:
        self.counter += 1
        device_id = self.rng.choice(sorted(self.registry))
        device = self.registry[device_id]
        if event_type is None:
            event_type = self.rng.choices([e for e, _ in _SENSOR_EVENTS], [w for _, w in _SENSOR_EVENTS])[0]
        # Sensor platforms forward within seconds (a stale event would also mean a silent device).
        at = datetime.fromtimestamp((self.now_ms - self.rng.randrange(1_000, 120_000)) / 1000, tz=BEIJING)
        unit, threshold = _DEVICE_TYPES[device["deviceType"]]
        doc: dict[str, Any] = {"deviceId": device_id, "deviceType": device["deviceType"], "eventType": event_type,
                               "eventTime": at.isoformat(timespec="milliseconds")}
        if event_type in ("alarm", "recover"):
            doc.update(value=round(threshold * self.rng.uniform(0.5, 2.0), 2), threshold=threshold, unit=unit)
            if self.rng.random() < 0.5:  # half the platforms send the location with every event
                doc.update(lng=device["lng"], lat=device["lat"], streetCode=device["streetCode"],
                           address=device["address"])
        return doc

    def document(self) -> tuple[str, bytes, bytes]:
        """(source, key, value) of one document of the realistic mix."""
        source = self.rng.choices([s for s, _ in MIX], [w for _, w in MIX])[0]
        doc = {"four-platforms": self.four_platforms, "hotline-12345": self.hotline, "sensors": self.sensor}[source]()
        key = str(doc.get("eventId") or doc.get("orderNo") or doc.get("deviceId"))
        return source, key.encode(), json.dumps(doc, ensure_ascii=False).encode("utf-8")

    def documents(self, n: int) -> Iterator[tuple[str, bytes, bytes]]:
        for _ in range(n):
            yield self.document()
