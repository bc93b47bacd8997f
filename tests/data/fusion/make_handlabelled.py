"""Writes handlabelled.records.jsonl / handlabelled.labels.jsonl: fusion's hand-labelled set.

Every scenario below is written by hand (texts, places, times, which incident each record
belongs to); this script only serialises them into the source formats of CONTRACTS.md section 1
and converts the 12345 coordinates to GCJ-02, as the hotline's map would.  Re-run it after
editing a scenario:  .venv/bin/python tests/data/fusion/make_handlabelled.py

Places are real: 湖州市吴兴区 (330502) 月河街道 / 爱山街道 / 康山街道, 杭州市西湖区 (330106) 翠苑街道.
Coordinates are a local grid around each anchor (metres east / north).

The hard cases (each named in its scenario's comment): near-but-distinct incidents of one
category; one address with two different problems; the same place a day later after the
first incident was resolved (a ``lifecycle`` record); vague 12345 addresses without
coordinates; alarm storms (several detectors, repeats, recoveries, maintenance noise, an orphan
recover); GCJ-02 coordinates; consultations; redelivery and status updates; out-of-order
delivery.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gridhub.core.reference.geo import wgs84_to_gcj02

HERE = Path(__file__).resolve().parent
BEIJING = timezone(timedelta(hours=8))
T0 = 1750035600000  # 2025-06-16 09:00 Beijing
MIN = 60_000
HOUR = 60 * MIN

# Anchors (WGS-84): 红旗路 in 月河街道, 衣裳街 in 爱山街道, 凤凰路 in 康山街道 (湖州); 文三路 in 翠苑街道 (杭州)
ANCHORS = {
    "hongqi": (120.0933, 30.8703, "330502", "330502001", "330502001016"),
    "yishang": (120.0862, 30.8669, "330502", "330502003", None),
    "fenghuang": (120.1105, 30.8818, "330502", "330502007", None),
    "wensan": (120.1356, 30.2779, "330106", "330106005", "330106005055"),
}

records: list[dict[str, Any]] = []
labels: list[dict[str, Any]] = []
_seq = {"fp": 0, "h": 0}


def at(anchor: str, east: float = 0.0, north: float = 0.0) -> tuple[float, float]:
    lng0, lat0, *_ = ANCHORS[anchor]
    return (round(lng0 + east / (111_320 * math.cos(math.radians(lat0))), 6), round(lat0 + north / 111_320, 6))


def bj(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, BEIJING).isoformat(timespec="milliseconds")


def emit(source: str, doc: dict[str, Any], incident: str | None, ref: str, *, label: bool = True) -> None:
    records.append({"source": source, "doc": doc})
    if label:
        labels.append({"source": source, "source_ref": ref, "incident": incident})


def fp(incident: str, anchor: str, t: int, code: str, name: str, text: str, address: str, *,
       pos: tuple[float, float] | None = (0.0, 0.0), platform: str = "监管执法", event_id: str | None = None,
       status: str = "待受理", occur: int | None = None, label: bool = True) -> dict[str, Any]:
    if event_id is None:
        _seq["fp"] += 1
        event_id = f"SJ{ANCHORS[anchor][3]}20250616{_seq['fp']:05d}"
    doc: dict[str, Any] = {
        "eventId": event_id, "platform": platform, "eventSource": "网格员上报", "categoryCode": code,
        "categoryName": name, "title": name, "description": text, "occurTime": occur if occur else t - 5 * MIN,
        "reportTime": t, "streetCode": ANCHORS[anchor][3], "address": address,
        "reporter": {"id": "WG001", "name": "王建国", "phone": "13905721234"}, "urgency": "一般", "status": status,
    }
    if ANCHORS[anchor][4]:
        doc["villageCode"] = ANCHORS[anchor][4]
    if pos is not None:
        doc["lng"], doc["lat"] = at(anchor, *pos)
    emit("four-platforms", doc, incident, event_id, label=label)
    return doc


def hotline(incident: str | None, anchor: str, t: int, path: str, text: str, address: str | None, *,
            pos: tuple[float, float] | None = (0.0, 0.0), street: bool = True, appeal: str = "投诉",
            status: str = "已派发", order_no: str | None = None, label: bool = True) -> dict[str, Any]:
    if order_no is None:
        _seq["h"] += 1
        order_no = f"2025061690{_seq['h']:06d}"
    doc: dict[str, Any] = {
        "orderNo": order_no, "channel": "电话", "acceptTime": bj(t), "caller": "李女士", "phone": "13812345678",
        "appealType": appeal, "categoryName": path, "title": path.split("/")[-1], "content": text,
        "areaCode": ANCHORS[anchor][2], "urgency": "一般", "status": status,
    }
    if address:
        doc["address"] = address
    if street:
        doc["streetCode"] = ANCHORS[anchor][3]
    if pos is not None:
        glng, glat = wgs84_to_gcj02(*at(anchor, *pos))  # the hotline's map geocodes in GCJ-02
        doc["lng"], doc["lat"] = round(glng, 6), round(glat, 6)
    emit("hotline-12345", doc, incident, order_no, label=label)
    return doc


def sensor(incident: str | None, device: str, dtype: str, event: str, t: int, anchor: str, *,
           pos: tuple[float, float] | None = (0.0, 0.0), address: str | None = None,
           value: float | None = None) -> None:
    doc: dict[str, Any] = {"deviceId": device, "deviceType": dtype, "eventType": event, "eventTime": iso(t)}
    if value is not None:
        doc["value"] = value
    if pos is not None:
        doc["lng"], doc["lat"] = at(anchor, *pos)
        doc["streetCode"] = ANCHORS[anchor][3]
        if address:
            doc["address"] = address
    emit("sensors", doc, incident, f"{device}@{doc['eventTime']}")


def registry(device: str, dtype: str, anchor: str, pos: tuple[float, float], address: str) -> None:
    lng, lat = at(anchor, *pos)
    records.append({"source": "registry", "doc": {
        "deviceId": device, "deviceType": dtype, "streetCode": ANCHORS[anchor][3], "address": address,
        "lng": lng, "lat": lat, "owner": "物业公司", "ownerPhone": "05722345678", "heartbeatSeconds": 3600}})


def lifecycle(source: str, ref: str, event: str, t: int) -> None:
    records.append({"source": "lifecycle", "doc": {"source": source, "source_ref": ref, "event": event, "at": t}})


VENDING = ("0302", "占道经营")
NOISE = ("0305", "噪声扰民")
GARBAGE = ("0303", "垃圾乱堆")
FIRE = ("0402", "消防隐患")
GAS = ("0404", "燃气安全")
MANHOLE = ("0602", "井盖")


def build() -> None:
    # A: fruit stall on 红旗路88号: grid report, two calls (one GCJ-02 geocoded 40 m off, one
    # without coordinates and a full-width address), a status update and an exact redelivery.
    a = fp("A", "hongqi", T0, *VENDING, "红旗路88号门口有流动摊贩摆摊卖水果，占用人行道，行人绕行。", "湖州市吴兴区月河街道红旗路88号")
    h = hotline("A", "hongqi", T0 + 15 * MIN, "市容环卫/占道经营", "市民来电反映红旗路88号附近有人摆摊卖水果，把人行道占了，希望管一管。",
                "红旗路88号附近", pos=(30, 25))
    hotline("A", "hongqi", T0 + 25 * MIN, "市容环卫/占道经营", "来电称红旗路８８号门口水果摊占道经营，推婴儿车过不去。",
            "浙江省湖州市吴兴区红旗路８８号", pos=None)
    fp("A", "hongqi", T0 + 70 * MIN, *VENDING, a["description"], a["address"], event_id=a["eventId"], status="处置中",
       label=False)  # a later version of the same record
    records.append({"source": "hotline-12345", "doc": dict(h)})  # an exact redelivery

    # B (hard negative: same category, 150 m away, 20 minutes later, different stall and number).
    fp("B", "hongqi", T0 + 20 * MIN, *VENDING, "红旗路160号烧烤摊晚上占道经营，桌椅摆到人行道上。", "湖州市吴兴区月河街道红旗路160号",
       pos=(0, 150))
    hotline("B", "hongqi", T0 + 40 * MIN, "市容环卫/占道经营", "反映红旗路160号的烧烤摊把桌子摆到人行道上，油烟还很大。",
            "红旗路160号", pos=(-20, 170))

    # C (hard negative: one address, another problem): KTV noise at 红旗路88号, same hour as A.
    fp("C", "hongqi", T0 + 30 * MIN, *NOISE, "红旗路88号二楼KTV深夜音响声音过大，噪声扰民。", "湖州市吴兴区月河街道红旗路88号")
    hotline("C", "hongqi", T0 + 50 * MIN, "环境保护/噪声污染", "来电反映红旗路88号楼上KTV每天半夜唱歌，吵得睡不着。",
            "红旗路88号", pos=(10, -10))
    hotline("C", "hongqi", T0 + 55 * MIN, "环境保护/噪声污染", "投诉红旗路那家KTV太吵了，凌晨还在唱。", "红旗路88号楼上",
            pos=None)

    # D / E (hard negative: one address, two problems, humans only): garbage and cooking fumes at 衣裳街12号.
    fp("D", "yishang", T0 + 10 * MIN, *GARBAGE, "衣裳街12号门口生活垃圾堆积未及时清运，有异味。", "湖州市吴兴区爱山街道衣裳街12号")
    hotline("D", "yishang", T0 + 35 * MIN, "市容环卫/垃圾清运", "反映衣裳街12号门口垃圾好几天没人清运，臭气熏天。", "衣裳街12号",
            pos=(15, 10))
    hotline("E", "yishang", T0 + 40 * MIN, "环境保护/油烟", "反映衣裳街12号的饭店油烟直排，呛得人咳嗽。", "衣裳街12号",
            pos=(15, 10))
    fp("E", "yishang", T0 + 60 * MIN, "0502", "大气污染", "衣裳街12号餐馆油烟直排，未安装油烟净化设施。", "湖州市吴兴区爱山街道衣裳街12号")

    # F then G (hard case: the same place a day later after F was resolved): stall at 衣裳街30号.
    f1 = fp("F", "yishang", T0 + 2 * HOUR, *VENDING, "衣裳街30号门口有小贩占道卖早点。", "湖州市吴兴区爱山街道衣裳街30号", pos=(0, 80))
    hotline("F", "yishang", T0 + 2 * HOUR + 20 * MIN, "市容环卫/占道经营", "衣裳街30号早点摊占道，请处理。", "衣裳街30号",
            pos=(10, 90))
    lifecycle("four-platforms", f1["eventId"], "resolved", T0 + 5 * HOUR)
    fp("G", "yishang", T0 + 26 * HOUR, *VENDING, "衣裳街30号门口小贩又在占道卖早点。", "湖州市吴兴区爱山街道衣裳街30号", pos=(0, 80))
    hotline("G", "yishang", T0 + 26 * HOUR + 30 * MIN, "市容环卫/占道经营", "衣裳街30号早点摊又出来了，占道经营。", "衣裳街30号",
            pos=None)

    # H: fire in 翠苑小区3幢 (西湖区): a smoke-alarm storm of three detectors (one located only
    # by the registry), repeats, recoveries, a grid report and calls with vague addresses.
    registry("SMK-300", "smoke", "wensan", (5, 5), "杭州市西湖区翠苑街道文三路200号翠苑小区3幢")
    for i, dev in enumerate(("SMK-301", "SMK-302", "SMK-300")):
        for k in range(4 if dev != "SMK-300" else 3):
            sensor("H", dev, "smoke", "alarm", T0 + 3 * HOUR + (i * 40 + k * 50) * 1000, "wensan",
                   pos=(3 * i, 4) if dev != "SMK-300" else None, address="文三路200号翠苑小区3幢", value=6.5)
    hotline("H", "wensan", T0 + 3 * HOUR + 2 * MIN, "应急管理/消防安全", "翠苑小区有栋楼冒黑烟，好像着火了，赶紧派人！", "翠苑小区门口",
            pos=None, street=True)
    hotline("H", "wensan", T0 + 3 * HOUR + 4 * MIN, "应急管理/消防安全", "文三路这边小区3幢窗户冒烟，有烧焦味。", "文三路200号附近",
            pos=(60, -30))
    fp("H", "wensan", T0 + 3 * HOUR + 6 * MIN, *FIRE, "翠苑小区3幢4楼住户家中起火，网格员正协助疏散。", "杭州市西湖区翠苑街道文三路200号翠苑小区",
       platform="应急管理")
    for dev in ("SMK-301", "SMK-302", "SMK-300"):
        sensor("H", dev, "smoke", "recover", T0 + 3 * HOUR + 25 * MIN, "wensan",
               pos=(0, 4) if dev != "SMK-300" else None, address="文三路200号翠苑小区3幢", value=0.2)
    # maintenance and liveness noise: never a case
    sensor(None, "SMK-301", "smoke", "low_battery", T0 + 3 * HOUR + 40 * MIN, "wensan", pos=(0, 4), value=8)
    sensor(None, "SMK-302", "smoke", "heartbeat", T0 + 3 * HOUR + 41 * MIN, "wensan", pos=(3, 4))
    sensor(None, "SMK-309", "smoke", "recover", T0 + 3 * HOUR + 42 * MIN, "wensan", pos=(400, 0),
           address="文三路300号")  # an orphan recover: no alarm before it

    # I (hard negative: another detector 450 m away alarms during the fire; a kitchen, not the fire).
    for k in range(3):
        sensor("I", "SMK-410", "smoke", "alarm", T0 + 3 * HOUR + 5 * MIN + k * 60_000, "wensan", pos=(450, 0),
               address="文三路398号", value=4.1)
    sensor("I", "SMK-410", "smoke", "recover", T0 + 3 * HOUR + 12 * MIN, "wensan", pos=(450, 0),
           address="文三路398号")

    # J: gas leak at 凤凰路12号: a gas sensor, a grid report and a call geocoded in GCJ-02 35 m off
    # (uncorrected, GCJ-02 is ~500 m from WGS-84 here: beyond any gas radius).
    for k in range(3):
        sensor("J", "GAS-501", "gas", "alarm", T0 + 4 * HOUR + k * 45_000, "fenghuang", address="凤凰路12号", value=35)
    fp("J", "fenghuang", T0 + 4 * HOUR + 8 * MIN, *GAS, "凤凰路12号早餐店后厨燃气泄漏，已关闭总阀并疏散。", "湖州市吴兴区康山街道凤凰路12号",
       platform="应急管理")
    hotline("J", "fenghuang", T0 + 4 * HOUR + 5 * MIN, "城乡建设/燃气", "凤凰路上早餐店一股很重的煤气味，怕爆炸。", "凤凰路早餐店",
            pos=(25, 25))
    sensor("J", "GAS-501", "gas", "recover", T0 + 4 * HOUR + 30 * MIN, "fenghuang", address="凤凰路12号", value=0)

    # K (hard case: the same device alarms again 6 h after it recovered: a new incident).
    for k in range(2):
        sensor("K", "GAS-501", "gas", "alarm", T0 + 10 * HOUR + k * 60_000, "fenghuang", address="凤凰路12号",
               value=28)

    # L / M: manholes on 凤凰路: a tilt sensor and a call 50 m away (one incident); a second,
    # broken cover 350 m further along the road, phoned in without coordinates but with its number.
    sensor("L", "MH-601", "manhole", "alarm", T0 + 5 * HOUR, "fenghuang", pos=(0, 300), address="凤凰路200号", value=30)
    hotline("L", "fenghuang", T0 + 5 * HOUR + 10 * MIN, "城乡建设/市政设施", "凤凰路200号附近马路中间井盖翘起来了，车压上去哐哐响。",
            "凤凰路200号附近", pos=(30, 340))
    fp("L", "fenghuang", T0 + 5 * HOUR + 30 * MIN, *MANHOLE, "凤凰路200号井盖移位，已设置围挡。", "湖州市吴兴区康山街道凤凰路200号",
       pos=(5, 305), platform="公共服务")
    hotline("M", "fenghuang", T0 + 5 * HOUR + 20 * MIN, "城乡建设/市政设施", "凤凰路560号门口井盖碎了，怕有人掉下去。", "凤凰路560号",
            pos=None)
    fp("M", "fenghuang", T0 + 6 * HOUR, *MANHOLE, "凤凰路560号窨井盖破损，需更换。", "湖州市吴兴区康山街道凤凰路560号", pos=(0, 650),
       platform="公共服务")

    # N / O: vague 12345 calls without coordinates in 翠苑街道: N names the estate of a grid report,
    # O is a different estate in the same township with the same problem (hard negative).
    fp("N", "wensan", T0 + 7 * HOUR, *GARBAGE, "翠苑一区12幢楼下建筑垃圾堆放，影响通行。", "杭州市西湖区翠苑街道文三路翠苑一区12幢",
       pos=(-300, 200), platform="监管执法")
    hotline("N", "wensan", T0 + 7 * HOUR + 40 * MIN, "市容环卫/垃圾清运", "翠苑一区楼下有人倒建筑垃圾，堆了好几天。", "翠苑一区小区门口",
            pos=None)
    hotline("O", "wensan", T0 + 7 * HOUR + 50 * MIN, "市容环卫/垃圾清运", "学院路上的嘉绿苑楼下生活垃圾没人收，臭得很。", "嘉绿苑",
            pos=None)
    hotline("N", "wensan", T0 + 8 * HOUR, "市容环卫/垃圾清运", "西湖区文三路翠苑一区12幢下面建筑垃圾一大堆。", "文三路翠苑一区12幢",
            pos=None, street=False)

    # P / Q: unclassified ("其他") calls on 衣裳街: two about broken street lights (one incident),
    # one about a neighbour's dog 40 m away (another).
    hotline("P", "yishang", T0 + 8 * HOUR, "其他/其他", "衣裳街50号一带路灯坏了好几天，晚上黑漆漆的。", "衣裳街50号", pos=(0, 200))
    hotline("P", "yishang", T0 + 9 * HOUR, "其他/其他", "衣裳街50号附近路灯不亮，走夜路很不安全。", "衣裳街50号附近", pos=(20, 210))
    hotline("Q", "yishang", T0 + 9 * HOUR + 10 * MIN, "其他/其他", "邻居家养的大狗天天夜里叫，还不拴绳。", "衣裳街56号",
            pos=(0, 240))

    # R / S: consultations the hotline answered directly: each its own record, never fused.
    hotline("R", "hongqi", T0 + 9 * HOUR, "政策咨询/其他", "家长来电咨询月河街道学区划分和入学报名时间，已按政策答复。", None, pos=None,
            street=True, appeal="咨询", status="已办结")
    hotline("S", "hongqi", T0 + 9 * HOUR + 5 * MIN, "政策咨询/其他", "家长来电咨询月河街道学区划分和入学报名时间，已按政策答复。", None,
            pos=None, street=True, appeal="咨询", status="已办结")

    # T: out-of-order: a call about a blocked lane delivered before the grid report whose event
    # happened earlier; then the grid report's later status update.
    hotline("T", "fenghuang", T0 + 12 * HOUR + 30 * MIN, "市容环卫/占道经营", "凤凰路88号门口水果店把货架摆到路上，人过不去。",
            "凤凰路88号", pos=(0, 100))
    t1 = fp("T", "fenghuang", T0 + 12 * HOUR, *VENDING, "凤凰路88号水果店店外摆放货架，出店经营。", "湖州市吴兴区康山街道凤凰路88号",
            pos=(0, 95), occur=T0 + 11 * HOUR + 50 * MIN)
    fp("T", "fenghuang", T0 + 13 * HOUR, *VENDING, t1["description"], t1["address"], pos=(0, 95), event_id=t1["eventId"],
       status="已办结", label=False)

    # U / V: two fires on one evening 400 m apart in 月河街道 (hard negative for the fire radius):
    # each with a grid report and a call.
    fp("U", "hongqi", T0 + 11 * HOUR, *FIRE, "红旗路20号电动车棚起火，已扑灭，无人员伤亡。", "湖州市吴兴区月河街道红旗路20号",
       pos=(-100, -300), platform="应急管理")
    hotline("U", "hongqi", T0 + 11 * HOUR + 3 * MIN, "应急管理/消防安全", "红旗路20号车棚里电瓶车着火了！", "红旗路20号",
            pos=(-90, -280))
    fp("V", "hongqi", T0 + 11 * HOUR + 15 * MIN, *FIRE, "劳动路5号居民楼厨房起火冒烟，消防已到场。", "湖州市吴兴区月河街道劳动路5号",
       pos=(-100, 150), platform="应急管理")
    hotline("V", "hongqi", T0 + 11 * HOUR + 12 * MIN, "应急管理/消防安全", "劳动路5号楼里冒烟，好像厨房着火了。", "劳动路5号",
            pos=(-110, 160))

    # W: a noise complaint repeated by three callers over two hours (one incident), the last one
    # without coordinates and with only the road.
    for i, (text, addr, pos) in enumerate((
            ("凤凰路300号工地晚上11点还在打桩，吵得睡不着。", "凤凰路300号", (-40, 480)),
            ("投诉凤凰路300号工地夜间施工噪音太大。", "凤凰路300号附近", (-25, 470)),
            ("凤凰路那个工地半夜施工打桩，噪音扰民，要求制止。", "凤凰路", None))):
        hotline("W", "fenghuang", T0 + 14 * HOUR + i * 50 * MIN, "环境保护/噪声污染", text, addr, pos=pos)

    # X: a flooded underpass on 文三路: a water-level sensor storm and a grid report (the
    # flood category has a long radius: the report is 300 m off, at the underpass entrance).
    for k in range(4):
        sensor("X", "WL-701", "water_level", "alarm", T0 + 15 * HOUR + k * 90_000, "wensan", pos=(800, -200),
               address="文三路学院路口下穿通道", value=0.9)
    fp("X", "wensan", T0 + 15 * HOUR + 20 * MIN, "0403", "防汛防台", "文三路学院路口下穿通道积水约40厘米，车辆无法通行，已设置警示。",
       "杭州市西湖区翠苑街道文三路学院路口", pos=(650, 50), platform="应急管理")
    hotline("X", "wensan", T0 + 15 * HOUR + 12 * MIN, "水利水务/防汛", "文三路学院路口的下穿通道全是水，车子熄火了。",
            "文三路学院路口下穿通道", pos=None)
    hotline("B", "hongqi", T0 + 50 * MIN, "市容环卫/占道经营", "红旗路160号那家烧烤店把桌子摆在外面占道，人走不过去。",
            "红旗路160号烧烤店", pos=None)
    hotline("A", "hongqi", T0 + 45 * MIN, "市容环卫/占道经营", "红旗路上卖水果的小摊又摆出来了，就在88号门口。", "红旗路88号",
            pos=(-10, 5), street=False)

    # Y: an overheating switchboard: a 智慧用电 sensor and a call about the burning smell (related
    # categories electrical_fire ~ fire), in 翠苑一区 (coordinates only on the sensor).
    for k in range(2):
        sensor("Y", "ELC-801", "electric", "alarm", T0 + 16 * HOUR + k * 60_000, "wensan", pos=(-320, 220),
               address="文三路翠苑一区8幢配电间", value=450)
    hotline("Y", "wensan", T0 + 16 * HOUR + 6 * MIN, "应急管理/消防安全", "翠苑一区8幢配电间有烧焦味，电箱很烫，怕起火。",
            "翠苑一区8幢", pos=None)

    # Z: a neighbour dispute in 月河社区 reported by the grid worker and by one of the parties.
    fp("Z", "hongqi", T0 + 17 * HOUR, "0101", "矛盾纠纷", "红旗路120号两户居民因漏水问题发生争执，网格员已到场调解。",
       "湖州市吴兴区月河街道红旗路120号", pos=(40, 60), platform="综治工作")
    hotline("Z", "hongqi", T0 + 17 * HOUR + 30 * MIN, "社会管理/邻里纠纷",
            "楼上邻居家漏水到我家，沟通不了，吵起来了，红旗路120号。", "红旗路120号", pos=None)


def main() -> None:
    build()
    (HERE / "handlabelled.records.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    (HERE / "handlabelled.labels.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in labels), encoding="utf-8")
    print(f"{len(records)} records, {len(labels)} labelled, "
          f"{len({l['incident'] for l in labels if l['incident']})} incidents")


if __name__ == "__main__":
    main()
