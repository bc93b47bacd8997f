"""A deterministic, coherent set of hub facts for tests and ``gridhub bench sink``.

The fusion, routing and lifecycle services produce these topics in
production; the sink's tests and benchmark need the same shapes without
running them, so this module writes what those services would: reports
linked to cases (some merged across sources, some updated), the cases, their
lifecycle logs (dispatch, 签收, 办结, 回访, overdue, 退单) and the dispatches.
"""

from __future__ import annotations

import csv
import json
import random
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from gridhub.core import topics
from gridhub.core.reference import DATA_DIR

_TOWNSHIPS = DATA_DIR / "townships.csv"
AGENCIES = ("zhzf", "scjg", "sthj", "yjgl", "xfjy", "zjj", "slj")
SATISFACTION = ("满意", "满意", "基本满意", "不满意")  # weighted like real 回访 results
HOUR_MS = 3_600_000


@lru_cache(maxsize=1)
def taxonomy_categories() -> tuple[tuple[str, ...], frozenset[str]]:
    """Incident codes of the hub's taxonomy (deploy/categories.yaml; not consultation / other) and the
    ones sensors report, so synthetic rows carry categories the hub really produces (issue 18)."""
    import yaml

    from gridhub.core.settings import REPO_ROOT

    doc = yaml.safe_load((REPO_ROOT / "deploy" / "categories.yaml").read_text(encoding="utf-8"))
    codes = tuple(str(c["code"]) for c in doc["categories"] if c["code"] not in ("consultation", "other"))
    return codes, frozenset(str(v) for v in (doc.get("sensors") or {}).get("device_types", {}).values())


@lru_cache(maxsize=1)
def _townships() -> list[tuple[str, str]]:
    with _TOWNSHIPS.open(encoding="utf-8") as fh:
        return [(row["code"], row["areaCode"]) for row in csv.DictReader(fh)]


def _id(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(map(str, parts))))


@dataclass
class FactSet:
    """Facts keyed by contract topic name, in production order; values are codec dicts."""

    records: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)

    def add(self, topic: str, key: str, value: dict[str, Any]) -> None:
        self.records.setdefault(topic, []).append((key, value))

    def count(self) -> int:
        return sum(len(v) for v in self.records.values())


SCHEMA_OF = {topics.REPORTS_LINKED: "Report", topics.CASES: "Case", topics.CASE_EVENTS: "CaseEvent"}


def schema_for(topic: str) -> str:
    return "Dispatch" if topic == topics.DISPATCHES else SCHEMA_OF[topic]


