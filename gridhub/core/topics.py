"""The contract's constants (CONTRACTS.md), defined once: topic names, the sources and their
keys, the feedback actions.

Topic names are the ones in the empty namespace; ``Settings.topic`` prefixes them for another
namespace."""

from __future__ import annotations

SOURCES = ("four-platforms", "hotline-12345", "sensors")
RAW = {source: f"raw.{source}" for source in SOURCES}
RAW_KEY_FIELD = {"four-platforms": "eventId", "hotline-12345": "orderNo", "sensors": "deviceId"}

REGISTRY_DEVICES = "registry.devices"   # compacted, keyed by deviceId
REPORTS = "reports"                     # Avro Report, keyed by county code
REPORTS_LINKED = "reports.linked"       # Avro Report with case_id set by fusion, keyed by case_id
CASE_LIFECYCLE = "case-lifecycle"       # Avro CaseEvent (resolved/closed/reopened), keyed by county code: tells fusion
DEVICE_EVENTS = "device-events"         # Avro DeviceEvent, keyed by deviceId
CASES = "cases"                         # Avro Case, compacted, keyed by caseId
CASE_EVENTS = "case-events"             # Avro CaseEvent, keyed by caseId
#: Every Dispatch to every agency (the copy on ``dispatch.<agency>`` is the agency's), keyed by caseId:
#: the ClickHouse sink reads this one topic by name instead of every agency topic by pattern (a
#: pattern subscription fetches the whole cluster's metadata, and rebalances on each new agency).
#: The hub's own: agencies are never granted it (gridhub/infra/secure.py grants dispatch.<agency> only).
DISPATCHES = "dispatches"
FEEDBACK = "feedback"                   # JSON or Avro Feedback, keyed by caseId; written by the hub only
#: Header a hub process puts on every ``feedback`` record: the agency it verified (the gateway's
#: bearer token, or the relay's ``feedback.<county>.<agency>`` topic); routing believes nothing else.
FEEDBACK_AGENCY_HEADER = "gridhub.agency"
#: How it was verified: ``gateway`` or ``topic:<physical topic>``.
FEEDBACK_VIA_HEADER = "gridhub.via"
DLQ = "dlq"                             # original bytes + error.* headers


#: What an agency may say about a dispatch on ``feedback`` (CONTRACTS §2): 签收, 退单, 进展, 延期, 办结.
FEEDBACK_ACTIONS = ("sign", "return", "progress", "extend", "resolve")


def dispatch_topic(agency: str) -> str:
    """``330502.zhzf`` -> ``dispatch.330502.zhzf``."""
    return f"dispatch.{agency}"


def feedback_topic(agency: str) -> str:
    """``330502.zhzf`` -> ``feedback.330502.zhzf``: the agency's own feedback topic (CONTRACTS.md 5)."""
    return f"{FEEDBACK}.{agency}"
