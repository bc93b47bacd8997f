"""Routing and category quality on labelled traffic: normaliser, fusion and the routing rules, in process.

Scored exactly as the dev set's README "How to score" says (``../shared/devset/README.md``):

* **Routing.** For each incident label take the case that holds most of its items (ties: the
  case of its earliest item).  Lead accuracy = share of incidents whose case has a ``lead``
  dispatch to ``<county_code>.<expected_lead>``; also-recall = share of all ``expected_also``
  agencies (pooled over incidents) found among that case's dispatches.
* **Category accuracy per source**: every item (distinct ``(source, source_ref)`` labelled
  ``incident``) compares its report's resolved category (last delivery) with its incident's label
  category mapped to the hub taxonomy.  That mapping belongs to the labelled set, not to the
  product (``tests/data/devset/category_map.json``): a label may map to several hub codes when the
  hub's taxonomy is finer than the labels.

The case's dispatches are what the rules (``streams/routing/rules.py``) plan for the case's final
state (category, county, township, sources, severity), as the routing service does when it
first routes a case; a case that is not dispatchable (12345 consultations) gets none.  A case
re-routed in production may also have had earlier lead dispatches that were withdrawn; this
evaluation scores the final routing only.

The replay is :func:`gridhub.evaluation.fusion.replay` (real ``normalize`` then ``FusionEngine``,
delivery order), the loop the fusion evaluation scores too; it keeps every report and case, which
the routing and category scores need.  :func:`score` is pure, so it is unit-tested on hand-made data.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from gridhub.evaluation.fusion import Replay, replay
from streams.fusion.config import FusionConfig
from streams.routing.rules import RuleSet

Item = tuple[str, str]  # (source, source_ref)


# --------------------------------------------------------------------------- scoring
@dataclass
class IncidentRouting:
    incident: str
    summary: str
    county: str
    expected_lead: str  # agency id <county>.<code>
    expected_also: list[str]
    case_id: str | None
    category: str | None
    lead: str | None
    agencies: list[str]
    items: int
    texts: list[str]

    @property
    def lead_ok(self) -> bool:
        return self.lead == self.expected_lead

    @property
    def also_found(self) -> list[str]:
        return [a for a in self.expected_also if a in self.agencies]


@dataclass
class CategoryMiss:
    source: str
    source_ref: str
    incident: str
    expected: list[str]
    got: str | None
    source_category: str | None
    text: str


@dataclass
class RoutingResult:
    incidents: list[IncidentRouting]
    category: dict[str, tuple[int, int]]  # source -> (right, items)
    category_misses: list[CategoryMiss]

    @property
    def lead_accuracy(self) -> float:
        return sum(r.lead_ok for r in self.incidents) / len(self.incidents) if self.incidents else 1.0

    @property
    def also_recall(self) -> float:
        total = sum(len(r.expected_also) for r in self.incidents)
        return sum(len(r.also_found) for r in self.incidents) / total if total else 1.0

    @property
    def also_total(self) -> int:
        return sum(len(r.expected_also) for r in self.incidents)

    def category_accuracy(self, source: str) -> float:
        right, n = self.category.get(source, (0, 0))
        return right / n if n else 1.0

    def confusions(self) -> list[tuple[str, str, str, int]]:
        """(source, expected, got, reports) of the category misses, most frequent first."""
        pairs = Counter((m.source, "|".join(m.expected), str(m.got)) for m in self.category_misses)
        return [(s, e, g, n) for (s, e, g), n in pairs.most_common()]

    def misses(self) -> list[IncidentRouting]:
        return sorted((r for r in self.incidents if not r.lead_ok), key=lambda r: (-r.items, r.incident))

    def as_dict(self, worst: int = 10) -> dict[str, Any]:
        return {
            "incidents": len(self.incidents), "lead_accuracy": round(self.lead_accuracy, 4),
            "also_recall": round(self.also_recall, 4), "also_total": self.also_total,
            "category_accuracy": {s: {"accuracy": round(self.category_accuracy(s), 4), "right": r, "items": n}
                                  for s, (r, n) in sorted(self.category.items())},
            "lead_misses": [{"incident": r.incident, "summary": r.summary, "expected": r.expected_lead,
                             "got": r.lead, "case": r.case_id, "category": r.category, "texts": r.texts}
                            for r in self.misses()[:worst]],
            "category_confusions": [{"source": s, "expected": e, "got": g, "reports": n}
                                    for s, e, g, n in self.confusions()],
            "category_misses": [m.__dict__ for m in self.category_misses[:worst]],
        }


def _text_of(report: Mapping[str, Any] | None) -> str:
    if report is None:
        return "(no report: rejected by the normaliser)"
    title = report.get("title") or ""
    return f"[{report.get('category')} <- {report.get('source_category_name') or '-'}] {title} {report.get('text') or ''}"


def score(labels: Iterable[Mapping[str, Any]], incidents: Mapping[str, Mapping[str, Any]],
          mapping: Mapping[Item, str | None], reports: Mapping[Item, Mapping[str, Any]],
          cases: Mapping[str, Mapping[str, Any]], rules: RuleSet, *,
          category_map: Mapping[str, str | Sequence[str]] | None = None,
          order: Mapping[Item, int] | None = None,
          only: Callable[[str, Mapping[str, Any]], bool] | None = None) -> RoutingResult:
    """Routing and category scores of a replay (pure: no I/O).

    ``labels``: ``{source, source_ref, incident, kind}`` rows; ``incidents``: incident id ->
    ``{county_code, expected_lead, expected_also, category, summary}``; ``mapping`` item ->
    case id; ``reports`` item -> its last Report; ``cases`` case id -> its last Case;
    ``only(incident_id, incident)`` keeps a subset of the incidents (a hold-out half).
    """
    order = order or {}
    items_of: dict[str, list[Item]] = defaultdict(list)
    seen: set[Item] = set()
    for n, lab in enumerate(labels):
        if lab.get("kind", "incident") != "incident" or lab.get("incident") is None:
            continue
        item = (str(lab["source"]), str(lab["source_ref"]))
        if item in seen:
            continue  # redeliveries and 12345 updates repeat a source_ref and count once
        seen.add(item)
        label = str(lab["incident"])
        if label not in incidents:
            raise ValueError(f"label of {item[0]}:{item[1]} names incident {label!r}, not in the incidents file")
        if only is None or only(label, incidents[label]):
            items_of[label].append(item)
    if category_map is not None:
        missing = sorted({str(incidents[i]["category"]) for i in items_of} - set(category_map))
        if missing:
            raise ValueError(f"category map has no hub category for label categories {missing}")

    routed: list[IncidentRouting] = []
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    cat_misses: list[CategoryMiss] = []
    for inc_id in sorted(items_of):
        inc = incidents[inc_id]
        items = sorted(items_of[inc_id], key=lambda i: order.get(i, 0))
        county = str(inc["county_code"])
        held = Counter(mapping[i] for i in items if mapping.get(i))
        case_id: str | None = None
        if held:
            most = max(held.values())
            case_id = next(mapping[i] for i in items if mapping.get(i) and held[mapping[i]] == most)
        case = cases.get(case_id) if case_id else None
        lead: str | None = None
        agencies: list[str] = []
        if case is not None and case.get("dispatchable", True):
            plan = rules.plan({k: case.get(k) for k in ("category", "county_code", "street_code", "sources",
                                                        "severity")})
            if plan is not None:
                lead = plan.lead.agency
                agencies = [a.agency for a in plan.assignments]
        routed.append(IncidentRouting(
            incident=inc_id, summary=str(inc.get("summary") or ""), county=county,
            expected_lead=f"{county}.{inc['expected_lead']}",
            expected_also=[f"{county}.{a}" for a in inc.get("expected_also") or []],
            case_id=case_id, category=case.get("category") if case else None, lead=lead, agencies=agencies,
            items=len(items), texts=[f"{i[0]}:{i[1]} {_text_of(reports.get(i))[:110]}" for i in items[:4]],
        ))
        if category_map is None:
            continue
        wanted = category_map[str(inc["category"])]
        expected = [wanted] if isinstance(wanted, str) else list(wanted)
        for item in items:
            report = reports.get(item)
            got = report.get("category") if report else None
            total[item[0]] += 1
            if got in expected:
                right[item[0]] += 1
            else:
                cat_misses.append(CategoryMiss(
                    source=item[0], source_ref=item[1], incident=inc_id, expected=expected, got=got,
                    source_category=(report or {}).get("source_category_name"), text=_text_of(report)[:160]))
    return RoutingResult(incidents=routed, category={s: (right[s], total[s]) for s in total},
                         category_misses=cat_misses)


def run(records: Iterable[Mapping[str, Any]], labels: Iterable[Mapping[str, Any]],
        incidents: Mapping[str, Mapping[str, Any]], rules: RuleSet, *,
        category_map: Mapping[str, str | Sequence[str]] | None = None, config: FusionConfig | None = None,
        registry: Mapping[str, Mapping[str, Any]] | None = None,
        only: Callable[[str, Mapping[str, Any]], bool] | None = None) -> tuple[RoutingResult, Replay]:
    """Replay ``records`` and score routing and categories against ``labels`` / ``incidents``."""
    rep = replay(records, config=config, registry=registry)
    result = score(labels, incidents, rep.mapping, rep.reports, rep.cases, rules, category_map=category_map,
                   order=rep.order, only=only)
    return result, rep


def read_incidents(path: str | Path) -> dict[str, dict[str, Any]]:
    """``incidents.json``: incident id -> label (a JSON object; a list of objects with ``incident`` also works)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, list):
        return {str(d["incident"]): d for d in data}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object of incident id -> label")
    return {str(k): v for k, v in data.items()}
