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
from typing import Any, Iterable, Iterator, Mapping

from gridhub.core.timeutil import BEIJING
from gridhub.evaluation.bcubed import BCubed, bcubed
from streams.fusion.config import FusionConfig, load_config
from streams.fusion.engine import FusionEngine
from streams.fusion.state import MemoryKV

Item = tuple[str, str]  # (source, source_ref)


@dataclass
class Row:
    """One report as the explanation shows it: enough to read a miss without opening the files."""

    source: str
    ref: str
    time: str
    category: str
    address: str
    text: str

    def line(self) -> str:
        return f"{self.source[:6]:6} {self.ref[-22:]:22} {self.time} {self.category[:16]:16} " \
               f"{self.address[:20]:20} | {self.text}"


@dataclass
class Confusion:
    """A case that merged several incidents, or an incident split over several cases.

    ``parts`` lists (incident or case id, how many items); ``rows`` every item of the group
    (grouped by part, side by side); ``cost`` the B-cubed F1 points the confusion costs, which
    is what the list is sorted by.
    """

    key: str
    parts: list[tuple[str, int]]
    examples: list[str]
    rows: list[tuple[str, Row]] = field(default_factory=list)
    cost: float = 0.0


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
    #: labelled items scored / labelled items (the dev-set format scores only mapped items)
    coverage: float = 1.0
    #: records labelled as not an incident (heartbeat, maintenance, consultation) that were
    #: linked to a case shared with another item: must be 0
    non_incident_linked: list[str] = field(default_factory=list)
    #: B-cubed per group of items (e.g. the dev set's modules), when the caller gives groups
    by_group: dict[str, BCubed] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "precision": round(self.scores.precision, 4), "recall": round(self.scores.recall, 4),
            "f1": round(self.scores.f1, 4), "items": self.scores.items, "coverage": round(self.coverage, 4),
            "records": self.records,
            "reports": self.reports, "rejected": self.rejected, "unlabelled": self.unlabelled,
            "cases": self.cases, "incidents": self.incidents,
            "non_incident_linked": self.non_incident_linked,
            "by_group": {g: {"precision": round(s.precision, 4), "recall": round(s.recall, 4),
                             "f1": round(s.f1, 4), "items": s.items} for g, s in sorted(self.by_group.items())},
            "merged": [{"case": c.key, "incidents": c.parts, "examples": c.examples, "cost": round(c.cost, 4)}
                       for c in self.merged],
            "split": [{"incident": c.key, "cases": c.parts, "examples": c.examples, "cost": round(c.cost, 4)}
                      for c in self.split],
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


def read_devset(directory: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                dict[str, dict[str, Any]], dict[str, str]]:
    """A labelled set in the dev set's layout: records, labels, registry and incident -> module.

    ``records.jsonl`` and ``labels.jsonl`` are required; ``registry.jsonl`` (device registry) and
    ``incidents.json`` (per incident: ``module``, used to report the score per module, which is
    how a rule tuned on some modules is checked on the others) are optional.
    """
    root = Path(directory)
    records = list(read_jsonl(root / "records.jsonl"))
    labels = list(read_jsonl(root / "labels.jsonl"))
    registry: dict[str, dict[str, Any]] = {}
    if (root / "registry.jsonl").exists():
        registry = {str(r["deviceId"]): r for r in read_jsonl(root / "registry.jsonl")}
    groups: dict[str, str] = {}
    if (root / "incidents.json").exists():
        incidents = json.loads((root / "incidents.json").read_text(encoding="utf-8"))
        groups = {str(k): str(v.get("module") or "") for k, v in incidents.items() if isinstance(v, dict)}
    return records, labels, registry, groups


def _fmt_time(ms: int | None) -> str:
    if not ms:
        return "-" * 11
    return datetime.fromtimestamp(ms / 1000, BEIJING).strftime("%d %H:%M:%S")


def _row(report: dict[str, Any]) -> Row:
    text = " ".join(x for x in (report.get("title"), report.get("text")) if x).replace("\n", " ")
    return Row(source=str(report["source"]), ref=str(report["source_ref"]),
               time=_fmt_time(report.get("occurred_at") or report.get("reported_at")),
               category=str(report.get("category") or "other"), address=str(report.get("address") or "-"),
               text=text[:60])


