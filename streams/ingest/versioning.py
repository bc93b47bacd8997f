"""Report versions that order deliveries the way the sources mean them (issue 13, item 7).

A source redelivers documents: the same document again (a retry, a re-export), or an older
version after a newer one (a 12345 export that still holds yesterday's 待派发 row).  The
receipt time alone cannot tell them apart: both arrive *later*.  So a report's ``version``
is built from what the document itself says:

* 12345 work orders: the status progression 待派发 < 已派发 < 办理中 < 已办结 < 已回访
  (CONTRACTS 1.2), then the receipt time among versions of one status.  An order only goes
  back to an earlier status when a later document explicitly re-opens it
  (:data:`REOPEN_WORDS`, e.g. 重新办理 / 退回重办): fusion counts those cycles.
* four platforms: the platform's own status text, ranked by the words of
  :data:`FOUR_PLATFORMS_RANKS` (待受理 < 已签收 < 处置中 < 已办结 < 已结案), then the
  document's ``reportTime``.  An unknown status ranks first (never overrides a known one).
* sensors: an event is never updated (its ``source_ref`` holds its own time), so the receipt
  time stays the version.

``version = rank << RANK_SHIFT | time``: the rank dominates, milliseconds since 1970 fit in
42 bits until 2109.  Identical documents are recognised by fusion with a content fingerprint
(:func:`fingerprint`), not by the version: a redelivered 12345 document gets a new receipt
time and hence a new number, but the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: bits of the time part of a version: 2**42 ms is the year 2109
RANK_SHIFT = 42
#: fusion adds re-opening cycles above the rank (4 bits: ranks 0..15)
CYCLE_SHIFT = 46

#: 12345 statuses in order (CONTRACTS 1.2 ``status``)
HOTLINE_RANKS = {"待派发": 0, "已派发": 1, "办理中": 2, "已办结": 3, "已回访": 4}
#: four-platforms status words, checked in order (the first that occurs decides); the texts
#: are each platform's own (CONTRACTS 1.1), so the words are the common ones of the 2021 and
#: legacy platforms: received / signed / handling / resolved / closed.
FOUR_PLATFORMS_RANKS: tuple[tuple[str, int], ...] = (
    ("结案", 4), ("归档", 4), ("已评价", 4), ("已核查", 4), ("回访", 4),
    ("办结", 3), ("已处置", 3), ("处置完毕", 3), ("已完成", 3),
    ("处置中", 2), ("办理中", 2), ("处理中", 2), ("整改中", 2),
    ("已签收", 1), ("已受理", 1), ("已派遣", 1), ("已分派", 1), ("已派发", 1), ("已立案", 1),
    ("待处置", 0), ("待受理", 0), ("待签收", 0), ("上报", 0),
)
#: words of a status that explicitly re-opens a finished order
REOPEN_WORDS = ("重新办理", "重办", "退回重办", "重新派发", "重启", "重新打开", "已重开")
#: rank from which an order counts as finished (已办结 and later)
FINISHED_RANK = 3


def status_rank(source: str, status: str | None) -> int:
    """The rank of a status text in its source's progression (0 when unknown)."""
    if not status:
        return 0
    text = status.strip()
    if source == "hotline-12345":
        return HOTLINE_RANKS.get(text, 0)
    if source == "four-platforms":
        return next((rank for word, rank in FOUR_PLATFORMS_RANKS if word in text), 0)
    return 0


def is_reopen(status: str | None) -> bool:
    return bool(status) and any(w in str(status) for w in REOPEN_WORDS)


def version_of(report: dict[str, Any]) -> int:
    """The version of a normalised Report (see the module docstring)."""
    source = str(report["source"])
    received = int(report["received_at"])
    if source == "hotline-12345":
        return (status_rank(source, report.get("status")) << RANK_SHIFT) | received
    if source == "four-platforms":
        return (status_rank(source, report.get("status")) << RANK_SHIFT) | int(report["reported_at"])
    return received


def rank_of(version: int) -> int:
    return (int(version) >> RANK_SHIFT) & 0xF


#: Report fields that say when / how a document was received, not what it says
_DELIVERY_FIELDS = frozenset({"version", "received_at", "case_id"})


def fingerprint(report: dict[str, Any]) -> str:
    """A content fingerprint of a normalised Report: equal for an identical document
    however often and whenever it is delivered (the receipt time and version left out)."""
    content = {k: v for k, v in report.items() if k not in _DELIVERY_FIELDS}
    raw = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:24]
