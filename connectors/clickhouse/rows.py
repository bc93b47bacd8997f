"""Pure transforms: one Kafka record -> one ClickHouse row (or a reason to dead-letter it).

No Kafka, no ClickHouse here, so every mapping is unit-tested on plain
dicts.  Timestamps arrive as epoch milliseconds (gridhub.core.codec) and leave as
epoch seconds: ClickHouse 18.16 has no DateTime64.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable

from gridhub.core import topics
from gridhub.core.codec import DecodeError, codec
from gridhub.core.dlq import parse_dead_letter_headers
from gridhub.core.settings import Settings
from gridhub.core import pii

REPORTS = "reports"
CASES = "cases"
CASE_EVENTS = "case_events"
DISPATCHES = "dispatches"
DEAD_LETTERS = "dead_letters"
DEVICE_EVENTS = "device_events"  # issue 15 (schemas/migrations/0015_device_events.sql)
TABLES = (REPORTS, CASES, CASE_EVENTS, DISPATCHES, DEAD_LETTERS, DEVICE_EVENTS)

Row = dict[str, Any]


class RowError(ValueError):
    """A record that cannot become a row: the reason goes to the dlq."""


def _s(value: Any) -> int | None:
    """Epoch ms -> epoch s (None stays None)."""
    return None if value is None else int(value) // 1000


def _t(value: Any) -> str:
    return "" if value is None else str(value)


def _u8(value: Any, name: str) -> int:
    number = int(value or 0)
    if not 0 <= number <= 255:  # UInt8 columns
        raise RowError(f"{name}={number} is outside 0..255")
    return number


def report_row(r: dict[str, Any]) -> Row:
    return {
        "report_id": r["report_id"], "source": r["source"], "source_ref": r["source_ref"],
        "case_id": _t(r.get("case_id")), "kind": r["kind"], "county_code": r["county_code"],
        "street_code": _t(r.get("street_code")), "village_code": _t(r.get("village_code")),
        "grid_code": _t(r.get("grid_code")), "category": r["category"],
        "source_category_code": _t(r.get("source_category_code")),
        "source_category_name": _t(r.get("source_category_name")),
        "title": _t(r.get("title")), "address": _t(r.get("address")), "lng": r.get("lng"), "lat": r.get("lat"),
        "occurred_at": _s(r.get("occurred_at")), "reported_at": _s(r["reported_at"]),
        "received_at": _s(r["received_at"]), "severity": _u8(r["severity"], "severity"),
        "status": _t(r.get("status")), "dispatchable": int(bool(r.get("dispatchable", True))),
        "satisfaction": _t(r.get("satisfaction")), "channel": _t(r.get("channel")),
        "appeal_type": _t(r.get("appeal_type")), "event_source": _t(r.get("event_source")),
        "platform": _t(r.get("platform")), "deadline": _s(r.get("deadline")),
        "device_id": _t(r.get("device_id")), "device_type": _t(r.get("device_type")),
        "value": r.get("value"), "threshold": r.get("threshold"), "unit": _t(r.get("unit")),
        "version": _version(r["version"]), "historical": int(bool(r.get("historical", False))),  # issue 15
    }


def case_row(c: dict[str, Any]) -> Row:
    return {
        "case_id": c["case_id"], "county_code": c["county_code"], "street_code": _t(c.get("street_code")),
        "category": c["category"], "title": _t(c.get("title")), "address": _t(c.get("address")),
        "lng": c.get("lng"), "lat": c.get("lat"), "severity": _u8(c["severity"], "severity"),
        "sources": list(c.get("sources") or []), "report_ids": list(c.get("report_ids") or []),
        "report_count": int(c["report_count"]), "first_seen": _s(c["first_seen"]), "last_seen": _s(c["last_seen"]),
        "status": c["status"], "dispatchable": int(bool(c.get("dispatchable", True))),
        "device_ids": list(c.get("device_ids") or []), "version": _version(c["version"]),
        "updated_at": _s(c["updated_at"]), "historical": int(bool(c.get("historical", False))),  # issue 15
    }


def _detail(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise RowError(f"case event detail is not JSON: {exc}") from exc
    return parsed if isinstance(parsed, dict) else {}


def _deadline(value: Any) -> int | None:
    """Deadlines in event details are epoch ms (as everywhere in the hub); ISO text is accepted too."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return int(value) // 1000
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(str(value)).timestamp())
    except ValueError as exc:
        raise RowError(f"unreadable deadline {value!r}") from exc


def case_event_row(e: dict[str, Any]) -> Row:
    detail = _detail(e.get("detail"))
    return {
        "event_id": e["event_id"], "case_id": e["case_id"], "county_code": e["county_code"],
        "event": e["event"], "at": _s(e["at"]), "agency": _t(e.get("agency")),
        "dispatch_id": _t(e.get("dispatch_id")), "report_id": _t(e.get("report_id")),
        "state": _t(e.get("state")), "detail": _t(e.get("detail")),
        "role": _t(detail.get("role")), "clock": _t(detail.get("clock")),
        "satisfaction": _t(detail.get("satisfaction")),
        "deadline": _deadline(detail.get("resolve_deadline", detail.get("deadline"))),
    }


