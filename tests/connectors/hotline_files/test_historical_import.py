"""`gridhub import --historical` (issue 15): recorded in ClickHouse, never dispatched, no status replies."""

from __future__ import annotations

import csv
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.hotline_files.importer import import_file
from helpers.kafka import TopicReader

pytestmark = pytest.mark.integration
BEIJING = timezone(timedelta(hours=8))
# Two months old: ingest refuses times more than 400 days in the past (a plausibility check).
HEADER_ROW = ["工单编号", "受理渠道", "受理时间", "诉求人", "联系电话", "诉求类型", "诉求分类", "诉求内容",
              "事发地址", "所属区县", "所属街道", "经度", "纬度", "工单状态", "备注"]
OLD = [
    ["HIST-0001", "电话", (datetime.now(BEIJING) - timedelta(days=60)).strftime("%Y-%m-%d 09:01:02"), "张先生", "13800000001", "投诉", "市容环卫/占道经营",
     "人民路菜场门口占道经营严重", "吴兴区人民路菜场", "330502", "330502001", "120.0951", "30.8712", "已办结", ""],
    ["HIST-0002", "微信", (datetime.now(BEIJING) - timedelta(days=59)).strftime("%Y-%m-%d 10:05:00"), "李女士", "13800000002", "投诉", "市容环卫/垃圾",
     "凤凰路垃圾桶满溢", "吴兴区凤凰路", "330502", "330502003", "120.0801", "30.8511", "已办结", ""],
]


def test_historical_import_is_recorded_not_dispatched(settings: Any, worker: Any, kafka_producer: Any,
                                                      ch_client: Any, tmp_path: Path) -> None:
    worker(settings, only="ingest,fusion,routing,clickhouse", env={"GRIDHUB_CH_SINK_FLUSH_SECONDS": "0.5"})
    path = tmp_path / "export.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER_ROW)
        writer.writerows(OLD)
    assert import_file(settings, path, progress=False, historical=True).produced == 2
    live = {"orderNo": "LIVE-0001", "channel": "电话", "acceptTime": datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
            "appealType": "投诉", "categoryName": "市容环卫/占道经营", "title": "占道经营", "content": "红旗路口流动摊贩占道",
            "address": "湖州市吴兴区月河街道红旗路12号", "areaCode": "330502", "streetCode": "330502001",
            "lng": 120.0985, "lat": 30.8702, "urgency": "一般", "status": "已派发"}
    kafka_producer.send(settings.topic("raw.hotline-12345"), key=b"LIVE-0001",
                        value=json.dumps(live, ensure_ascii=False).encode()).get(30)

    db = settings.ch_database
    deadline = time.monotonic() + 120
    while True:
        rows = dict(ch_client.execute(f"SELECT source_ref, case_id FROM {db}.reports FINAL"))
        if set(rows) == {"HIST-0001", "HIST-0002", "LIVE-0001"} and all(rows.values()):
            break
        assert time.monotonic() < deadline, f"reports in ClickHouse: {rows}"
        time.sleep(0.5)
    flags = dict(ch_client.execute(f"SELECT source_ref, historical FROM {db}.reports FINAL"))
    assert flags == {"HIST-0001": 1, "HIST-0002": 1, "LIVE-0001": 0}  # analysts can tell the backfill apart
    cases = {c for (c,) in ch_client.execute(f"SELECT case_id FROM {db}.cases FINAL")}
    assert {rows["HIST-0001"], rows["HIST-0002"], rows["LIVE-0001"]} <= cases  # analysts see the backfill
    events = TopicReader(settings, "case-events", "CaseEvent")
    events.until(lambda vs: any(e["event"] == "dispatched" for e in vs), what="the live dispatch")
    time.sleep(3)  # routing had time to dispatch the historical cases too, if it were going to
    dispatched = {e["case_id"] for e in events.settle(2) if e["event"] == "dispatched"}
    assert dispatched == {rows["LIVE-0001"]}
    replies = TopicReader(settings, "status.hotline-12345")
    replies.until(lambda vs: len(vs) >= 2, what="the live order's replies")
    replies.settle(2)
    refs = {r.key for r in replies.records}
    assert refs == {b"LIVE-0001"}
