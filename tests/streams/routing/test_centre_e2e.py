"""The county centre's loop on the real servers: raw 12345 orders in, centre actions, status replies, ClickHouse.

One `gridhub run --only ingest,fusion,routing,clickhouse` worker.  The actions go through
`gridhub case ...`'s own function (gridhub.ops.case.send_command) onto `case-commands`.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from click.testing import CliRunner

from gridhub.ops.cli import case as case_cli
from gridhub.ops.case import demo_centre_step, demo_summary_line, relink, send_command
from helpers.kafka import TopicReader
from helpers.routing import feedback_doc, hotline_order, produce_raw, send_feedback

pytestmark = pytest.mark.integration
BEIJING = timezone(timedelta(hours=8))
FAST_SINK = {"GRIDHUB_CH_SINK_FLUSH_SECONDS": "0.5"}


def _order(order_no: str, **kw: Any) -> dict[str, Any]:
    """李四's 12345 order: another caller than the routing tests' (helpers.routing.hotline_order)."""
    return hotline_order(order_no, **{"caller": "李四", "phone": "13900002222",
                                      "content": "月河街道红旗路口有流动摊贩占道经营，影响通行。", **kw})




def _act(settings: Any, case_id: str, action: str, **fields: Any) -> str:
    return send_command(settings, {"caseId": case_id, "action": action, "operator": "op-centre-7",
                                   "reason": f"测试{action}", **fields})


def _wait(condition: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_centre_actions_end_to_end(settings: Any, worker: Any, kafka_producer: Any, ch_client: Any) -> None:
    worker(settings, only="ingest,fusion,routing,clickhouse", env=FAST_SINK)
    linked = TopicReader(settings, "reports.linked", "Report")
    events = TopicReader(settings, "case-events", "CaseEvent")
    status = TopicReader(settings, "status.hotline-12345")
    zhzf = TopicReader(settings, "dispatch.330502.zhzf", "Dispatch")
    scjg = TopicReader(settings, "dispatch.330502.scjg", "Dispatch")
    sthj = TopicReader(settings, "dispatch.330502.sthj", "Dispatch")

    order_deadline = datetime.now(BEIJING).replace(microsecond=0) + timedelta(days=2)
    produce_raw(kafka_producer, settings, "hotline-12345", "CE-1",
                _order("CE-1", deadline=order_deadline.strftime("%Y-%m-%d %H:%M:%S")))
    produce_raw(kafka_producer, settings, "hotline-12345", "CE-2",
             _order("CE-2", categoryName="市容环卫/垃圾", title="垃圾堆放", content="爱山街道某小区门口垃圾堆放多日无人清理",
                    address="湖州市吴兴区爱山街道南街8号", streetCode="330502003", lng=120.0901, lat=30.8611))
    reports = linked.until(lambda vs: {"CE-1", "CE-2"} <= {v["source_ref"] for v in vs}, what="linked reports")
    case_of = {v["source_ref"]: v["case_id"] for v in reports}
    report_of = {v["source_ref"]: v["report_id"] for v in reports}
    c1, c2 = case_of["CE-1"], case_of["CE-2"]
    assert c1 != c2

    def replies(ref: str) -> list[dict[str, Any]]:
        return [json.loads(v) for r, v in zip(status.records, status.values()) if r.key == ref.encode()]

    # --- status replies: 受理, 已派发 with the lead; the order's own deadline is the 办结 deadline
    order_ms = int(order_deadline.timestamp() * 1000)
    # the dispatch has the order's deadline: at once, or as an `update` when the order reached routing after the case
    mine = [v for v in zhzf.until(lambda vs: any(v["caseId"] == c1 and v["resolveDeadline"] == order_ms for v in vs),
                                  what="c1 dispatch with the order deadline") if v["caseId"] == c1]
    assert {v["action"] for v in mine} <= {"dispatch", "update"} and len({v["dispatchId"] for v in mine}) == 1
    assert mine[0]["orderNos"] == ["CE-1"] or mine[-1]["orderNos"] == ["CE-1"]
    status.until(lambda _: [r["state"] for r in replies("CE-1")][:2] == ["受理", "已派发"], what="受理, 已派发")
    assert replies("CE-1")[1]["leadAgency"] == "330502.zhzf" and replies("CE-1")[1]["caseId"] == c1

    # --- assign: 综合执法 -> 市场监管 as lead
    _act(settings, c1, "assign", agency="scjg")
    zhzf.until(lambda vs: any(v["caseId"] == c1 and v["action"] == "withdraw" for v in vs), what="withdraw")
    lead = next(v for v in scjg.until(lambda vs: any(v["caseId"] == c1 for v in vs), what="scjg dispatch")
                if v["caseId"] == c1)
    assert (lead["role"], lead["reason"]) == ("lead", "centre")
    status.until(lambda _: replies("CE-1")[-1]["leadAgency"] == "330502.scjg", what="reply with the new lead")

    # --- recategorise c2 (garbage -> water pollution): 生态环境 takes it; a newer order version does not undo it
    _act(settings, c2, "recategorise", category="water_pollution")
    sthj.until(lambda vs: any(v["caseId"] == c2 and v["category"] == "water_pollution" for v in vs),
               what="sthj dispatch")
    produce_raw(kafka_producer, settings, "hotline-12345", "CE-2",
             _order("CE-2", categoryName="市容环卫/垃圾", title="垃圾堆放（催办）", content="爱山街道某小区门口垃圾堆放多日无人清理，再次反映",
                    address="湖州市吴兴区爱山街道南街8号", streetCode="330502003", lng=120.0901, lat=30.8611,
                    status="办理中"))  # a later state of the order (CONTRACTS 1.2 statuses; an unknown one ranks first)

    # --- 办结 with a reply text (masked), then 重办 by hand
    for action in ("sign", "resolve"):
        send_feedback(kafka_producer, settings, feedback_doc(lead, action, note="已责令整改，经营者电话13912345678"))
    done = status.until(lambda _: any(r["state"] == "已办结" for r in replies("CE-1")), what="已办结")
    text = next(json.loads(v)["replyText"] for v in done if json.loads(v)["state"] == "已办结")
    assert "13912345678" not in text and "139****5678" in text
    _act(settings, c1, "reopen")
    scjg.until(lambda vs: len([v for v in vs if v["caseId"] == c1 and v["action"] == "dispatch"]) == 2,
               what="reopened dispatch")

    # --- merge c2 into c1, then split CE-2's report off again
    _act(settings, c2, "merge", intoCaseId=c1)
    _act(settings, c1, "split", reportId=report_of["CE-2"], source="hotline-12345", sourceRef="CE-2",
         category="water_pollution", streetCode="330502003")
    history = events.until(lambda vs: {"centre_assign", "centre_reopen", "centre_split", "merged_in"} <= {
        e["event"] for e in vs if e["case_id"] == c1} and "centre_merge" in {e["event"] for e in vs
                                                                          if e["case_id"] == c2},
        what="every centre action")
    audit = [json.loads(e["detail"]) for e in history if e["event"].startswith("centre_")]
    assert {(a["operator"], a["reason"]) for a in audit} == {("op-centre-7", f"测试{x}") for x in
                                                             ("assign", "recategorise", "reopen", "merge", "split")}
    new_case = next(json.loads(e["detail"])["new_case_id"] for e in history if e["event"] == "centre_split")
    sthj.until(lambda vs: any(v["caseId"] == new_case for v in vs), what="the split-off case routed")
    # what `gridhub case split` does next: re-drive the record, so the report->case map follows the split
    assert relink(settings, [("hotline-12345", "CE-2")]) == 1

    # --- ClickHouse: the actions are facts; the manual category held; the timeline shows who and why
    db = settings.ch_database

    def ch_events() -> set[tuple[str, str]]:
        rows = ch_client.execute(f"SELECT case_id, event FROM {db}.case_events FINAL WHERE event LIKE 'centre_%'")
        return {(str(c), str(e)) for c, e in rows}

    expected = {(c1, "centre_assign"), (c2, "centre_recategorise"), (c1, "centre_reopen"), (c2, "centre_merge"),
                (c1, "centre_split")}
    _wait(lambda: ch_events() == expected, "centre events in ClickHouse")
    _wait(lambda: ch_client.execute(f"SELECT agency, role, reason FROM {db}.dispatches FINAL WHERE case_id = %(c)s "
                                    "AND agency = '330502.scjg'", {"c": c1}), "scjg dispatch rows")
    cats = _wait(lambda: dict(ch_client.execute(f"SELECT case_id, category FROM {db}.cases FINAL "
                                                f"WHERE case_id IN (%(a)s, %(b)s)", {"a": c2, "b": new_case}))
                 if len(ch_client.execute(f"SELECT case_id FROM {db}.cases FINAL WHERE case_id IN (%(a)s, %(b)s)",
                                          {"a": c2, "b": new_case})) == 2 else None, "cases rows")
    assert cats == {c2: "water_pollution", new_case: "water_pollution"}
    _wait(lambda: dict(ch_client.execute(f"SELECT source_ref, case_id FROM {db}.reports FINAL")) == {
        "CE-1": c1, "CE-2": new_case}, "the report->case map after merge and split")
    created = ch_client.execute(f"SELECT case_id, count() FROM {db}.case_events FINAL WHERE event = 'created' "
                                "GROUP BY case_id ORDER BY case_id")
    assert sorted(created) == sorted([(c1, 1), (c2, 1), (new_case, 1)])  # the re-drive added no event
    shown = CliRunner().invoke(case_cli, ["show", c1, "--namespace", settings.namespace, "--no-kafka"])
    assert shown.exit_code == 0, shown.output
    assert "centre_assign" in shown.output and "op-centre-7: 测试assign" in shown.output

    # what `gridhub demo` calls for its summary line: one more centre action, one status reply
    result = demo_centre_step(settings)
    assert result["centre_action"]["recorded"] and result["centre_action"]["agency"] == "330502.zzzx"
    assert result["status_reply"]["source"] == "hotline-12345"
    line = demo_summary_line(result)
    assert line.startswith("centre action: assign 330502.zzzx (assist)") and "status reply: hotline-12345" in line
