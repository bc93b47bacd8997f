"""``gridhub case``: everything the hub knows about one case, for an operator.

Reads the ClickHouse facts (``reports``, ``dispatches``, ``case_events``,
``cases``, each ``FINAL`` so redelivered rows are collapsed) of
``settings.ch_database``.  Only columns on an allow-list are shown: the
tables hold masked data already, and the allow-list keeps a column added
later (say, a hash of a phone number) off an operator's screen until someone
decides it belongs there.  Columns that a database does not have are simply
left out, so the command works across migrations.

The timeline carries the two clocks of the lifecycle (DESIGN.md, after eGov
DIGIT PGR): time since the case opened, and time spent in each state (the
current one counted up to now).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import click

from gridhub.core.logging import get_logger
from gridhub.ops.common import fmt_duration, fmt_ms, render_table, settings_for
from gridhub.core.settings import Settings

log = get_logger(__name__)

#: What an operator may see, per table, in display order (CONTRACTS.md section 3 first).
ALLOWED: dict[str, list[str]] = {
    "cases": ["case_id", "county_code", "street_code", "category", "title", "address", "severity", "sources",
              "report_count", "first_seen", "last_seen", "status", "dispatchable", "updated_at", "historical"],
    "reports": ["source", "source_ref", "case_id", "county_code", "street_code", "category", "reported_at",
                "report_id", "kind", "village_code", "grid_code", "source_category_name", "title", "address",
                "severity", "status", "channel", "appeal_type", "platform", "event_source", "device_id",
                "device_type", "value", "unit", "satisfaction", "dispatchable", "reporter_masked"],
    "dispatches": ["case_id", "agency", "role", "dispatched_at", "deadline", "dispatch_id", "reason",
                   "sign_deadline", "escalation_level", "action", "previous_dispatch_id"],
    "case_events": ["case_id", "event", "at", "agency", "event_id", "dispatch_id", "report_id", "state", "detail",
                    "role", "clock"],
}
ORDER = {"cases": "", "reports": "reported_at, source, source_ref", "dispatches": "dispatched_at, dispatch_id",
         "case_events": "at, event_id"}
#: States after which the case clock stops (CaseEvent.state values).
FINAL_STATES = {"closed"}


class CaseStoreError(RuntimeError):
    """ClickHouse cannot answer (database missing, server down)."""


def ch_client(settings: Settings) -> Any:
    from clickhouse_driver import Client

    return Client(settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                  password=settings.secret("clickhouse_password"), database="default",
                  connect_timeout=5, send_receive_timeout=30)  # seconds: fail fast on a dead server


def _columns(client: Any, database: str, table: str) -> dict[str, str]:
    rows = client.execute("SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(t)s",
                          {"db": database, "t": table})
    return {str(name): str(kind) for name, kind in rows}


def _select(client: Any, database: str, table: str, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Allowed columns of ``table FINAL`` matching ``where``; times as epoch ms."""
    have = _columns(client, database, table)
    if not have:
        return []
    wanted = [c for c in ALLOWED[table] if c in have]
    exprs = []
    for name in wanted:
        # DateTime('Asia/Shanghai') columns: epoch seconds, so no time-zone guessing on the client
        exprs.append(f"toUnixTimestamp({name}) AS {name}" if "DateTime" in have[name] else name)
    order = f" ORDER BY {ORDER[table]}" if ORDER[table] else ""
    sql = f"SELECT {', '.join(exprs)} FROM {database}.{table} FINAL WHERE {where}{order}"
    rows = client.execute(sql, params)
    out = []
    for row in rows:
        record = dict(zip(wanted, row))
        for name in wanted:
            if "DateTime" in have[name] and record[name] is not None:
                record[name] = int(record[name]) * 1000
        out.append(record)
    return out