def generate(cases: int, now_ms: int, seed: int = 7, span_hours: int = 6, townships: int = 12,
             agencies: int = len(AGENCIES)) -> FactSet:
    """``cases`` incidents first seen within ``span_hours`` before ``now_ms``, spread over a few townships.

    Fewer townships and agencies mean fewer distinct agencies in the facts (smaller answers to check).
    """
    rnd = random.Random(seed)
    categories, sensed = taxonomy_categories()
    places = rnd.sample(_townships(), townships)
    # A stable spot per township (cases scatter ~2 km around it), so the report's map has a shape.
    centres = {street: (120.0 + int(street[-6:]) % 97 / 100, 30.0 + int(street[-6:]) % 89 / 100)
               for street, _ in places}
    out = FactSet()
    for n in range(cases):
        street, county = places[n % len(places)]
        category = categories[rnd.randrange(len(categories))]
        lng, lat = (round(c + rnd.uniform(-0.02, 0.02), 6) for c in centres[street])
        case_id = _id("case", seed, n)
        t0 = now_ms - rnd.randrange(span_hours * HOUR_MS)
        sources = ["four-platforms"] + (["hotline-12345"] if rnd.random() < 0.4 else []) \
            + (["sensors"] if category in sensed and rnd.random() < 0.5 else [])
        report_ids = []
        for i, source in enumerate(sources):
            ref = f"{source[:2].upper()}{seed}-{n}-{i}"
            report_id = _id(source, ref)
            report_ids.append(report_id)
            base = {
                "report_id": report_id, "source": source, "source_ref": ref, "kind": "incident",
                "county_code": county, "street_code": street, "category": category, "text": "示例诉求",
                "reported_at": t0 + i * 60_000, "received_at": t0 + i * 60_000 + 1_000, "severity": 1,
                "version": 1, "case_id": case_id, "dispatchable": True, "lng": lng, "lat": lat,
            }
            out.add(topics.REPORTS_LINKED, case_id, base)
            if source == "hotline-12345" and rnd.random() < 0.5:  # a later status update of the same order
                out.add(topics.REPORTS_LINKED, case_id, {**base, "version": 2, "status": "办理中"})
        case = {
            "case_id": case_id, "county_code": county, "street_code": street, "category": category,
            "severity": 1, "sources": sources, "report_ids": report_ids, "report_count": len(sources),
            "first_seen": t0, "last_seen": t0 + (len(sources) - 1) * 60_000, "status": "reported",
            "dispatchable": True, "version": 1, "updated_at": t0, "lng": lng, "lat": lat,
        }
        out.add(topics.CASES, case_id, case)
        seq = 0

        def event(name: str, at: int, agency: str | None = None, dispatch_id: str | None = None,
                  detail: dict[str, Any] | None = None, state: str | None = None) -> None:
            nonlocal seq
            seq += 1
            out.add(topics.CASE_EVENTS, case_id, {
                "event_id": _id(case_id, "event", seq, name), "case_id": case_id, "county_code": county,
                "event": name, "at": at, "agency": agency, "dispatch_id": dispatch_id, "state": state,
                "detail": json.dumps(detail, ensure_ascii=False) if detail else None})

        event("created", t0, state="reported")
        agency = f"{county}.{AGENCIES[rnd.randrange(agencies)]}"
        if rnd.random() < 0.1:  # 退单: the first agency returns it, the county centre re-routes
            first = f"{county}.zhzf"
            did0 = _id(case_id, "dispatch", first)
            at0 = t0 + 120_000
            _dispatch(out, did0, case_id, first, county, street, category, at0, "lead", sources)
            event("dispatched", at0, first, did0, {"role": "lead", "sign_deadline": at0 + HOUR_MS,
                                                   "resolve_deadline": at0 + 24 * HOUR_MS}, "dispatched")
            event("returned", at0 + 600_000, first, did0, {"note": "不属于本单位职责"}, "reported")
        did = _id(case_id, "dispatch", agency)
        at_d = t0 + 900_000
        _dispatch(out, did, case_id, agency, county, street, category, at_d, "lead", sources)
        event("dispatched", at_d, agency, did, {"role": "lead", "sign_deadline": at_d + HOUR_MS,
                                               "resolve_deadline": at_d + 4 * HOUR_MS}, "dispatched")
        status, version = "dispatched", 2
        if rnd.random() < 0.85:
            at_s = at_d + rnd.randrange(5, 120) * 60_000
            if at_s - at_d > HOUR_MS:
                event("overdue", at_d + HOUR_MS, agency, did, {"clock": "sign"})
            if at_s < now_ms:
                event("signed", at_s, agency, did, state="signed")
                status = "signed"
                at_r = at_s + rnd.randrange(10, 300) * 60_000
                if at_r - at_d > 4 * HOUR_MS and at_d + 4 * HOUR_MS < now_ms:
                    event("overdue", at_d + 4 * HOUR_MS, agency, did, {"clock": "resolve"})
                if at_r < now_ms:
                    event("resolved", at_r, agency, did, state="resolved")
                    status = "resolved"
                    if rnd.random() < 0.6 and at_r + 600_000 < now_ms:
                        event("reviewed", at_r + 600_000, detail={"satisfaction": rnd.choice(SATISFACTION)},
                              state="reviewed")
                        event("closed", at_r + 660_000, state="closed")
                        status = "closed"
        elif at_d + HOUR_MS < now_ms:
            event("overdue", at_d + HOUR_MS, agency, did, {"clock": "sign"})
        out.add(topics.CASES, case_id, {**case, "status": status, "version": version, "updated_at": at_d})
    return out


def _dispatch(out: FactSet, did: str, case_id: str, agency: str, county: str, street: str, category: str,
              at: int, role: str, sources: list[str]) -> None:
    out.add(topics.DISPATCHES, case_id, {  # routing's copy for the sink (gridhub/core/topics.py)
        "dispatchId": did, "caseId": case_id, "agency": agency, "countyCode": county, "streetCode": street,
        "role": role, "reason": "rule:synthetic", "category": category, "severity": 1, "sources": sources,
        "reportCount": len(sources), "dispatchedAt": at, "signDeadline": at + HOUR_MS,
        "resolveDeadline": at + 4 * HOUR_MS, "escalationLevel": 0, "action": "dispatch"})


def encoded(facts: FactSet, settings: Any) -> list[tuple[str, bytes, bytes]]:
    """``(physical topic, key, Avro value)`` for every fact, in production order per topic."""
    from gridhub.core.codec import codec

    out: list[tuple[str, bytes, bytes]] = []
    for topic, records in facts.records.items():
        avro = codec(schema_for(topic))
        out.extend((settings.topic(topic), key.encode("utf-8"), avro.encode(value)) for key, value in records)
    return out


def produce(producer: Any, records: list[tuple[str, bytes, bytes]], timeout: float = 120.0) -> int:
    """Send with a kafka-python producer and wait for every acknowledgement."""
    futures = [producer.send(topic, value=value, key=key) for topic, key, value in records]
    producer.flush(timeout=timeout)
    for future in futures:
        future.get(timeout=timeout)
    return len(futures)


def rows(facts: FactSet, settings: Any) -> dict[str, list[dict[str, Any]]]:
    """The rows the sink would insert for ``facts``, per table (for loading engines without Kafka)."""
    from connectors.clickhouse.rows import TopicMap, to_row

    topic_map = TopicMap(settings)
    out: dict[str, list[dict[str, Any]]] = {}
    for topic, _key, value in encoded(facts, settings):
        table = topic_map.table_for(topic)
        assert table is not None, topic
        out.setdefault(table, []).append(to_row(table, value))
    return out
