"""Fusion quality on labelled traffic: the real normaliser and the real engine, in process.

Input files (JSON Lines, what ``gridhub simulate --records/--labels`` writes):

* records, in delivery order: ``{"source": <source id>, "doc": {...}}`` with the raw
  document of CONTRACTS.md section 1, optionally ``"at_ms"`` (delivery time).  Two extra
  record types drive what is not a source document:
  ``{"source": "registry", "doc": {<device registry record>}}`` adds a device to the registry
  the normaliser consults, and
  ``{"source": "lifecycle", "doc": {"source": ..., "source_ref": ..., "event": "resolved"|"closed"|"reopened", "at": <epoch ms>}}``
  says that routing resolved / closed / reopened the case that record is linked to (what
  ``case-lifecycle`` carries in production), so later reports at that place open a new case.
* labels: ``{"source", "source_ref", "incident"}``; ``incident`` null means the record must
  not become a report of any case (heartbeats, maintenance events, orphan recoveries).

Every labelled record is one item; its predicted cluster is the case of its *last* delivery
(what ``SELECT ... FROM reports FINAL`` shows), or a singleton when it has none.  Null-labelled
records are singletons in the truth, so linking one to a case costs precision.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from gridhub.core.timeutil import BEIJING
from gridhub.evaluation.bcubed import BCubed, bcubed
from streams.fusion.config import FusionConfig, load_config
from streams.fusion.engine import FusionEngine
from streams.fusion.state import MemoryKV

Item = tuple[str, str]  # (source, source_ref)


@dataclass
class Confusion:
    """A case that merged several incidents, or an incident split over several cases."""

    key: str
    parts: list[tuple[str, int]]  # (incident or case id, how many reports)
    examples: list[str]


@dataclass
class EvalResult:
    scores: BCubed
    records: int
    reports: int
    rejected: int
    unlabelled: int
    cases: int
    incidents: int
    merged: list[Confusion] = field(default_factory=list)
    split: list[Confusion] = field(default_factory=list)
    reject_reasons: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "precision": round(self.scores.precision, 4), "recall": round(self.scores.recall, 4),
            "f1": round(self.scores.f1, 4), "items": self.scores.items, "records": self.records,
            "reports": self.reports, "rejected": self.rejected, "unlabelled": self.unlabelled,
            "cases": self.cases, "incidents": self.incidents,
            "merged": [{"case": c.key, "incidents": c.parts, "examples": c.examples} for c in self.merged],
            "split": [{"incident": c.key, "cases": c.parts, "examples": c.examples} for c in self.split],
            "reject_reasons": dict(self.reject_reasons.most_common(10)),
        }


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not JSON: {exc}") from None


def read_registry(path: str | Path) -> Iterator[dict[str, Any]]:
    """Device registry records from CSV (header = CONTRACTS 1.3 field names) or JSON Lines."""
    if str(path).endswith(".csv"):
        import csv

        with open(path, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                rec: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
                for name in ("lng", "lat"):
                    if name in rec:
                        rec[name] = float(rec[name])
                if "heartbeatSeconds" in rec:
                    rec["heartbeatSeconds"] = int(float(rec["heartbeatSeconds"]))
                yield rec
    else:
        yield from read_jsonl(path)


def doc_time_ms(source: str, doc: dict[str, Any]) -> int | None:
    """The source's own timestamp of a document, to give deliveries a plausible receipt time."""
    try:
        if source == "four-platforms":
            return int(doc["reportTime"])
        if source == "hotline-12345":
            return int(datetime.strptime(doc["acceptTime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
                       .timestamp() * 1000)
        if source == "sensors":
            return int(datetime.fromisoformat(doc["eventTime"]).timestamp() * 1000)
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _source_ref(source: str, doc: dict[str, Any]) -> str | None:
    if source == "sensors":
        if "deviceId" in doc and "eventTime" in doc:
            return f"{doc['deviceId']}@{doc['eventTime']}"
        return None
    key = {"four-platforms": "eventId", "hotline-12345": "orderNo"}.get(source)
    return str(doc[key]) if key and key in doc else None


def run(records: Iterable[dict[str, Any]], labels: Iterable[dict[str, Any]], *,
        config: FusionConfig | None = None, registry: dict[str, dict[str, Any]] | None = None,
        worst: int = 5) -> EvalResult:
    """Feed ``records`` through normalize -> FusionEngine and score the mapping against ``labels``."""
    from streams.ingest.normalize import Rejected, normalize

    engine = FusionEngine(config or load_config())
    kv = MemoryKV()
    devices: dict[str, dict[str, Any]] = dict(registry or {})
    mapping: dict[Item, str | None] = {}
    info: dict[Item, str] = {}
    clock = 0
    n_records = n_reports = n_rejected = 0
    reasons: Counter[str] = Counter()
    for rec in records:
        n_records += 1
        source, doc = rec.get("source"), rec.get("doc")
        if not isinstance(source, str) or not isinstance(doc, dict):
            raise ValueError(f"record {n_records}: expected {{'source': str, 'doc': object}}")
        if source == "registry":
            devices[str(doc["deviceId"])] = doc
            continue
        if source == "lifecycle":
            case_id = mapping.get((str(doc["source"]), str(doc["source_ref"])))
            if case_id:
                engine.process_lifecycle(kv, {"case_id": case_id, "event": doc["event"], "at": int(doc["at"]),
                                              "state": doc.get("state")})
            continue
        # Receipt time: the given delivery time, else the document's own time, never going back
        # (the normaliser's version is the receipt time, so later deliveries must be later).
        at = rec.get("at_ms") or doc_time_ms(source, doc) or clock
        clock = max(clock + 1, int(at))
        raw = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        try:
            out = normalize(source, raw, registry=devices, received_at_ms=clock, pii_key=b"gridhub-eval")
        except Rejected as exc:
            n_rejected += 1
            reasons[exc.reason.split("(")[0][:80]] += 1
            continue
        if out.report is None:
            continue
        n_reports += 1
        result = engine.process_report(kv, out.report)
        item = (out.report["source"], out.report["source_ref"])
        if result.linked:
            mapping[item] = result.linked[-1]["case_id"]
        else:
            mapping.setdefault(item, None)
        info[item] = f"{out.report['category']} {(out.report.get('address') or '')[:24]} {out.report['text'][:40]}"
    truth: dict[Item, str] = {}
    for lab in labels:
        item = (str(lab["source"]), str(lab["source_ref"]))
        truth[item] = lab["incident"] if lab.get("incident") is not None else f"none:{item[0]}:{item[1]}"
    predicted = {item: (mapping.get(item) or f"none:{item[0]}:{item[1]}") for item in truth}
    unlabelled = sum(1 for item in mapping if item not in truth)
    scores = bcubed(truth, predicted)
    by_case: dict[str, Counter[str]] = defaultdict(Counter)
    by_incident: dict[str, Counter[str]] = defaultdict(Counter)
    examples: dict[tuple[str, str], str] = {}
    for item, case in predicted.items():
        if case.startswith("none:") and truth[item].startswith("none:"):
            continue
        by_case[case][truth[item]] += 1
        by_incident[truth[item]][case] += 1
        examples.setdefault((case, truth[item]), f"{item[0]}:{item[1]} {info.get(item, '(no report)')}")
    merged = sorted(((c, inc) for c, inc in by_case.items() if len(inc) > 1),
                    key=lambda x: -sum(x[1].values()) + max(x[1].values()))
    split = sorted(((i, cs) for i, cs in by_incident.items() if len(cs) > 1),
                   key=lambda x: -sum(x[1].values()) + max(x[1].values()))
    return EvalResult(
        scores=scores, records=n_records, reports=n_reports, rejected=n_rejected, unlabelled=unlabelled,
        cases=len({c for c in predicted.values() if not c.startswith("none:")}),
        incidents=len({t for t in truth.values() if not t.startswith("none:")}),
        merged=[Confusion(c, inc.most_common(), [examples[(c, i)] for i in inc][:4]) for c, inc in merged[:worst]],
        split=[Confusion(i, cs.most_common(), [examples[(c, i)] for c in cs][:4]) for i, cs in split[:worst]],
        reject_reasons=reasons,
    )