@dataclass
class CaseView:
    case_id: str
    case: dict[str, Any] | None
    reports: list[dict[str, Any]]
    dispatches: list[dict[str, Any]]
    events: list[dict[str, Any]]
    now_ms: int
    timeline: list[dict[str, Any]] = field(default_factory=list)
    clocks: dict[str, Any] = field(default_factory=dict)
    source: str = "clickhouse"

    @property
    def known(self) -> bool:
        return bool(self.case or self.reports or self.dispatches or self.events)


def with_clocks(events: Sequence[dict[str, Any]], now_ms: int,
                opened_at: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Pure: the timeline with both clocks, and the case's current clocks.

    ``since_open_ms``: event time minus the case's opening (the first event,
    or ``opened_at`` when the case row says earlier).  ``state_ms``: how long
    the state entered at this event lasted (until the next state change, or
    until ``now_ms`` for the current state; a final state has no duration).
    """
    events = sorted(events, key=lambda e: (e["at"], e.get("event_id") or ""))
    if not events:
        return [], {}
    start = min([events[0]["at"]] + ([opened_at] if opened_at is not None else []))
    changes: list[int] = []          # indexes of events that entered a new state
    state: str | None = None
    for i, event in enumerate(events):
        new = event.get("state") or None
        if new is not None and new != state:
            changes.append(i)
            state = new
    timeline = [dict(e, since_open_ms=e["at"] - start, state_ms=None) for e in events]
    for n, i in enumerate(changes):
        entered = events[i]["at"]
        if n + 1 < len(changes):
            timeline[i]["state_ms"] = events[changes[n + 1]]["at"] - entered
        elif events[i].get("state") not in FINAL_STATES:
            timeline[i]["state_ms"] = now_ms - entered
    current = events[changes[-1]] if changes else None
    closed = current is not None and current.get("state") in FINAL_STATES
    clocks = {
        "opened_at": start,
        "state": current.get("state") if current else None,
        "state_since": current["at"] if current else None,
        "state_ms": None if current is None or closed else now_ms - current["at"],
        "case_ms": (current["at"] if closed and current else now_ms) - start,
        "closed": closed,
    }
    return timeline, clocks


def load_case(settings: Settings, case_id: str, client: Any | None = None, now_ms: int | None = None) -> CaseView:
    own = client is None
    client = client or ch_client(settings)
    db = settings.ch_database
    try:
        exists = client.execute("SELECT count() FROM system.databases WHERE name = %(db)s", {"db": db})[0][0]
        if not exists:
            raise CaseStoreError(f"ClickHouse database {db} does not exist (run: gridhub ch migrate)")
        params = {"case_id": case_id}
        cases = _select(client, db, "cases", "case_id = %(case_id)s", params)
        view = CaseView(case_id, cases[0] if cases else None,
                        _select(client, db, "reports", "case_id = %(case_id)s", params),
                        _select(client, db, "dispatches", "case_id = %(case_id)s", params),
                        _select(client, db, "case_events", "case_id = %(case_id)s", params),
                        now_ms if now_ms is not None else int(time.time() * 1000))
    except CaseStoreError:
        raise
    except Exception as exc:  # clickhouse-driver: network and server errors of several types
        raise CaseStoreError(f"ClickHouse query failed: {exc}") from exc
    finally:
        if own:
            client.disconnect()
    opened = view.case.get("first_seen") if view.case else None
    view.timeline, view.clocks = with_clocks(view.events, view.now_ms, opened)
    if not view.clocks and view.case:
        start = view.case.get("first_seen")
        if start is not None:
            view.clocks = {"opened_at": start, "state": view.case.get("status"), "state_since": None,
                           "state_ms": None, "case_ms": view.now_ms - start, "closed": view.case.get("status") in
                           FINAL_STATES}
    return view


def find_case(settings: Settings, source: str, ref: str, client: Any | None = None) -> list[dict[str, Any]]:
    """The report rows of ``(source, source_ref)``: normally one, with its case_id."""
    own = client is None
    client = client or ch_client(settings)
    try:
        return _select(client, settings.ch_database, "reports", "source = %(s)s AND source_ref = %(r)s",
                       {"s": source, "r": ref})
    except Exception as exc:  # clickhouse-driver: network and server errors of several types
        raise CaseStoreError(f"ClickHouse query failed: {exc}") from exc
    finally:
        if own:
            client.disconnect()


# --- Kafka fallback ------------------------------------------------------------------------

def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, Java / aiokafka /
    kafka-python alike) gives ``key``: the only one that can hold a case's records."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _scan(settings: Settings, consumer: Any, contract: str, key: bytes) -> list[Any]:
    from gridhub.ops.common import plan_spans, read_spans

    topic = settings.topic(contract)
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        return []
    spans = plan_spans(consumer, topic, [key_partition(key, len(partitions))])
    return [r for r in read_spans(consumer, spans) if r.key == key and r.value is not None]


def load_case_from_kafka(settings: Settings, case_id: str, now_ms: int | None = None) -> CaseView:
    """The case from ``reports.linked``, ``cases`` and ``case-events`` (all keyed by case_id).

    Reads one partition per topic, the one the key hashes to, so it costs a
    fraction of the topics (1/partitions) and works while the ClickHouse sink
    is not running.  Dispatches are taken from the ``dispatched`` events.
    Records that do not decode are skipped (they would be dead letters).
    """
    from gridhub.core import topics as T
    from gridhub.core.codec import DecodeError, codec
    from gridhub.ops.common import make_consumer

    key = case_id.encode("utf-8")
    consumer = make_consumer(settings)
    try:
        linked, cases, events = (_scan(settings, consumer, t, key) for t in (T.REPORTS_LINKED, T.CASES, T.CASE_EVENTS))
    finally:
        consumer.close()

    def decode(name: str, records: list[Any]) -> list[dict[str, Any]]:
        out = []
        for record in records:
            try:
                out.append(codec(name).decode(record.value))
            except DecodeError:
                continue
        return out

    reports: dict[str, dict[str, Any]] = {}
    for report in decode("Report", linked):
        current = reports.get(report["report_id"])
        if current is None or report["version"] >= current["version"]:
            reports[report["report_id"]] = report
    case_rows = decode("Case", cases)
    case_row = max(case_rows, key=lambda c: c["version"]) if case_rows else None
    unique_events = {e["event_id"]: e for e in decode("CaseEvent", events)}
    allowed = {t: set(cols) for t, cols in ALLOWED.items()}
    dispatches = [{"case_id": e["case_id"], "agency": e.get("agency"), "dispatch_id": e.get("dispatch_id"),
                   "dispatched_at": e["at"], "role": json.loads(e["detail"]).get("role")
                   if (e.get("detail") or "").startswith("{") else None}
                  for e in unique_events.values() if e["event"] == "dispatched"]
    view = CaseView(
        case_id,
        {k: v for k, v in case_row.items() if k in allowed["cases"]} if case_row else None,
        sorted(({k: v for k, v in r.items() if k in allowed["reports"]} for r in reports.values()),
               key=lambda r: (r["reported_at"], r["source"], r["source_ref"])),
        sorted(dispatches, key=lambda d: (d["dispatched_at"], d["dispatch_id"] or "")),
        [{k: v for k, v in e.items() if k in allowed["case_events"]} for e in unique_events.values()],
        now_ms if now_ms is not None else int(time.time() * 1000),
    )
    view.source = "kafka"
    opened = view.case.get("first_seen") if view.case else None
    view.timeline, view.clocks = with_clocks(view.events, view.now_ms, opened)
    return view


# --- rendering --------------------------------------------------------------------------------

def _cell(name: str, value: Any) -> str:
    if value is None or value == "":
        return "-"
    if name.endswith("_at") or name in ("at", "deadline", "sign_deadline", "first_seen", "last_seen"):
        return fmt_ms(int(value))
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def render_case(view: CaseView) -> str:
    out: list[str] = []
    case = view.case or {}
    out.append(f"case {view.case_id}" + ("  (from Kafka: ClickHouse has no rows for it yet)"
                                         if view.source == "kafka" else ""))
    if case:
        out.append(f"  status {case.get('status')}  category {case.get('category')}  county {case.get('county_code')}"
                   f"  street {_cell('street_code', case.get('street_code'))}  severity {case.get('severity')}")
        if case.get("title") or case.get("address"):
            out.append(f"  {case.get('title') or ''}  {case.get('address') or ''}".rstrip())
    else:
        out.append("  (no row in cases: the case table is not loaded yet)")
    clocks = view.clocks
    if clocks:
        state_part = (f"in state {clocks['state']} for {fmt_duration(clocks['state_ms'])}"
                      if clocks.get("state_ms") is not None else f"state {clocks.get('state')}")
        verb = "was open for" if clocks.get("closed") else "open for"
        out.append(f"  opened {fmt_ms(clocks['opened_at'])}, {verb} {fmt_duration(clocks['case_ms'])}; {state_part}")
    out.append("")
    out.append(f"reports ({len(view.reports)})")
    cols = ["source", "source_ref", "reported_at", "category", "street_code", "title", "address"]
    if view.reports:
        shown = [c for c in cols if c in view.reports[0]]
        out.append(render_table([[_cell(c, r.get(c)) for c in shown] for r in view.reports], shown))
    out.append("")
    out.append(f"dispatches ({len(view.dispatches)})")
    cols = ["agency", "role", "action", "dispatched_at", "sign_deadline", "deadline", "reason", "dispatch_id"]
    if view.dispatches:
        shown = [c for c in cols if c in view.dispatches[0]]
        out.append(render_table([[_cell(c, d.get(c)) for c in shown] for d in view.dispatches], shown))
    out.append("")
    out.append(f"timeline ({len(view.timeline)} events)")
    if view.timeline:
        rows = [[fmt_ms(e["at"]), "+" + fmt_duration(e["since_open_ms"]), e.get("event") or "-",
                 _cell("state", e.get("state")),
                 fmt_duration(e["state_ms"]) if e.get("state_ms") is not None else "-",
                 _cell("agency", e.get("agency")), action_note(e)] for e in view.timeline]
        out.append(render_table(rows, ["at", "since open", "event", "state", "time in state", "agency", "by / why"]))
    return "\n".join(out)


def view_json(view: CaseView) -> dict[str, Any]:
    return {"case_id": view.case_id, "source": view.source, "case": view.case, "reports": view.reports,
            "dispatches": view.dispatches, "timeline": view.timeline, "clocks": view.clocks, "now": view.now_ms}


def action_note(event: dict[str, Any]) -> str:
    """``op-007: 属地错误`` for the county centre's actions (``centre_*`` events), else ``-``."""
    if not str(event.get("event") or "").startswith("centre_"):
        return "-"
    try:
        detail = json.loads(event.get("detail") or "{}")
    except ValueError:
        return "-"
    return f"{detail.get('operator', '?')}: {detail.get('reason', '')}"[:60]


