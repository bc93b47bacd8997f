"""Canary scan (issue 16): personal data written in every format people use never leaves the raw topics.

Unique canary values -- mobiles in full-width digits, with dots, with runs of spaces, with
``+86`` / ``0086``; landlines with the area code in brackets or spaces; a 400 hotline; ID
numbers of 18 and 15 digits, with and without spaces; names after 联系人 / 业主 / 老板 / 户主 and
in the contact fields -- are seeded into every free-text and contact field of documents of all
three sources and of the device registry (and into documents ingest must reject).  The real
pipeline runs (``gridhub run``: ingest, fusion, routing, ClickHouse sink, ...); then every topic
of the namespace (changelogs included) except the raw inputs and ``dlq`` (which keep the
original bytes by design, docs/security.md), every ClickHouse table of the namespace database
(``dead_letters`` included) and the worker's whole log are searched for every canary: 0 hits.
"""

from __future__ import annotations

import json
import random
import re
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest

from gridhub.core.codec import codec
from gridhub.ops.common import read_to_end
from gridhub.core.settings import Settings
from gridhub.core.topics import DEVICE_EVENTS, DLQ, RAW, REGISTRY_DEVICES
from streams.ingest.normalize import Rejected, normalize
from helpers.documents import Documents

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SURNAMES = "岑闵滕骆裘濮虞邬竺"       # in the masker's surname list, rare in the test's other text
GIVEN = "翊骞昶珺湉玥竑琰璟晗煦濛砚璐"  # given-name characters no other text here uses
MOBILE_PREFIXES = ("139", "138", "150", "186", "177", "199")


