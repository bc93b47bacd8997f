"""Device events on the real servers: owner's agency topic, one device case, ClickHouse device_events + view."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gridhub.core.codec import codec
from helpers.kafka import TopicReader

pytestmark = pytest.mark.integration


def _ev(kind: str, n: int, device: str, street: str) -> dict[str, Any]:
    return {"event_id": f"e-{device}-{kind}-{n}", "device_id": device, "device_type": "smoke", "event_type": kind,
            "at": int(time.time() * 1000) - (10 - n) * 60_000, "county_code": street[:6], "street_code": street,
            "address": "某小区3幢", "owner": "湖州市某物业服务有限公司", "detail": f"{kind} #{n}"}


def test_device_events_end_to_end(settings: Any, worker: Any, kafka_producer: Any, ch_client: Any) -> None:
    worker(settings, only="routing,clickhouse", env={"GRIDHUB_CH_SINK_FLUSH_SECONDS": "0.5"})
    town = TopicReader(settings, "dispatch.330502.town-330502001", "Dispatch")
    events = TopicReader(settings, "case-events", "CaseEvent")
    sent = [_ev("offline", 1, "DEV-A", "330502001"), _ev("offline", 2, "DEV-A", "330502001"),
            _ev("offline", 3, "DEV-A", "330502001"),
            _ev("offline", 1, "DEV-B", "330502001"), _ev("online", 4, "DEV-B", "330502001"),
            _ev("offline", 1, "DEV-C", "330502002"), _ev("low_battery", 2, "DEV-C", "330502002")]
    for e in sent:
        kafka_producer.send(settings.topic("device-events"), key=e["device_id"].encode(),
                            value=codec("DeviceEvent").encode(e)).get(30)

    got = town.until(lambda vs: {("DEV-B", "withdraw")} <= {(v["title"].split("：")[-1], v["action"]) for v in vs},
                     what="DEV-A dispatched once, DEV-B withdrawn")
    a_cases = {v["caseId"] for v in got if v["title"].endswith("DEV-A")}
    assert len(a_cases) == 1 and [v["action"] for v in got if v["title"].endswith("DEV-A")] == ["dispatch"]
    (a_case,) = a_cases
    history = events.until(lambda vs: [e["event"] for e in vs if e["case_id"] == a_case].count("report_linked") == 2,
                           what="two offline reports joined DEV-A's case")
    assert [e["event"] for e in history if e["case_id"] == a_case] == ["created", "dispatched", "report_linked",
                                                                       "report_linked"]
    db = settings.ch_database
    deadline = time.monotonic() + 90
    while True:
        rows = ch_client.execute(f"SELECT event_id FROM {db}.device_events FINAL")
        if {r[0] for r in rows} == {e["event_id"] for e in sent} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {r[0] for r in rows} == {e["event_id"] for e in sent}
    offline = ch_client.execute(f"SELECT street_code, devices_offline, arraySort(device_ids) "
                                f"FROM {db}.devices_offline_now ORDER BY street_code")
    # DEV-B came back online; DEV-C's latest event is a low battery: it talks, so it is not offline
    assert offline == [("330502001", 1, ["DEV-A"])]