def dispatch_row(d: dict[str, Any]) -> Row:
    action = d.get("action") or "dispatch"
    return {
        "dispatch_id": d["dispatchId"], "case_id": d["caseId"], "agency": d["agency"],
        "county_code": d["countyCode"], "street_code": _t(d.get("streetCode")), "role": d["role"],
        "reason": d["reason"], "category": d["category"], "severity": _u8(d["severity"], "severity"),
        "report_count": int(d.get("reportCount") or 1), "sources": list(d.get("sources") or []),
        "dispatched_at": _s(d["dispatchedAt"]), "sign_deadline": _s(d.get("signDeadline")),
        "deadline": _s(d.get("resolveDeadline")), "escalation_level": _u8(d.get("escalationLevel"), "escalationLevel"),
        "previous_dispatch_id": _t(d.get("previousDispatchId")), "action": action,
        # A withdrawal of a dispatch id replaces the dispatch (ReplacingMergeTree version).
        "version": 1 if action == "withdraw" else 0,
    }


def device_event_row(e: dict[str, Any]) -> Row:
    """Issue 15: one DeviceEvent (fault / low_battery / selftest / offline / online) -> device_events."""
    return {
        "event_id": e["event_id"], "device_id": e["device_id"], "device_type": _t(e.get("device_type")),
        "event": e["event_type"], "at": _s(e["at"]), "county_code": _t(e.get("county_code")),
        "street_code": _t(e.get("street_code")), "address": _t(e.get("address")), "owner": _t(e.get("owner")),
        "detail": _t(e.get("detail")),
    }


def dead_letter_row(partition: int, offset: int, key: bytes | None, value: bytes,
                    headers: list[tuple[str, bytes]], timestamp_ms: int | None) -> Row:
    """A dead letter for analysts: personal data masked, plus the sha256 of the original bytes.

    Rejected documents carry the same names and phones as accepted ones, and every analyst reads
    this table; the original bytes stay only in the Kafka ``dlq`` (hub principal only,
    docs/security.md), and ``extra.value_sha256`` proves which record a row stands for.
    """
    info = parse_dead_letter_headers(headers)
    at_ms = info.at if info.at is not None else (timestamp_ms or 0)
    text = value.decode("utf-8", "replace")
    try:
        names = pii.names_in(json.loads(text))
    except (ValueError, RecursionError):
        names = ()
    extra = {k: pii.mask_text(v, names) for k, v in info.extra.items()}
    if "sha256" not in extra:  # a reference (truncated) dead letter already names the original's hash
        extra["value_sha256"] = hashlib.sha256(value).hexdigest()
    return {
        "dlq_partition": partition, "dlq_offset": offset, "stage": info.stage,
        "reason": pii.mask_text(info.reason, names),  # reasons may quote the input
        "source_topic": _t(info.topic), "source_partition": info.partition, "source_offset": info.offset,
        "key": pii.mask_text((key or b"").decode("utf-8", "replace"), names),
        "value": pii.mask_text(text, names),
        "extra": json.dumps(extra, ensure_ascii=False, sort_keys=True), "at": at_ms // 1000,
    }


def _version(value: Any) -> int:
    number = int(value)
    if number < 0:
        raise RowError(f"version {number} is negative")
    return number


_AVRO: dict[str, tuple[str, Callable[[dict[str, Any]], Row]]] = {
    REPORTS: ("Report", report_row),
    CASES: ("Case", case_row),
    CASE_EVENTS: ("CaseEvent", case_event_row),
    DISPATCHES: ("Dispatch", dispatch_row),
    DEVICE_EVENTS: ("DeviceEvent", device_event_row),
}


@dataclass(frozen=True)
class TopicMap:
    """Which table a physical topic feeds, in one namespace."""

    settings: Settings

    def table_for(self, topic: str) -> str | None:
        s = self.settings
        if topic == s.topic(topics.REPORTS_LINKED):
            return REPORTS
        if topic == s.topic(topics.CASES):
            return CASES
        if topic == s.topic(topics.CASE_EVENTS):
            return CASE_EVENTS
        if topic == s.topic(topics.DLQ):
            return DEAD_LETTERS
        if topic == s.topic(topics.DISPATCHES):
            return DISPATCHES
        if topic == s.topic(topics.DEVICE_EVENTS):
            return DEVICE_EVENTS
        return None

    #: The fact topics (contract names).  Dispatches come from ``dispatches``, routing's copy of
    #: every agency's dispatch, not from the ``dispatch.<agency>`` topics: subscribing to those
    #: would need a pattern, which fetches the whole cluster's metadata (gridhub/core/topics.py).
    CONTRACT_TOPICS = (topics.REPORTS_LINKED, topics.CASES, topics.CASE_EVENTS, topics.DISPATCHES, topics.DLQ,
                       topics.DEVICE_EVENTS)

    @property
    def topics(self) -> list[str]:
        """The physical fact topics the sink subscribes to, by name."""
        return [self.settings.topic(name) for name in self.CONTRACT_TOPICS]


def to_row(table: str, value: bytes) -> Row:
    """Decode an Avro fact into its row; raises :class:`RowError` with the reason."""
    schema, build = _AVRO[table]
    try:
        record = codec(schema).decode(value)
    except DecodeError as exc:
        raise RowError(str(exc)) from exc
    try:
        return build(record)
    except RowError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise RowError(f"{schema} record cannot become a {table} row: {exc!r}") from exc
