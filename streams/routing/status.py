"""Replies to the source systems: ``status.hotline-12345`` and ``status.four-platforms``.

12345 answers the citizen and does its 回访 from these replies; a township's
four platforms shows the event's progress.  One JSON record per change of
the reply state, keyed by the source's own id (``orderNo`` / ``eventId``,
CONTRACTS.md section 5)::

    {"statusId", "source", "sourceRef", "caseId", "state", "stateCode", "leadAgency",
     "deadline", "at", "replyText", "reason"}

``state`` is one of 受理 (accepted: the report is linked to a case), 已派发,
已签收, 办理中, 已办结 and 退回 (the lead agency sent the case back, ``reason``
says why; a 已派发 to the next agency follows).  Every source record hears 受理
first, even one that joins a case already further along.  ``replyText`` is the lead
agency's 办结 note, masked (phones, ID numbers, names) before it was stored.

Pure: :func:`add_replies` reads the routing state after a transition and
its effects and appends the replies to ``fx.status``; the state remembers
what each source record was last told (``replied``), so a redelivered
input re-sends the same replies (same ``statusId``) and a new input sends
only what changed.  A shadow namespace never writes these topics
(:mod:`gridhub.core.shadow`; the agent checks).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Mapping

STATUS_TOPICS = {"hotline-12345": "status.hotline-12345", "four-platforms": "status.four-platforms"}
REPLY_STATES = ("受理", "已派发", "已签收", "办理中", "已办结", "退回")
#: lifecycle state -> the reply state the source systems know
REPLY = {"reported": "受理", "dispatched": "已派发", "signed": "已签收", "in_progress": "办理中",
         "resolved": "已办结", "reviewed": "已办结", "closed": "已办结"}
_NS = uuid.UUID("0b7f3c1e-2d49-4f8a-a1c6-5e9d7b2a4c10")  # gridhub status ids (fixed forever: ids must not change)
_REFS_KEEP = 200  # source records remembered per case; a large incident gathers dozens of 12345 orders


def status_id(source: str, ref: str, state: str, marker: str) -> str:
    return str(uuid.uuid5(_NS, f"status|{source}|{ref}|{state}|{marker}"))


def remember_ref(state: dict[str, Any], source: str, ref: str) -> bool:
    """Record that source record ``ref`` belongs to the case; True when it is new."""
    if source not in STATUS_TOPICS:
        return False
    refs = state.setdefault("refs", {})
    known = refs.setdefault(source, [])
    if ref in known:
        return False
    known.append(ref)
    del known[:-_REFS_KEEP]
    return True


def _lead(state: Mapping[str, Any]) -> Mapping[str, Any] | None:
    lead = state.get("lead")
    return state.get("dispatches", {}).get(lead) if lead else None


def _record(state: Mapping[str, Any], source: str, ref: str, reply: str, marker: str, at: int,
            **extra: Any) -> dict[str, Any]:
    lead = _lead(state)
    return {
        "statusId": status_id(source, ref, reply, marker),
        "source": source,
        "sourceRef": ref,
        "caseId": state["case_id"],
        "state": reply,
        "stateCode": state["status"] if reply != "退回" else "returned",
        "leadAgency": lead["agency"] if lead else None,
        "deadline": lead.get("resolve_deadline") if lead else None,
        "at": at,
        "replyText": state.get("reply_text") if reply == "已办结" else None,
        "reason": None,
        **extra,
    }


def add_replies(state: dict[str, Any], fx: Any, at: int) -> None:
    """Append to ``fx.status`` what each known source record has not been told yet."""
    reply = REPLY.get(state.get("status") or "")
    refs: dict[str, list[str]] = state.get("refs") or {}
    if reply is None or not refs:
        return
    returns = []
    for ev in fx.events:
        if ev["event"] == "returned":
            detail = json.loads(ev.get("detail") or "{}")
            if detail.get("role") == "lead":
                returns.append((ev, detail.get("reason")))
    marker = f"{state.get('lead') or ''}"
    replied: dict[str, str] = state.setdefault("replied", {})
    for source, ids in refs.items():
        for ref in ids:
            slot = f"{source}|{ref}"
            if slot not in replied and reply != "受理":  # a source record always hears 受理 first
                fx.status.append(_record(state, source, ref, "受理", "", at))
            for ev, reason in returns:
                fx.status.append(_record(state, source, ref, "退回", ev["dispatch_id"] or "", int(ev["at"]),
                                         reason=reason))
            told = f"{reply}|{marker}"
            if replied.get(slot) != told or returns:
                fx.status.append(_record(state, source, ref, reply, marker, at))
                replied[slot] = told


def encode(record: Mapping[str, Any]) -> tuple[str, bytes, bytes]:
    """(contract topic, key, value) of one reply."""
    return (STATUS_TOPICS[record["source"]], str(record["sourceRef"]).encode("utf-8"),
            json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8"))