# --- centre actions (issue 15) ------------------------------------------------------------------

def send_command(settings: Settings, doc: dict[str, Any]) -> str:
    """Put one centre command on ``case-commands`` (keyed by its case id); returns its commandId.

    Routing applies it (``streams/routing/centre.py``) or dead-letters it with the reason.
    """
    from gridhub.ops.common import make_producer
    from streams.routing.centre import COMMANDS_TOPIC, parse_command
    from streams.routing.lifecycle import Rejected

    doc = {k: v for k, v in doc.items() if v is not None}
    doc.setdefault("time", int(time.time() * 1000))
    try:
        cmd = parse_command(doc)
    except Rejected as exc:
        raise click.UsageError(str(exc)) from exc
    doc["commandId"] = cmd["commandId"]
    producer = make_producer(settings)
    try:
        producer.send(settings.topic(COMMANDS_TOPIC), key=cmd["caseId"].encode("utf-8"),
                      value=json.dumps(doc, ensure_ascii=False).encode("utf-8")).get(timeout=30)
    finally:
        producer.close()
    log.info("case_command_sent", case_id=cmd["caseId"], action=cmd["action"], operator=cmd["operator"],
             command_id=cmd["commandId"])
    return str(cmd["commandId"])



def relink(settings: Settings, refs: Sequence[tuple[str, str]]) -> int:
    """Re-drive the latest raw record of each ``(source, source_ref)`` (tagged ``gridhub.replay``).

    Why: after a merge or a split, fusion already files the record under its new case, but the
    ClickHouse report->case map (``reports``) changes only when fusion sees the record again.
    A re-driven record is a redelivery for fusion (same version): it links the report to the
    case the centre chose and changes nothing else.  Reads only the partition the key hashes
    to.  Returns how many records were re-driven (a record past the raw topic's retention is not).
    """
    from gridhub.core import topics as T
    from gridhub.ops.common import make_consumer, make_producer, new_run_id, plan_spans, read_spans

    wanted: dict[str, set[bytes]] = {}
    for source, ref in refs:
        if source in T.RAW_KEY_FIELD and source != "sensors":  # a sensor ref is deviceId@eventTime, not a key
            wanted.setdefault(source, set()).add(ref.encode("utf-8"))
    found: dict[tuple[str, bytes], Any] = {}
    consumer = make_consumer(settings)
    try:
        for source, keys in wanted.items():
            topic = settings.topic(T.RAW[source])
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                continue
            parts = {key_partition(k, len(partitions)) for k in keys}
            for record in read_spans(consumer, plan_spans(consumer, topic, parts)):
                if record.key in keys and record.value is not None:
                    found[(topic, record.key)] = record  # the last one read is the latest
    finally:
        consumer.close()
    if not found:
        return 0
    producer = make_producer(settings)
    run_id = new_run_id().encode()
    try:
        for (topic, key), record in found.items():
            headers = [(k, v) for k, v in (record.headers or []) if k != "gridhub.replay"]
            producer.send(topic, key=key, value=record.value, headers=headers + [("gridhub.replay", run_id)],
                          partition=record.partition).get(timeout=30)
    finally:
        producer.close()
    return len(found)