@dataclass
class Replay:
    """What the hub made of a record stream: item -> case, item -> last report, case -> last state."""

    mapping: dict[Item, str | None] = field(default_factory=dict)
    reports: dict[Item, dict[str, Any]] = field(default_factory=dict)
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: dict[Item, int] = field(default_factory=dict)  # index of the first delivery
    first_reports: dict[Item, dict[str, Any]] = field(default_factory=dict)  # the first delivery's report
    rejected: Counter[str] = field(default_factory=Counter)  # reason (first 80 characters) -> documents
    records: int = 0  # records read, registry and lifecycle ones included
    report_count: int = 0  # reports the normaliser produced, redeliveries included


def replay(records: Iterable[Mapping[str, Any]], *, config: FusionConfig | None = None,
           registry: Mapping[str, Mapping[str, Any]] | None = None) -> Replay:
    """Feed ``records`` (``{"source", "doc"}`` in delivery order) through normalize -> FusionEngine."""
    from streams.ingest.normalize import Rejected, normalize

    engine = FusionEngine(config or load_config())
    kv = MemoryKV()
    devices: dict[str, Any] = {str(k): dict(v) for k, v in (registry or {}).items()}
    out = Replay()
    clock = 0
    for n, rec in enumerate(records):
        out.records += 1
        source, doc = rec.get("source"), rec.get("doc")
        if not isinstance(source, str) or not isinstance(doc, dict):
            raise ValueError(f"record {n + 1}: expected {{'source': str, 'doc': object}}")
        if source == "registry":
            devices[str(doc["deviceId"])] = doc
            continue
        if source == "lifecycle":
            case_id = out.mapping.get((str(doc["source"]), str(doc["source_ref"])))
            if case_id:
                result = engine.process_lifecycle(kv, {"case_id": case_id, "event": doc["event"],
                                                       "at": int(doc["at"]), "state": doc.get("state")})
                for case in result.cases:
                    out.cases[case["case_id"]] = case
            continue
        # Receipt time: the given delivery time, else the document's own time, never going back
        # (versions of one source record must grow with the deliveries).
        at = rec.get("at_ms") or doc_time_ms(source, doc) or clock
        clock = max(clock + 1, int(at))
        raw = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        try:
            norm = normalize(source, raw, registry=devices, received_at_ms=clock, pii_key=b"gridhub-eval")
        except Rejected as exc:
            out.rejected[exc.reason.split("(")[0][:80]] += 1
            continue
        if norm.report is None:
            continue
        report = norm.report
        out.report_count += 1
        item = (report["source"], report["source_ref"])
        out.order.setdefault(item, n)
        out.first_reports.setdefault(item, report)
        result = engine.process_report(kv, report)
        for case in result.cases:
            out.cases[case["case_id"]] = case
        if result.linked:
            out.mapping[item] = result.linked[-1]["case_id"]
        else:
            out.mapping.setdefault(item, None)
        out.reports[item] = report
    return out



