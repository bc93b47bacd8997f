"""No phone number or caller name leaves the raw topics in clear (CONTRACTS.md 2, DESIGN.md).

A simulated run goes through the whole pipeline (ingest, fusion, routing and the
ClickHouse sink in one ``gridhub run``); then every outbound topic (``reports``,
``reports.linked``, ``cases``, ``case-events``, ``device-events``, every
``dispatch.*``) is decoded and every ClickHouse table of the namespace is read
in full, and both are searched for

* any mainland mobile number (``1[3-9]`` + 9 digits, not inside a longer digit run),
* every phone number and every personal name the simulator put into the documents
  (callers, grid reporters, private device owners).

The raw topics (and the dead letters, which keep original bytes by design) are
the only places where they may remain.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Callable

import pytest

from gridhub.core.codec import codec
from gridhub.ops.common import read_to_end
from gridhub.core.settings import Settings
from gridhub.simulate import devices_for, generate
from gridhub.simulate.text import SURNAMES
from gridhub.core.topics import CASE_EVENTS, CASES, DEVICE_EVENTS, RAW, REGISTRY_DEVICES, REPORTS, REPORTS_LINKED
from streams.ingest.normalize import Rejected, normalize

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: A mainland mobile number standing alone: not a run of digits inside a longer number, a decimal
#: (a longitude's digits), a hex hash or a UUID. Chinese text around it is fine ("电话13812345678").
PHONE = re.compile(r"(?<![0-9A-Za-z.\-])1[3-9]\d{9}(?![0-9A-Za-z])")
#: Two counties, 4 records/s for 5 simulated minutes: ~1,200 documents, every kind of record.
SEED, RATE, DURATION, COUNTIES = 31, 4.0, 300.0, ("330502", "330106")
SCHEMAS = {REPORTS: "Report", REPORTS_LINKED: "Report", CASES: "Case", CASE_EVENTS: "CaseEvent",
           DEVICE_EVENTS: "DeviceEvent"}


def personal_data(docs: list[dict[str, Any]], registry: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """(phones, names) the documents carry; names that also occur in an address are left out (no signal)."""
    phones, names, innocent = set(), set(), []
    for doc in docs:
        reporter = doc.get("reporter") if isinstance(doc.get("reporter"), dict) else {}
        for name in (doc.get("caller"), reporter.get("name")):
            if isinstance(name, str) and len(name) >= 2:
                names.add(name)
        for phone in (doc.get("phone"), reporter.get("phone")):
            if isinstance(phone, str) and phone:
                phones.add(phone)
        innocent.append(str(doc.get("address") or ""))
    for row in registry:
        owner = row.get("owner")
        # A private owner is a 2-3 character name from the simulator's surnames (others are schools,
        # shops, property companies: not personal data).
        if isinstance(owner, str) and 2 <= len(owner) <= 3 and owner[0] in SURNAMES:
            names.add(owner)
        phones.add(str(row.get("ownerPhone") or ""))
        innocent.append(str(row.get("address") or ""))
    text = "\n".join(innocent)
    return {p for p in phones if p}, {n for n in names if n not in text}


def test_no_personal_data_leaves_the_raw_topics(settings: Settings, kafka_producer: Any, ch_client: Any,
                                                worker: Callable[..., Any]) -> None:
    from kafka import KafkaAdminClient

    start = int(time.time() * 1000) - int(DURATION * 1000) - 60_000
    devices = [d.registry_row() for d in devices_for(SEED, RATE, DURATION, start_ms=start, counties=COUNTIES)]
    records = list(generate(SEED, RATE, DURATION, start_ms=start, counties=COUNTIES))
    phones, names = personal_data([r.doc for r in records], devices)
    assert len(phones) >= 20 and len(names) >= 10, "the simulated traffic must carry personal data to test"

    registry = {row["deviceId"]: row for row in devices}
    expected = set()
    for rec in records:
        try:
            out = normalize(rec.source, rec.value(), registry=registry, received_at_ms=rec.at_ms, pii_key=b"k")
        except Rejected:
            continue
        if out.report is not None:
            expected.add(out.report["report_id"])
    for row in devices:
        kafka_producer.send(settings.topic(REGISTRY_DEVICES), key=str(row["deviceId"]).encode(),
                            value=json.dumps(row, ensure_ascii=False).encode())
    for rec in records:
        kafka_producer.send(settings.topic(RAW[rec.source]), key=rec.key.encode(), value=rec.value())
    kafka_producer.flush()

    worker(settings, only="ingest,fusion,routing,service")
    # Done when the linked reports stop growing and ClickHouse holds them all (not every report is
    # linked: e.g. a sensor `recover` with no open alarm case).
    deadline = time.monotonic() + 240
    in_ch = linked = 0
    stable_since, last = time.monotonic(), -1
    while time.monotonic() < deadline:
        linked = len({codec("Report").decode(r.value)["report_id"]
                      for r in read_to_end(settings, [settings.topic(REPORTS_LINKED)])})
        try:
            in_ch = ch_client.execute(f"SELECT uniqExact(report_id) FROM {settings.ch_database}.reports")[0][0]
        except Exception:  # the sink has not created its tables yet
            in_ch = 0
        if linked != last:
            stable_since, last = time.monotonic(), linked
        if linked and in_ch >= linked and time.monotonic() - stable_since > 10:
            break
        time.sleep(3)
    assert linked >= 0.8 * len(expected) and in_ch >= linked, (linked, in_ch, len(expected))
    time.sleep(5)  # the last dispatches and case events of the last reports

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    topics = [t for t in admin.list_topics() if t.startswith(settings.topic("dispatch."))]
    admin.close()
    assert topics, "routing dispatched nothing"
    scanned: dict[str, int] = {}
    leaks: list[str] = []

    def scan(where: str, text: str) -> None:
        for hit in PHONE.findall(text):
            leaks.append(f"{where}: phone-like {hit}")
        leaks.extend(f"{where}: phone {p}" for p in phones if p in text)
        leaks.extend(f"{where}: name {n}" for n in names if n in text)

    for name, schema in SCHEMAS.items():
        for rec in read_to_end(settings, [settings.topic(name)]):
            if rec.value:
                scan(name, json.dumps(codec(schema).decode(rec.value), ensure_ascii=False, default=str))
                scanned[name] = scanned.get(name, 0) + 1
    for topic in topics:
        for rec in read_to_end(settings, [topic]):
            scan(topic, json.dumps(codec("Dispatch").decode(rec.value), ensure_ascii=False, default=str))
            scanned["dispatch.*"] = scanned.get("dispatch.*", 0) + 1
    tables = [row[0] for row in ch_client.execute(f"SHOW TABLES FROM {settings.ch_database}")]
    assert "reports" in tables and "dispatches" in tables
    for table in tables:
        rows = ch_client.execute(f"SELECT * FROM {settings.ch_database}.`{table}`")
        scan(f"clickhouse {table}", "\n".join(repr(row) for row in rows))
        scanned[f"ch.{table}"] = len(rows)
    print(f"scanned: {scanned}; {len(phones)} phones, {len(names)} names")
    for name in (REPORTS, REPORTS_LINKED, CASES, CASE_EVENTS, "dispatch.*", "ch.reports", "ch.dispatches"):
        assert scanned.get(name), f"nothing to scan in {name}: the test would prove nothing"
    assert not leaks, f"{len(leaks)} personal data leaks, e.g. {leaks[:5]}"
