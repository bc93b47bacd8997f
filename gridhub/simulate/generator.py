"""The traffic generator: a pure, seeded iterator of source documents.

``generate(seed, rate, duration)`` yields :class:`SimRecord`\\ s in delivery
order, each carrying its ground-truth incident.  Nothing here touches Kafka or
files, so the fusion evaluation and the benchmarks replay exactly the traffic
``gridhub simulate`` produces.

How it works: a discrete-event simulation.  Incidents start as a Poisson
process; each incident schedules the reports it causes (grid worker reports,
12345 calls, sensor alarm storms and recoveries, status updates,
redeliveries) into a heap keyed by delivery time; every device schedules its
own heartbeats.  Popping the heap in order gives the delivery order with
memory bounded by what is outstanding, not by the run's length.

What the traffic contains, and why (each one is a case fusion must get right):

* heartbeats (about half of all records): liveness only, never a case;
  about 1 % of devices fall silent mid-run, to exercise offline detection;
* maintenance events (fault / low_battery / selftest): never a case;
* human incidents reported by the four platforms, the 12345 hotline or both,
  with paraphrased text, vague caller addresses and GCJ-02 caller coordinates
  tens of metres off; a 12345 order transferred to the four platforms
  (``12345转办``) is a second report of the same incident;
* fires: a smoke-alarm storm from the detectors of one building (repeated
  alarms, then ``recover``), a grid report and several 12345 calls;
* sensor incidents (gas, electric, water level, manhole), sometimes also
  phoned in;
* exact redeliveries and later versions of the same record (12345 status
  updates up to 已回访 with 满意度; four-platforms status changes): never a
  second case;
* consultations answered directly (咨询 / 感谢, 已办结 on first delivery):
  each its own incident, never joined to another;
* hard negatives: two incidents of one category at the same time 500 m+
  apart, and two different problems at the same address.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

from gridhub.simulate.geo import haversine_m, wgs84_to_gcj02
from gridhub.simulate.hard import (
    REALISM, hard_fp_category, hard_hotline_path, harden_fp_event, harden_hotline_order, vary_vocabulary,
)
from gridhub.simulate.text import (
    CATEGORIES, CAUSES, CONSULTATIONS, HUMAN_CATEGORY_WEIGHTS, SHOPS, WHEN, Category, caller_name, person_name,
)
from gridhub.simulate.world import (
    HEARTBEAT_SECONDS, DEVICE_MIX, County, Device, Place, build_devices, load_world, make_place, random_phone,
)

from gridhub.core.timeutil import BEIJING  # noqa: E402  (re-exported: the simulator's callers use it)
#: Default simulated start: a fixed instant, so ``generate(seed, ...)`` alone is reproducible.
DEFAULT_START_MS = 1750035600000  # 2025-06-16 09:00:00 +08:00

#: Share of all records that are heartbeats ("most sensor traffic"; about half of the total).
HEARTBEAT_SHARE = 0.5
#: Mean records (all kinds except heartbeats) one scenario produces, used to size the incident rate:
#: measured as 2.67 over 87k scenarios (seed 1, rate 40, 20000 s).
MEAN_RECORDS_PER_SCENARIO = 2.67

#: Scenario mix (relative weights).
SCENARIOS: dict[str, float] = {
    "human": 0.50, "fire": 0.05, "sensor": 0.12, "hard_negative_far": 0.05, "hard_negative_same_place": 0.05,
    "consultation": 0.12, "maintenance": 0.11,
}
#: Device type -> the category (key of CATEGORIES) whose incidents its alarms report; read off the
#: table so a sensor incident's 12345 calls always carry the sensor's taxonomy code.
SENSOR_CATEGORY: dict[str, str] = {c.device_type: c.key for c in CATEGORIES.values() if c.device_type}
#: Reading, threshold and unit of each device type, for alarms (above threshold) and normal readings.
READINGS: dict[str, tuple[float, float, str, float]] = {
    # type: (normal reading, threshold, unit, alarm reading upper bound)
    "smoke": (0.3, 3.0, "%/m", 12.0),            # optical obscuration per metre
    "electric": (45.0, 300.0, "mA", 900.0),      # residual current
    "gas": (0.0, 20.0, "%LEL", 80.0),            # lower explosive limit
    "water_level": (0.1, 0.5, "m", 1.6),         # water depth at an underpass
    "manhole": (1.0, 15.0, "°", 80.0),           # cover tilt angle
}
MINUTE = 60_000
SECOND = 1000


@dataclass(frozen=True)
class SimRecord:
    """One delivered document and what it really is."""

    at_ms: int                 # simulated delivery time
    source: str                # four-platforms | hotline-12345 | sensors
    key: str                   # eventId / orderNo / deviceId: the raw topic's key
    doc: dict[str, Any]
    incident: str | None       # ground truth; None for heartbeats, maintenance events
    kind: str                  # report | update | redelivery | recover | heartbeat | maintenance | consultation
    #: for an update or redelivery: the kind of the record it repeats
    origin_kind: str | None = None

    @property
    def source_ref(self) -> str:
        """The ``(source, source_ref)`` identity of CONTRACTS 3 (sensors: ``deviceId@eventTime``)."""
        if self.source == "sensors":
            return f"{self.doc['deviceId']}@{self.doc['eventTime']}"
        return self.key

    def value(self) -> bytes:
        """The UTF-8 JSON document, as the source would deliver it (stable: same record -> same bytes)."""
        return json.dumps(self.doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def record_line(self) -> dict[str, Any]:
        return {"source": self.source, "doc": self.doc}

    def label(self) -> dict[str, Any]:
        return {"source": self.source, "source_ref": self.source_ref, "incident": self.incident, "kind": self.kind}


def beijing_text(ms: int) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in Beijing time, no zone (12345 format)."""
    return datetime.fromtimestamp(ms / 1000, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def iso_text(ms: int) -> str:
    """ISO-8601 with offset and milliseconds (sensor platform format)."""
    return datetime.fromtimestamp(ms / 1000, BEIJING).isoformat(timespec="milliseconds")


#: Heap entry: (due ms, sequence number, record, or the index of a device whose heartbeat is due).
#: A plain tuple: the sequence number breaks ties, so the payload is never compared.
_Item = tuple[int, int, "SimRecord | int"]


class _Sim:
    def __init__(self, seed: int, rate: float, duration: float, start_ms: int,
                 counties: tuple[County, ...], warmup: float = 0.0, *, heartbeat_scale: float = 1.0,
                 closed_loop: bool = False, realism: str = "easy") -> None:
        if realism not in REALISM:
            raise ValueError(f"realism must be one of {', '.join(REALISM)}, got {realism!r}")
        self.rng = random.Random(seed)
        self.closed_loop = closed_loop
        self.hard = realism == "hard"
        # A separate stream for the hard mode's choices, so the easy mode's traffic stays byte-identical.
        self.hard_rng = random.Random(f"hard|{seed}")
        self.start_ms = start_ms
        self.warmup_ms = int(warmup * 1000)
        self.delivered: set[tuple[str, str]] = set()
        self.end_ms = start_ms + int(duration * 1000)
        self.counties = counties
        # Run tag: 4 digits from seed and start, so two runs on one day never share an id.
        self.tag = f"{random.Random(f'{seed}|{start_ms}').randrange(10000):04d}"
        self.day = datetime.fromtimestamp(start_ms / 1000, BEIJING).strftime("%Y%m%d")
        # Heartbeats per second per device: smoke sites hold 2.2 detectors on average (choice of 1,1,2,3,4).
        units = {t: (2.2 if t == "smoke" else 1.0) * share for t, share in DEVICE_MIX.items()}
        per_second_hb = sum(u / (HEARTBEAT_SECONDS[t] * heartbeat_scale)
                            for t, u in units.items()) / sum(units.values())
        # Enough devices that heartbeats are HEARTBEAT_SHARE of the rate; at least 60 so every type exists.
        n_devices = max(60, int(rate * HEARTBEAT_SHARE / per_second_hb))
        self.devices: list[Device] = build_devices(self.rng, counties, n_devices, heartbeat_scale)
        self.by_type: dict[str, list[int]] = {}
        for i, d in enumerate(self.devices):
            self.by_type.setdefault(d.device_type, []).append(i)
        self.by_site: dict[str, list[int]] = {}
        for i, d in enumerate(self.devices):
            self.by_site.setdefault(d.site, []).append(i)
        self.busy_devices: set[int] = set()
        # ~1 % of devices go silent at a random moment (battery dead, network lost).
        self.silent_from: dict[int, int] = {
            i: start_ms + int(self.rng.uniform(0.2, 0.8) * duration * 1000)
            for i in range(len(self.devices)) if self.rng.random() < 0.01}
        self.incident_rate = rate * (1 - HEARTBEAT_SHARE) / MEAN_RECORDS_PER_SCENARIO  # per second
        self.heap: list[_Item] = []
        self.seq = 0
        self.incident_no = 0
        self.scenarios = 0
        self.event_no = 0
        self.order_no = 0
        for i, d in enumerate(self.devices):
            # First heartbeat somewhere in the first interval: devices are not synchronised.
            self._push_hb(i, start_ms + int(self.rng.uniform(0, d.heartbeat_seconds) * 1000))

    # --- scheduling --------------------------------------------------------------
    def _push(self, record: SimRecord) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (record.at_ms, self.seq, record))

    def _push_hb(self, device: int, at_ms: int) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at_ms - at_ms % 1000, self.seq, device))

    def _new_incident(self) -> str:
        self.incident_no += 1
        return f"inc-{self.incident_no:06d}"

    def run(self) -> Iterator[SimRecord]:
        # Incidents start ``warmup`` before the window, so the window opens on steady traffic
        # (reports of incidents already under way) instead of an empty world.
        t = self.start_ms - self.warmup_ms + int(self.rng.expovariate(self.incident_rate) * 1000)
        while True:
            horizon = min(t, self.end_ms)
            while self.heap and self.heap[0][0] <= horizon:
                at_ms, _, payload = heapq.heappop(self.heap)
                if at_ms >= self.end_ms or at_ms < self.start_ms:
                    continue
                if isinstance(payload, SimRecord):
                    yield self._first_delivery(payload)
                else:
                    # The beat is due now; it is delivered a moment later, through the heap like the rest.
                    hb = self._heartbeat(payload, at_ms)
                    if hb is not None:
                        self._push(hb)
            if t >= self.end_ms:
                return
            self._scenario(t)
            t += max(1, int(self.rng.expovariate(self.incident_rate) * 1000))

    def _first_delivery(self, rec: SimRecord) -> SimRecord:
        """An update or redelivery whose original fell before the window is, for the hub, the first one."""
        if rec.kind == "heartbeat":
            return rec
        ref = (rec.source, rec.source_ref)
        if ref in self.delivered:
            return rec
        self.delivered.add(ref)
        if rec.origin_kind is not None:
            return dataclasses.replace(rec, kind=rec.origin_kind, origin_kind=None)
        return rec

    # --- scenarios ---------------------------------------------------------------
    def _scenario(self, t0: int) -> None:
        self.scenarios += 1
        name = self.rng.choices(list(SCENARIOS), list(SCENARIOS.values()))[0]
        if name in ("consultation", "maintenance") and t0 < self.start_ms - 10 * MINUTE:
            return  # warm-up: all of its records (redeliveries included) are delivered within 10 minutes
        if name == "human":
            cat = CATEGORIES[self.rng.choices(list(HUMAN_CATEGORY_WEIGHTS), list(HUMAN_CATEGORY_WEIGHTS.values()))[0]]
            self._human(t0, cat, make_place(self.rng, self.counties), self._new_incident())
        elif name == "fire":
            self._fire(t0)
        elif name == "sensor":
            self._sensor_incident(t0)
        elif name == "hard_negative_far":
            cat = CATEGORIES[self.rng.choice(("street_vending", "noise", "garbage", "road_damage", "sewage"))]
            a = make_place(self.rng, self.counties)
            b = self._place_far_from(a)
            self._human(t0, cat, a, self._new_incident(), force_hotline=True)
            self._human(t0 + self.rng.randint(0, 2 * MINUTE), cat, b, self._new_incident(), force_hotline=True)
        elif name == "hard_negative_same_place":
            a_key, b_key = self.rng.sample(("noise", "cooking_fume", "garbage", "street_vending", "food_safety",
                                            "sewage"), 2)
            place = make_place(self.rng, self.counties)
            self._human(t0, CATEGORIES[a_key], place, self._new_incident(), force_hotline=True)
            self._human(t0 + self.rng.randint(0, 5 * MINUTE), CATEGORIES[b_key], place, self._new_incident(),
                        force_hotline=True)
        elif name == "consultation":
            self._consultation(t0)
        else:
            self._maintenance(t0)

    def _place_far_from(self, a: Place) -> Place:
        """Another place in the same county at least 500 m from ``a`` (the hard negative's distance)."""
        for _ in range(50):
            b = make_place(self.rng, self.counties, county=a.county)
            if haversine_m(lng1=a.lng, lat1=a.lat, lng2=b.lng, lat2=b.lat) >= 500:
                return b
        lng, lat = a.near(self.rng, 600, 900)
        return Place(a.county, a.town, a.village, self.rng.choice(a.town.roads), self.rng.randint(1, 400),
                     self.rng.choice(a.town.estates), a.building, self.rng.choice(a.town.landmarks),
                     round(lng, 6), round(lat, 6))

    def _human(self, t0: int, cat: Category, place: Place, incident: str, *, force_hotline: bool = False) -> None:
        r = self.rng.random()
        fp = not force_hotline and r < 0.7 or force_hotline and r < 0.35
        hotline = force_hotline or r >= 0.35
        orders: list[str] = []
        if hotline:
            n_calls = min(len(cat.caller_texts), self.rng.choices((1, 2, 3), (0.7, 0.2, 0.1))[0])
            for template in self.rng.sample(cat.caller_texts, n_calls):  # each caller in their own words
                orders.append(self._hotline_call(t0 + self.rng.randint(0, 20 * MINUTE), cat, place, incident,
                                                 template))
        if fp:
            self._fp_event(t0 + self.rng.randint(0, 15 * MINUTE), cat, place, incident)
        if orders and self.rng.random() < 0.2:
            # The hotline transfers the order to the township platform: a second door for one incident.
            self._fp_event(t0 + self.rng.randint(10 * MINUTE, 40 * MINUTE), cat, place, incident,
                           event_source="12345转办", ref=orders[0])

    def _fire(self, t0: int) -> None:
        idx = self._free_device("smoke")
        if idx is None:
            return
        device = self.devices[idx]
        incident = self._new_incident()
        site = [i for i in self.by_site[device.site] if i not in self.busy_devices] or [idx]
        for i in site:
            self.busy_devices.add(i)
            self._alarm_storm(t0 + self.rng.randint(0, 90 * SECOND), i, incident,
                              storm=self.rng.randint(3, 8), recover_after=self.rng.randint(6, 20) * MINUTE)
        cat = CATEGORIES["fire"]
        if self.rng.random() < 0.8:
            self._fp_event(t0 + self.rng.randint(1 * MINUTE, 6 * MINUTE), cat, device.place, incident,
                           event_source="网格员上报")
        for template in self.rng.sample(cat.caller_texts, self.rng.randint(2, 4)):  # each caller in their own words
            self._hotline_call(t0 + self.rng.randint(30 * SECOND, 8 * MINUTE), cat, device.place, incident, template)

    def _sensor_incident(self, t0: int) -> None:
        dtype = self.rng.choices(("gas", "electric", "water_level", "manhole"), (3, 4, 2, 3))[0]
        idx = self._free_device(dtype)
        if idx is None:
            return
        self.busy_devices.add(idx)
        incident = self._new_incident()
        self._alarm_storm(t0, idx, incident, storm=self.rng.randint(1, 6),
                          recover_after=self.rng.randint(3, 30) * MINUTE if self.rng.random() < 0.8 else None)
        if self.rng.random() < 0.4:
            cat = CATEGORIES[SENSOR_CATEGORY[dtype]]
            self._hotline_call(t0 + self.rng.randint(1 * MINUTE, 10 * MINUTE), cat, self.devices[idx].place, incident)

    def _free_device(self, dtype: str) -> int | None:
        """A device not already in an incident of this run, so each device's alarms belong to one incident."""
        pool = self.by_type.get(dtype, [])
        for _ in range(20):
            if not pool:
                return None
            i = self.rng.choice(pool)
            if i not in self.busy_devices:
                return i
        return None

    # --- sensors -------------------------------------------------------------------
    def _sensor_doc(self, device: Device, event_type: str, ms: int, reading: float | None) -> dict[str, Any]:
        _, threshold, unit, _ = READINGS[device.device_type]
        doc: dict[str, Any] = {"deviceId": device.device_id, "deviceType": device.device_type,
                               "eventType": event_type, "eventTime": iso_text(ms)}
        if reading is not None:
            doc.update(value=round(reading, 2), threshold=threshold, unit=unit)
        # About half of the platforms send the installed position; the rest rely on the registry.
        if self.rng.random() < 0.5:
            doc.update(lng=device.lng, lat=device.lat, streetCode=device.street_code, address=device.address)
        return doc

    def _heartbeat(self, i: int, at_ms: int) -> SimRecord | None:
        device = self.devices[i]
        silent = self.silent_from.get(i)
        if silent is not None and at_ms >= silent:
            return None  # this device went offline: no more heartbeats
        # Next beat at the expected interval, a few seconds of jitter (network, wake-up drift).
        self._push_hb(i, at_ms + device.heartbeat_seconds * 1000 + self.rng.randint(-3, 3) * 1000)
        normal = READINGS[device.device_type][0]
        doc = self._sensor_doc(device, "heartbeat", at_ms, normal * self.rng.uniform(0.8, 1.2))
        doc["battery"] = self.rng.randint(20, 100)  # an extra field some platforms send
        return SimRecord(at_ms + self.rng.randint(0, 2000), "sensors", device.device_id, doc, None, "heartbeat")

    def _sensor_record(self, i: int, event_type: str, ms: int, reading: float | None, incident: str | None,
                       kind: str) -> None:
        device = self.devices[i]
        # Non-heartbeat events carry a non-zero millisecond part; heartbeats are on whole seconds,
        # so deviceId@eventTime never collides between the two.
        ms = (ms // 1000 + 1) * 1000 + self.rng.randint(1, 999)  # never earlier than asked: keeps delivery order
        doc = self._sensor_doc(device, event_type, ms, reading)
        rec = SimRecord(ms + self.rng.randint(50, 3000), "sensors", device.device_id, doc, incident, kind)
        self._push(rec)
        self._maybe_redeliver(rec)

    def _alarm_storm(self, t0: int, i: int, incident: str, *, storm: int, recover_after: int | None) -> None:
        _, threshold, _, top = READINGS[self.devices[i].device_type]
        t = t0
        for _ in range(storm):
            self._sensor_record(i, "alarm", t, self.rng.uniform(threshold * 1.1, top), incident, "report")
            t += self.rng.randint(20, 90) * SECOND  # devices repeat the alarm every 20-90 s while it lasts
        if recover_after is not None:
            self._sensor_record(i, "recover", max(t, t0 + recover_after), READINGS[self.devices[i].device_type][0],
                                incident, "recover")

    def _maintenance(self, t0: int) -> None:
        i = self.rng.randrange(len(self.devices))
        event = self.rng.choices(("fault", "low_battery", "selftest"), (3, 4, 3))[0]
        reading = None if event != "low_battery" else float(self.rng.randint(1, 15))
        self._sensor_record(i, event, t0, reading, None, "maintenance")
        if event == "selftest":
            # A self-test usually comes with a test alarm report; still maintenance, not an incident.
            self._sensor_record(i, "selftest", t0 + 30 * SECOND, None, None, "maintenance")

    # --- four platforms ------------------------------------------------------------
    def _fill(self, template: str, place: Place, vague: str) -> str:
        rng = self.rng
        return template.format(
            place=self._grid_place(place), vague=vague, n=rng.randint(2, 6), m=rng.randint(2, 30),
            shop=rng.choice(SHOPS), when=rng.choice(WHEN), hour=rng.choice((22, 23, 0, 1)), floor=rng.randint(2, 18),
            cause=rng.choice(CAUSES), county=place.county.name, town=place.town.name, landmark=place.landmark)

    def _grid_place(self, place: Place) -> str:
        return self.rng.choice((
            f"{place.village.name}{place.road}{place.number}号",
            f"{place.road}{place.number}号{place.estate}",
            f"{place.village.name}{place.estate}{place.building}幢",
            f"{place.road}{place.landmark}东侧",
        ))

    def _vague_place(self, place: Place) -> str:
        """How a caller describes the place: a landmark, a road, sometimes a number, rarely precise."""
        return self.rng.choice((
            f"{place.county.name}{place.road}{place.landmark}附近",
            f"{place.road}{place.landmark}旁边",
            f"{place.town.name}{place.estate}",
            f"{place.road}{place.number}号附近",
            f"{place.landmark}对面",
            f"{place.estate}小区门口",
            f"{place.county.name}{place.town.name}{place.road}",
        ))

    def _fp_event(self, t: int, cat: Category, place: Place, incident: str, *, event_source: str | None = None,
                  ref: str | None = None) -> None:
        rng = self.rng
        self.event_no += 1
        event_id = f"SJ{place.town.code}{self.day}{self.tag}{self.event_no:05d}"
        # ~30 % of townships still run a pre-2021 deployment with the old platform names.
        old = int(place.town.code) % 10 < 3
        platform = cat.platform[1 if old else 0]
        source = event_source or rng.choices(("网格员上报", "群众上报", "巡查发现", "部门流转"), (6, 2, 2, 0.5))[0]
        text = self._fill(rng.choice(cat.grid_texts), place, self._vague_place(place))
        if ref:
            text = f"12345工单{ref}转办：{text}"
        occur = t - rng.randint(1, 30) * MINUTE if source != "网格员上报" else t - rng.randint(0, 10) * MINUTE
        fp_code, fp_name = (cat.fp_code, cat.fp_name) if not self.hard else hard_fp_category(self.hard_rng, cat.key)
        if self.hard:
            text = vary_vocabulary(self.hard_rng, cat.key, text)
        doc: dict[str, Any] = {
            "eventId": event_id, "platform": platform, "eventSource": source,
            "categoryCode": fp_code, "categoryName": fp_name, "title": rng.choice(cat.titles),
            "description": text, "occurTime": occur, "reportTime": t,
            "streetCode": place.town.code, "villageCode": place.village.code,
            "gridCode": f"{place.village.code}-{rng.randint(1, 12):02d}",
            "address": f"{place.full_address}{place.estate if rng.random() < 0.4 else ''}",
            "reporter": {"id": f"WG{place.village.code}{rng.randint(1, 9):02d}", "name": person_name(rng),
                         "phone": random_phone(rng)},
            "urgency": rng.choices(("一般", "紧急", "特急"), cat.urgency)[0],
            "attachments": [f"https://4pt.example.zj.gov.cn/att/{event_id}/{k}.jpg" for k in range(rng.randint(0, 3))],
            "status": "待受理",
        }
        if rng.random() < 0.85:  # the grid app's GPS fix, a few metres to ~30 m off
            lng, lat = place.near(rng, 0, 30)
            doc.update(lng=round(lng, 6), lat=round(lat, 6))
        if self.hard:
            harden_fp_event(self.hard_rng, doc, place)
        rec = SimRecord(t + rng.randint(0, 30) * SECOND, "four-platforms", event_id, doc, incident, "report")
        self._push(rec)
        self._maybe_redeliver(rec)
        if rng.random() < 0.3:  # the platform pushes the record again as it moves on
            later = rec.at_ms
            for status in ("处置中", "已办结")[: rng.randint(1, 2)]:
                later += rng.randint(5, 40) * MINUTE
                self._push(SimRecord(later, "four-platforms", event_id, {**doc, "status": status}, incident, "update",
                                     "report"))

    # --- 12345 ---------------------------------------------------------------------
    def _next_order(self) -> str:
        self.order_no += 1
        return f"{self.day}{self.tag}{self.order_no:06d}"

    def _hotline_call(self, t: int, cat: Category, place: Place, incident: str, template: str | None = None) -> str:
        rng = self.rng
        order_no = self._next_order()
        urgency = rng.choices(("一般", "紧急", "特急"), cat.urgency)[0]
        # Time limits: 特急 2 h, 紧急 24 h, 一般 5 days (typical 12345 办理时限).
        limit = {"特急": 2 * 60, "紧急": 24 * 60, "一般": 5 * 24 * 60}[urgency] * MINUTE
        vague = self._vague_place(place)
        hotline_name: str | None = cat.hotline_name
        content = self._fill(template or rng.choice(cat.caller_texts), place, vague)
        if self.hard:
            hotline_name = hard_hotline_path(self.hard_rng, cat.key)
            content = vary_vocabulary(self.hard_rng, cat.key, content)
        doc: dict[str, Any] = {
            "orderNo": order_no,
            "channel": rng.choices(("电话", "微信", "网站", "110联动", "上级派发"), (70, 15, 8, 5, 2))[0],
            "acceptTime": beijing_text(t), "caller": caller_name(rng), "phone": random_phone(rng),
            "appealType": rng.choices(("投诉", "求助", "举报", "其他"), (50, 30, 15, 5))[0],
            "categoryCode": cat.hotline_code, "categoryName": hotline_name, "title": rng.choice(cat.titles),
            "content": content,
            "address": vague if rng.random() < 0.7 else f"{place.county.city_name}{place.county.name}{vague}",
            "areaCode": place.county.code, "urgency": urgency, "deadline": beijing_text(t + limit),
            "status": rng.choice(("待派发", "已派发")),
        }
        if rng.random() < 0.6:
            doc["streetCode"] = place.town.code
        if rng.random() < 0.8:
            # The operator geocodes the caller's vague address: 10-80 m off, in GCJ-02.
            lng, lat = place.near(rng, 10, 80)
            glng, glat = wgs84_to_gcj02(lng, lat)
            doc.update(lng=round(glng, 6), lat=round(glat, 6))
        if self.hard:
            harden_hotline_order(self.hard_rng, doc, place)
        # Orders reach the hub once the operator has filled them in: 1-5 minutes after the call.
        rec = SimRecord(t + rng.randint(60, 300) * SECOND, "hotline-12345", order_no, doc, incident, "report")
        self._push(rec)
        self._maybe_redeliver(rec)
        if rng.random() < 0.4 and not self.closed_loop:  # in a closed loop, citizens review after 办结
            later, current = rec.at_ms, doc
            steps = ("办理中", "已办结", "已回访")[: rng.choices((1, 2, 3), (3, 3, 4))[0]]
            for status in steps:
                later += rng.randint(5, 60) * MINUTE
                current = {**current, "status": status}
                if status == "已回访":
                    current["satisfaction"] = rng.choices(("满意", "基本满意", "不满意"), (70, 20, 10))[0]
                self._push(SimRecord(later, "hotline-12345", order_no, current, incident, "update", "report"))
        return order_no

    def _consultation(self, t: int) -> None:
        rng = self.rng
        place = make_place(rng, self.counties)
        appeal, name, code, title, text = rng.choice(CONSULTATIONS)
        order_no = self._next_order()
        doc = {
            "orderNo": order_no, "channel": rng.choice(("电话", "电话", "微信", "网站")), "acceptTime": beijing_text(t),
            "caller": caller_name(rng), "phone": random_phone(rng), "appealType": appeal,
            "categoryCode": code, "categoryName": name, "title": title,
            "content": text.format(county=place.county.name, town=place.town.name, landmark=place.landmark,
                                   cause=rng.choice(CAUSES)),
            "areaCode": place.county.code, "urgency": "一般", "status": "已办结",
        }
        # A consultation is its own incident: it must never be joined to another report.
        rec = SimRecord(t + rng.randint(60, 300) * SECOND, "hotline-12345", order_no, doc, self._new_incident(),
                        "consultation")
        self._push(rec)
        self._maybe_redeliver(rec)

    def _maybe_redeliver(self, rec: SimRecord) -> None:
        """~5 % of documents arrive twice, byte-identical, seconds to minutes apart (retries of the pusher)."""
        if self.rng.random() < 0.05:
            kind = "redelivery"
            self._push(SimRecord(rec.at_ms + self.rng.randint(1, 300) * SECOND, rec.source, rec.key, rec.doc,
                                 rec.incident, kind, rec.kind))


#: Default warm-up (s): incidents begin this long before the window.  20 minutes covers the
#: bulk of an incident's reports (calls up to 20 min after it starts, delivered 1-5 min later).
DEFAULT_WARMUP = 1200.0
#: Scenarios a default warm-up may cost at most (~10 s of generation at ~6k scenarios/s, measured);
#: only high rates hit this cap, and they reach steady traffic quickly anyway.
MAX_WARMUP_SCENARIOS = 60_000


def default_warmup(rate: float, duration: float) -> float:
    """The warm-up :func:`generate` uses unless told: 20 min, shortened at high rates (never below
    the window itself), so a short high-rate run does not spend minutes generating the past."""
    incident_rate = rate * (1 - HEARTBEAT_SHARE) / MEAN_RECORDS_PER_SCENARIO
    return min(DEFAULT_WARMUP, max(duration, MAX_WARMUP_SCENARIOS / incident_rate))


def generate(seed: int, rate: float, duration: float, *, start_ms: int = DEFAULT_START_MS,
             counties: tuple[str, ...] | None = None, warmup: float | None = None, heartbeat_scale: float = 1.0,
             closed_loop: bool = False, realism: str = "easy") -> Iterator[SimRecord]:
    """Simulated traffic of all three sources, in delivery order.

    ``rate``: mean records per simulated second (all sources, heartbeats included);
    ``duration``: simulated seconds from ``start_ms``; ``warmup``: seconds of incidents
    started before ``start_ms`` whose later reports fall inside the window (only records
    delivered in ``[start_ms, start_ms + duration)`` are yielded; default
    :func:`default_warmup`).  The same arguments always yield the same records.

    ``heartbeat_scale`` multiplies every device's heartbeat interval (compressed-time runs use
    realistic hours-long intervals); ``closed_loop``: no 12345 status updates of its own, because
    the simulated citizens of :mod:`gridhub.simulate.loop` review cases after the hub's 办结;
    ``realism="hard"``: the honest mode of :mod:`gridhub.simulate.hard` (another deployment's
    codes, call-takers' own paths, vague addresses, varied words).
    """
    if warmup is None:
        warmup = default_warmup(rate, duration)
    if rate <= 0 or duration <= 0 or warmup < 0:
        raise ValueError("rate and duration must be positive, warmup not negative")
    world = load_world(tuple(counties) if counties else None)
    return _Sim(seed, rate, duration, start_ms, world, warmup, heartbeat_scale=heartbeat_scale,
                closed_loop=closed_loop, realism=realism).run()


def devices_for(seed: int, rate: float, duration: float, *, start_ms: int = DEFAULT_START_MS,
                counties: tuple[str, ...] | None = None, heartbeat_scale: float = 1.0) -> list[Device]:
    """The device fleet :func:`generate` uses for the same arguments (for the registry)."""
    world = load_world(tuple(counties) if counties else None)
    return _Sim(seed, rate, duration, start_ms, world, heartbeat_scale=heartbeat_scale).devices


def sample(n: int, *, seed: int, end_ms: int, rate: float = 20.0) -> tuple[list[SimRecord], dict[str, dict[str, Any]]]:
    """The first ``n`` records of simulated traffic whose window ends at ``end_ms``, and the device
    registry (deviceId -> CONTRACTS 1.3 record) that locates its sensors.

    For the tests and benchmarks that need realistic single documents (``gridhub bench normalize``,
    the ingest worker's tests), so that one generator writes every document the hub is tested on.
    ``rate`` (records per simulated second, heartbeats included) sets the window: 20/s, the
    simulator's default, mixes the three sources as a day does.
    """
    duration = max(60.0, 2.0 * n / rate)  # twice what n records need: the warm-up starts quiet
    start_ms = end_ms - int(duration * 1000)
    records = list(itertools.islice(generate(seed, rate, duration, start_ms=start_ms), n))
    registry = {d.device_id: d.registry_row() for d in devices_for(seed, rate, duration, start_ms=start_ms)}
    return records, registry


def count_by_kind(records: Iterator[SimRecord]) -> dict[str, int]:
    """How many records of each kind (for summaries and tests)."""
    out: dict[str, int] = {}
    for r in records:
        out[r.kind] = out.get(r.kind, 0) + 1
    return out