def run(records: Iterable[dict[str, Any]], labels: Iterable[dict[str, Any]], *,
        config: FusionConfig | None = None, registry: dict[str, dict[str, Any]] | None = None,
        worst: int = 5, groups: dict[str, str] | None = None) -> EvalResult:
    """Feed ``records`` through normalize -> FusionEngine and score the mapping against ``labels``.

    Two label formats: the simulator's (``incident`` null = must stay alone; every label is an
    item, an unmapped item is a singleton) and the dev set's, with ``kind``: only ``kind ==
    "incident"`` labels are items, only the items the hub mapped to a case are scored and
    ``coverage`` says how many that was (README of the dev set, "How to score"); a record of
    another kind linked into a case with other records is listed in ``non_incident_linked``.
    ``groups`` maps an incident label to a group (the dev set's module) for per-group scores.
    """
    rp = replay(records, config=config, registry=registry)
    mapping = rp.mapping
    info = {item: _row(report) for item, report in rp.first_reports.items()}
    n_records, n_reports, n_rejected, reasons = rp.records, rp.report_count, sum(rp.rejected.values()), rp.rejected
    label_list = list(labels)
    # the dev set's kinds (incident / maintenance / heartbeat / consultation); the simulator's
    # labels carry its own record kinds (report, update, ...) and are scored the old way
    kinds = any(lab.get("kind") == "incident" for lab in label_list)
    truth: dict[Item, str] = {}
    other_kind: dict[Item, str] = {}
    for lab in label_list:
        item = (str(lab["source"]), str(lab["source_ref"]))
        if kinds and lab.get("kind") != "incident":
            other_kind[item] = str(lab.get("kind"))
            continue
        truth[item] = lab["incident"] if lab.get("incident") is not None else f"none:{item[0]}:{item[1]}"
    all_items = len(truth)
    if kinds:
        truth = {item: inc for item, inc in truth.items() if mapping.get(item)}
    predicted = {item: (mapping.get(item) or f"none:{item[0]}:{item[1]}") for item in truth}
    unlabelled = sum(1 for item in mapping if item not in truth and item not in other_kind)
    case_sizes = Counter(c for c in mapping.values() if c)
    non_incident = sorted(f"{k} {i[0]}:{i[1]}" for i, k in other_kind.items()
                          if case_sizes[mapping.get(i) or ""] > 1)
    scores = bcubed(truth, predicted)
    by_group: dict[str, BCubed] = {}
    if groups:
        for name in sorted({groups.get(t, "") for t in truth.values()}):
            sub = [i for i in truth if groups.get(truth[i], "") == name]
            by_group[name or "(none)"] = bcubed({i: truth[i] for i in sub}, {i: predicted[i] for i in sub})
    n = max(1, len(truth))
    by_case: dict[str, Counter[str]] = defaultdict(Counter)
    by_incident: dict[str, Counter[str]] = defaultdict(Counter)
    members: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for item, case in predicted.items():
        if case.startswith("none:") and truth[item].startswith("none:"):
            continue
        by_case[case][truth[item]] += 1
        by_incident[truth[item]][case] += 1
        members[(case, truth[item])].append(item)

    def cost(parts: Counter[str]) -> float:
        total = sum(parts.values())
        return sum(c * (1 - c / total) for c in parts.values()) / n

    def rows(pairs: list[tuple[str, str]]) -> list[tuple[str, Row]]:
        out: list[tuple[str, Row]] = []
        for case, inc in pairs:
            for item in members[(case, inc)]:
                out.append((case, info.get(item) or Row(item[0], item[1], "-", "-", "(no report)", "")))
        return out

    def example(case: str, inc: str) -> str:
        item = members[(case, inc)][0]
        r = info.get(item)
        return f"{item[0]}:{item[1]} " + (f"{r.category} {r.address[:24]} {r.text[:40]}" if r else "(no report)")

    merged = sorted(((c, inc) for c, inc in by_case.items() if len(inc) > 1), key=lambda x: -cost(x[1]))
    split = sorted(((i, cs) for i, cs in by_incident.items() if len(cs) > 1), key=lambda x: -cost(x[1]))
    return EvalResult(
        scores=scores, records=n_records, reports=n_reports, rejected=n_rejected, unlabelled=unlabelled,
        cases=len({c for c in predicted.values() if not c.startswith("none:")}),
        incidents=len({t for t in truth.values() if not t.startswith("none:")}),
        merged=[Confusion(c, inc.most_common(), [example(c, i) for i in inc][:4],
                          [(i, r) for i, (_, r) in zip([i for i, _ in inc.most_common() for _ in members[(c, i)]],
                                                       rows([(c, i) for i, _ in inc.most_common()]))],
                          cost(inc)) for c, inc in merged[:worst]],
        split=[Confusion(i, cs.most_common(), [example(c, i) for c in cs][:4],
                         rows([(c, i) for c, _ in cs.most_common()]), cost(cs)) for i, cs in split[:worst]],
        reject_reasons=reasons, coverage=len(truth) / all_items if all_items else 1.0,
        non_incident_linked=non_incident, by_group=by_group,
    )
