"""A changed routing rule, replayed into a shadow namespace, shown by `gridhub replay diff` (real servers).

Live: the deployed rules (garbage -> 综合执法 zhzf).  Shadow: the same day replayed with one rule added
(garbage -> 市场监管 scjg) by a worker with GRIDHUB_SHADOW=1, which must not write the status topics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from gridhub.ops.replay import replay_records
from gridhub.core.kafka_admin import delete_namespace
from helpers.kafka import TopicReader

pytestmark = pytest.mark.integration
BEIJING = timezone(timedelta(hours=8))
DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
SINK = {"GRIDHUB_CH_SINK_FLUSH_SECONDS": "0.5"}


def _order(no: str, category: str, street: str, lng: float, content: str) -> dict[str, Any]:
    return {"orderNo": no, "channel": "电话", "acceptTime": datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
            "appealType": "投诉", "categoryName": category, "title": content[:8], "content": content,
            "address": "湖州市吴兴区某路1号", "areaCode": "330502", "streetCode": street, "lng": lng, "lat": 30.87,
            "urgency": "一般", "status": "已派发"}


def _leads(client: Any, db: str) -> dict[str, str]:
    return {str(c): str(a) for c, a in client.execute(
        f"SELECT case_id, agency FROM {db}.dispatches FINAL WHERE role = 'lead' AND action != 'withdraw'")}


def _wait(fn: Any, what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_replay_diff_shows_a_changed_rule(settings: Any, worker: Any, kafka_producer: Any, ch_client: Any,
                                          tmp_path: Path) -> None:
    worker(settings, only="ingest,fusion,routing,clickhouse", env=SINK)
    started = int(time.time() * 1000) - 60_000
    orders = [_order("RD-GARBAGE", "市容环卫/垃圾", "330502001", 120.0901, "月河街道南街垃圾堆放多日无人清理"),
              _order("RD-VENDOR", "市容环卫/占道经营", "330502003", 120.1301, "爱山街道北街流动摊贩占道经营")]
    for doc in orders:
        kafka_producer.send(settings.topic("raw.hotline-12345"), key=doc["orderNo"].encode(),
                            value=json.dumps(doc, ensure_ascii=False).encode()).get(30)
    live = _wait(lambda: (lambda d: d if len(d) == 2 else None)(_leads(ch_client, settings.ch_database)),
                 "two live dispatches")
    assert set(live.values()) == {"330502.zhzf"}

    # the changed rule: garbage goes to 市场监管 (a rule before city-management, so it is reachable)
    text = (DEPLOY / "routing.yaml").read_text("utf-8")
    text = text.replace("agencies: agencies.yaml", f"agencies: {DEPLOY / 'agencies.yaml'}")
    text = text.replace("categories: categories.yaml", f"categories: {DEPLOY / 'categories.yaml'}")
    text = text.replace("  - id: city-management\n",
                        "  - id: garbage-to-market\n    match: {category: [garbage]}\n    lead: scjg\n"
                        "  - id: city-management\n", 1)
    rules = tmp_path / "routing.yaml"
    rules.write_text(text, encoding="utf-8")

    shadow = settings.model_copy(update={"namespace": settings.namespace + "sh"})
    try:
        result = replay_records(settings, ["hotline-12345"], since_ms=started, namespace=shadow.namespace,
                                progress=False)
        assert result.total == 2
        worker(shadow, only="ingest,fusion,routing,clickhouse,mqtt_bridge,webhook",
               env={**SINK, "GRIDHUB_SHADOW": "1", "GRIDHUB_ROUTING_RULES": str(rules)})
        shadow_leads = _wait(lambda: (lambda d: d if len(d) == 2 else None)(_leads(ch_client, shadow.ch_database)),
                             "two shadow dispatches")
        assert sorted(shadow_leads.values()) == ["330502.scjg", "330502.zhzf"]

        env = {**os.environ, "GRIDHUB_NAMESPACE": settings.namespace}
        gridhub = str(Path(sys.executable).parent / "gridhub")
        run = subprocess.run([gridhub, "replay", "diff", "--namespace", shadow.namespace, "--json"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        out = run.stdout
        doc = json.loads(out)
        garbage_case = next(c for c, a in shadow_leads.items() if a == "330502.scjg")
        assert [(c["case_id"], c["changes"]["lead"]) for c in doc["cases"]] == [
            (garbage_case, {"live": "330502.zhzf", "shadow": "330502.scjg"})]
        assert (doc["totals"]["lead"], doc["totals"]["fusion"], doc["totals"]["cases_changed"]) == (1, 0, 1)
        text_out = subprocess.run([gridhub, "replay", "diff", "--namespace", shadow.namespace], env=env,
                                  capture_output=True, text=True, timeout=120, check=True).stdout
        assert "330502.scjg" in text_out and "differences: lead 1," in text_out

        # the shadow never wrote its status topics (live did), and started neither the MQTT bridge nor webhooks
        live_status = TopicReader(settings, "status.hotline-12345")
        live_status.until(lambda vs: len(vs) >= 4, what="live replies")
        shadow_status = TopicReader(shadow, "status.hotline-12345")
        assert shadow_status.settle(3) == []
    finally:
        delete_namespace(shadow)