@dataclass
class Canaries:
    """Everything seeded, and the needles that would betray each value if it leaked."""
    rng: random.Random
    digit_needles: set[str]     # searched in the text with separators between digits removed
    bounded_needles: set[str]   # the same, but only as a whole number (short subscriber numbers)
    name_needles: set[str]      # full names and their given names
    formats: dict[str, int]

    def _count(self, kind: str) -> None:
        self.formats[kind] = self.formats.get(kind, 0) + 1

    def digits(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789") for _ in range(n))

    def mobile(self, style: str) -> str:
        number = self.rng.choice(MOBILE_PREFIXES) + self.digits(8)
        self.digit_needles.add(number)
        self._count(f"mobile {style}")
        a, b, c = number[:3], number[3:7], number[7:]
        return {"plain": number, "full-width": unicodedata.normalize("NFKC", number).translate(
                    {ord(d): chr(ord(d) + 0xFEE0) for d in "0123456789"}),
                "dots": f"{a}.{b}.{c}", "spaces": f"{a}  {b}  {c}", "hyphens": f"{a}-{b}-{c}",
                "+86": f"+86 {a} {b} {c}", "0086": f"0086-{number}"}[style]

    def landline(self, style: str) -> str:
        subscriber = self.rng.choice("2345678") + self.digits(7)  # Hangzhou (0571): 8-digit numbers
        self.digit_needles.add("0571" + subscriber)
        self.bounded_needles.add(subscriber)
        self._count(f"landline {style}")
        return {"brackets": f"（0571）{subscriber}", "spaces": f"0571 {subscriber[:4]} {subscriber[4:]}",
                "hyphen": f"0571-{subscriber}"}[style]

    def hotline(self) -> str:
        number = "400" + self.rng.choice("6789") + self.digits(6)
        self.digit_needles.add(number)
        self._count("400 hotline")
        return f"{number[:3]}-{number[3:6]}-{number[6:]}"

    def id_number(self, style: str) -> str:
        birth = f"19{self.rng.randrange(50, 99)}{self.rng.randrange(1, 13):02d}{self.rng.randrange(1, 29):02d}"
        if style == "15":
            number = "330502" + birth[2:] + self.digits(3)
        else:
            number = "330502" + birth + self.digits(3) + self.rng.choice("0123456789X")
        self.digit_needles.add(number.replace("X", ""))
        self.digit_needles.add(number[6:].replace("X", ""))  # all the masked digits, and the tail
        self._count(f"ID {style}")
        return {"18": number, "18 spaced": f"{number[:6]} {number[6:10]} {number[10:14]} {number[14:]}",
                "15": number}[style]

    def name(self) -> str:
        given = "".join(self.rng.sample(GIVEN, 2))
        full = self.rng.choice(SURNAMES) + given
        self.name_needles.update({full, given})
        self._count("name")
        return full


def _prose(c: Canaries, pad: str) -> str:
    return (f"联系人：{c.name()}，手机{c.mobile('full-width')}，座机{c.landline('brackets')}，{pad}"
            f"业主{c.name()}反映，老板{c.name()}说另一个号码{c.mobile('dots')}，户主{c.name()}，"
            f"身份证{c.id_number('18 spaced')}，旧证{c.id_number('15')}，电话{c.mobile('spaces')}，"
            f"热线{c.hotline()}，{c.landline('spaces')}。")


def seeded_documents(c: Canaries, now_ms: int) -> tuple[list[tuple[str, bytes, dict[str, Any]]],
                                                        list[dict[str, Any]], list[tuple[str, bytes, dict[str, Any]]]]:
    """(good documents, registry rows, documents ingest rejects), every free field carrying canaries."""
    gen = Documents(now_ms, seed=c.rng.randrange(10**6))
    docs: list[tuple[str, bytes, dict[str, Any]]] = []
    for _ in range(3):
        d = gen.four_platforms()
        d.update(title=f"举报人{c.name()}反映{c.mobile('hyphens')}", description=_prose(c, "门口堆物，"),
                 address=f"{d.get('address', '')} 户主{c.name()} 电话{c.landline('hyphen')}",
                 status=f"待受理 {c.mobile('plain')}", eventSource=f"群众上报 {c.mobile('0086')}",
                 attachments=[f"https://img.example.org/{c.mobile('plain')}.jpg"],
                 reporter={"id": "W1", "name": c.name(), "phone": c.mobile("+86")})
        docs.append(("four-platforms", d["eventId"].encode(), d))
    for _ in range(3):
        d = gen.hotline()
        d.update(caller=c.name(), phone=c.mobile("0086"), title=f"投诉人{c.name()}：{c.mobile('dots')}",
                 content=_prose(c, "楼上噪声，"), address=f"{d.get('address', '')} 联系人{c.name()} {c.mobile('spaces')}",
                 channel=f"电话 {c.mobile('plain')}", appealType="投诉", status="已派发")
        docs.append(("hotline-12345", d["orderNo"].encode(), d))
    registry = []
    for n in range(2):
        device = dict(gen.registry[sorted(gen.registry)[n]])
        device.update(owner=c.name(), ownerPhone=c.mobile("plain"),
                      address=f"{device['address']} 业主{c.name()}家 电话{c.landline('brackets')}",
                      heartbeatSeconds=4)  # silent right after its events: reported offline within ~25 s
        registry.append(device)
    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, tz=timezone(timedelta(hours=8))).isoformat(timespec="seconds")

    for n, device in enumerate(registry):
        at = iso(now_ms - 30_000 + n * 1000)
        alarm = {"deviceId": device["deviceId"], "deviceType": device["deviceType"], "eventType": "alarm",
                 "eventTime": at, "value": 99.0, "threshold": 10.0, "unit": f"ppm 联系{c.mobile('plain')}",
                 "address": f"{device['address']} 老板{c.name()}"}
        fault = {"deviceId": device["deviceId"], "deviceType": device["deviceType"], "eventType": "fault",
                 "eventTime": iso(now_ms - 20_000 + n * 1000),
                 "unit": f"户主{c.name()} {c.mobile('+86')}"}
        docs += [("sensors", device["deviceId"].encode(), alarm), ("sensors", device["deviceId"].encode(), fault)]
    bad = []
    for source, make in (("four-platforms", gen.four_platforms), ("hotline-12345", gen.hotline)):
        d = make()
        d.update({"streetCode": "330599999", "areaCode": "339999"} if source == "hotline-12345"
                 else {"streetCode": "330599999"})
        d["description" if source == "four-platforms" else "content"] = _prose(c, "被退回，")
        bad.append((source, (d.get("eventId") or d.get("orderNo") or "x").encode(), d))
    return docs, registry, bad


def _collapse(text: str) -> str:
    """NFKC, then the separators people put between digits removed (so 139 1234 5678 is 13912345678)."""
    return re.sub(r"(?<=\d)[ \-.()+]+(?=\d)", "", unicodedata.normalize("NFKC", text))


def hits(c: Canaries, where: str, text: str) -> list[str]:
    if not text:
        return []
    collapsed = _collapse(text)
    found = [f"{where}: {n}" for n in c.digit_needles if n in collapsed]
    found += [f"{where}: {n}" for n in c.bounded_needles if re.search(rf"(?<!\d){n}(?!\d)", collapsed)]
    found += [f"{where}: {n}" for n in c.name_needles if n in text or n in collapsed]
    return found