def _refs_of(settings: Settings, case_id: str) -> list[tuple[str, str]]:
    try:
        rows = find_case_reports(settings, case_id)
    except CaseStoreError:
        return []
    return [(str(r["source"]), str(r["source_ref"])) for r in rows]


def select_reports(settings: Settings, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of ``reports`` matching ``where`` (allow-listed columns); ClickHouse errors as CaseStoreError."""
    client = ch_client(settings)
    try:
        return _select(client, settings.ch_database, "reports", where, params)
    except Exception as exc:  # clickhouse-driver: network and server errors of several types
        raise CaseStoreError(f"ClickHouse query failed: {exc}") from exc
    finally:
        client.disconnect()


def find_case_reports(settings: Settings, case_id: str) -> list[dict[str, Any]]:
    return select_reports(settings, "case_id = %(c)s", {"c": case_id})


def _wait_event(settings: Settings, case_id: str, event: str, timeout_s: float) -> bool:
    client = ch_client(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                n = client.execute(f"SELECT count() FROM {settings.ch_database}.case_events FINAL "
                                   "WHERE case_id = %(c)s AND event = %(e)s", {"c": case_id, "e": event})[0][0]
            except Exception:  # the sink's database may not exist yet: keep waiting
                n = 0
            if n or time.monotonic() > deadline:
                return bool(n)
            time.sleep(0.5)
    finally:
        client.disconnect()


# --- for `gridhub demo` (issue 15) ---------------------------------------------------------------

def status_replies(settings: Settings, source: str = "hotline-12345", limit: int = 1000) -> list[dict[str, Any]]:
    """The replies on ``status.<source>`` (oldest first, at most ``limit``): what the source system was told."""
    from gridhub.ops.common import make_consumer, plan_spans, read_spans

    consumer = make_consumer(settings)
    try:
        topic = settings.topic(f"status.{source}")
        partitions = consumer.partitions_for_topic(topic) or set()
        out = []
        for record in read_spans(consumer, plan_spans(consumer, topic, partitions)):
            try:
                out.append(json.loads(record.value))
            except ValueError:
                continue
            if len(out) >= limit:
                break
        return sorted(out, key=lambda r: (r.get("at") or 0, r.get("sourceRef") or ""))
    finally:
        consumer.close()


def demo_centre_step(settings: Settings, timeout_s: float = 60.0) -> dict[str, Any]:
    """One county-centre action and one status reply, for ``gridhub demo``'s summary.

    Takes the first case with an active lead dispatch in ClickHouse, asks the county
    centre to join it as an assisting agency (``gridhub case assign --assist``, operator
    ``demo``), waits until routing recorded the ``centre_assign`` event in ClickHouse, and
    reads one reply the hub sent to 12345 (or, without 12345 traffic, to the four
    platforms).  Returns what it saw; :func:`demo_summary_line` prints it.
    """
    client = ch_client(settings)
    db = settings.ch_database
    try:
        rows = client.execute(f"SELECT case_id, county_code FROM {db}.dispatches FINAL WHERE role = 'lead' "
                              "AND action != 'withdraw' AND reason != 'device' AND case_id IN (SELECT case_id "
                              f"FROM {db}.cases FINAL WHERE status NOT IN ('resolved', 'reviewed', 'closed')) "
                              "ORDER BY dispatched_at LIMIT 1")
        result: dict[str, Any] = {"centre_action": None, "status_reply": None}
        if rows:
            case_id, county = str(rows[0][0]), str(rows[0][1])
            command_id = send_command(settings, {"caseId": case_id, "action": "assign", "operator": "demo",
                                                 "reason": "演示：县级中心协同督办", "agency": f"{county}.zzzx",
                                                 "role": "assist"})
            deadline = time.monotonic() + timeout_s
            seen = False
            while time.monotonic() < deadline and not seen:
                seen = bool(client.execute(f"SELECT count() FROM {db}.case_events FINAL WHERE case_id = %(c)s "
                                           "AND event = 'centre_assign'", {"c": case_id})[0][0])
                if not seen:
                    time.sleep(0.5)
            result["centre_action"] = {"case_id": case_id, "action": "assign", "agency": f"{county}.zzzx",
                                       "role": "assist", "command_id": command_id, "recorded": seen}
    finally:
        client.disconnect()
    for source in ("hotline-12345", "four-platforms"):
        replies = status_replies(settings, source, limit=200)
        if replies:
            result["status_reply"] = {k: replies[-1].get(k) for k in ("source", "sourceRef", "caseId", "state",
                                                                      "leadAgency")}
            result["status_replies"] = len(replies)
            break
    return result


def demo_summary_line(result: dict[str, Any]) -> str:
    """``centre action: ...; status reply: ...`` for the demo's printed summary."""
    action = result.get("centre_action")
    reply = result.get("status_reply")
    a = (f"centre action: assign {action['agency']} (assist) to case {action['case_id']} by operator demo"
         f" ({'recorded in case_events' if action['recorded'] else 'NOT yet recorded'})" if action
         else "centre action: none (no dispatched case)")
    r = (f"status reply: {reply['source']} {reply['sourceRef']} -> {reply['state']} (lead {reply['leadAgency']}; "
         f"{result.get('status_replies', 0)} replies sent)" if reply else "status reply: none")
    return f"{a}; {r}"