def test_canaries_never_leave_the_raw_topics(settings: Settings, kafka_producer: Any, ch_client: Any,
                                            worker: Callable[..., Any]) -> None:
    from kafka import KafkaAdminClient

    c = Canaries(random.Random(), set(), set(), set(), {})
    now = int(time.time() * 1000)
    docs, registry, bad = seeded_documents(c, now)
    reg = {d["deviceId"]: d for d in registry}
    expected = set()
    for source, _, doc in docs:
        out = normalize(source, json.dumps(doc, ensure_ascii=False).encode(), registry=reg, received_at_ms=now,
                        pii_key=b"k")
        if out.report is not None:
            expected.add(out.report["report_id"])
    for source, _, doc in bad:
        with pytest.raises(Rejected):
            normalize(source, json.dumps(doc, ensure_ascii=False).encode(), registry=reg, received_at_ms=now)
    assert len(expected) == 8  # 3 platform events, 3 orders, 2 alarms (the faults are device events)

    for device in registry:
        kafka_producer.send(settings.topic(REGISTRY_DEVICES), key=device["deviceId"].encode(),
                            value=json.dumps(device, ensure_ascii=False).encode())
    kafka_producer.flush()
    w = worker(settings, only="ingest,fusion,routing,service")
    for source, key, doc in docs + bad:
        kafka_producer.send(settings.topic(RAW[source]), key=key, value=json.dumps(doc, ensure_ascii=False).encode())
    kafka_producer.flush()

    deadline = time.monotonic() + 240
    reports: set[str] = set()
    dead = offline = 0
    while time.monotonic() < deadline:
        try:
            reports = {r[0] for r in ch_client.execute(f"SELECT report_id FROM {settings.ch_database}.reports")}
            dead = ch_client.execute(f"SELECT uniqExact(dlq_offset, dlq_partition) FROM "
                                     f"{settings.ch_database}.dead_letters")[0][0]
        except Exception:  # the sink has not created its tables yet
            pass
        offline = sum(1 for r in read_to_end(settings, [settings.topic(DEVICE_EVENTS)])
                      if r.value and codec("DeviceEvent").decode(r.value)["event_type"] == "offline")
        if reports == expected and dead >= len(bad) and offline >= len(registry):
            break
        time.sleep(3)
    assert reports == expected and dead == len(bad) and offline >= len(registry), (reports, dead, offline)
    time.sleep(5)  # the last dispatches, case events and changelog writes
    w.stop()

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        topics = sorted(t for t in admin.list_topics() if t.startswith(settings.namespace + "."))
    finally:
        admin.close()
    inputs = {settings.topic(t) for t in (*RAW.values(), REGISTRY_DEVICES, DLQ)}
    scanned_topics = [t for t in topics if t not in inputs]
    assert any(t.endswith("-changelog") for t in scanned_topics), "the changelogs must be scanned too"
    leaks: list[str] = []
    records = 0
    for topic in scanned_topics:
        for rec in read_to_end(settings, [topic]):
            records += 1
            parts = [rec.key or b"", rec.value or b""] + [v or b"" for _, v in (rec.headers or [])]
            leaks += hits(c, topic, "\n".join(p.decode("utf-8", "replace") for p in parts))
    tables = [row[0] for row in ch_client.execute(f"SHOW TABLES FROM {settings.ch_database}")]
    assert {"reports", "cases", "case_events", "dispatches", "dead_letters"} <= set(tables)
    rows = 0
    for table in tables:
        content = ch_client.execute(f"SELECT * FROM {settings.ch_database}.`{table}`")
        rows += len(content)
        leaks += hits(c, f"clickhouse {table}", "\n".join(map(str, content)))
    log = w.log_text()
    leaks += hits(c, "worker log", log)
    needles = len(c.digit_needles) + len(c.bounded_needles) + len(c.name_needles)
    print(f"canary scan: {sum(c.formats.values())} canaries ({c.formats}), {needles} needles; "
          f"{len(scanned_topics)} topics / {records} records, {len(tables)} tables / {rows} rows, "
          f"{len(log)} log characters; hits: {len(leaks)}")
    # The scan can find: the raw topics hold every canary (a scan that found nothing there proves nothing).
    raw_hits = [h for t in RAW.values() for rec in read_to_end(settings, [settings.topic(t)])
                for h in hits(c, t, (rec.value or b"").decode("utf-8", "replace"))]
    assert len(raw_hits) >= len(c.digit_needles) // 2
    by_place: dict[str, list[str]] = {}
    for leak in leaks:
        place, _, needle = leak.rpartition(": ")
        by_place.setdefault(place, []).append(needle)
    assert leaks == [], f"{len(leaks)} canary hits: {by_place}"
