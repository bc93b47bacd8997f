"""The simulator labels its traffic with categories the hub's taxonomy maps back to the same code.

Fusion only joins reports of compatible categories (deploy/fusion.yaml), so a simulator whose
four-platforms code or 12345 path lands on another taxonomy code (or on `other`) would make the
fusion evaluation score the simulator's labelling instead of the fusion rules.  Every check runs
the real ingest path: ``streams.ingest.normalize.normalize`` over ``deploy/categories.yaml``.

Taxonomy v2 is finer than two things the simulator cannot choose: the provincial four-platforms
code template (油烟 and 道路积水 have no code of their own there: they are filed under 0502 大气污染
and 0403 防汛防台, and the category NAME, which wins over the code, says which) and the sensor device
types (a water-level gauge is a river level or urban waterlogging: the hub decides by the
device's address).  Those two cases are checked for what the hub can know; everything else must
map back exactly.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gridhub.simulate.generator import DEFAULT_START_MS, SENSOR_CATEGORY, SimRecord, _Sim, devices_for, generate
from gridhub.simulate.text import CATEGORIES, CONSULTATIONS, Category
from gridhub.simulate.world import load_world, make_place
from streams.fusion.config import load_config
from streams.ingest.classify import classifier
from streams.ingest.normalize import normalize
from streams.ingest.taxonomy import OTHER, taxonomy

PII_KEY = b"sim-taxonomy-test"  # any key: the reporter hash is irrelevant here
SOURCES = ("four-platforms", "hotline-12345", "sensors")
#: The simulated world is Zhejiang's: the hub reads its four-platforms codes in this area's table.
PROVINCE = "33"


def _report_of(rec: SimRecord, registry: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Report the hub makes of this simulated document."""
    out = normalize(rec.source, rec.value(), registry=registry, received_at_ms=rec.at_ms, pii_key=PII_KEY)
    assert out.report is not None, (rec.kind, rec.doc)
    return out.report


def _category_of(rec: SimRecord, registry: dict[str, dict[str, Any]]) -> str:
    """The Report.category the hub gives this simulated document."""
    return str(_report_of(rec, registry)["category"])


def _check_category(rec: SimRecord, registry: dict[str, dict[str, Any]], meant: str) -> str:
    """Assert the hub gives ``rec`` the category the simulator meant; returns the hub's category.

    Exactly, except for an alarm of a device type the taxonomy maps to several categories (a
    water-level gauge: river level or waterlogging), which the hub decides by the device's address:
    an address that names the meant category (下穿通道, 桥洞) must give it; one that names none of the
    candidates (低洼路段: no word of the hub's vocabulary) gives the hub's fallback, the first
    candidate, and that must be one fusion joins with the meant category.
    """
    report = _report_of(rec, registry)
    got = str(report["category"])
    candidates = taxonomy().sensor_source(str(rec.doc.get("deviceType"))).candidates if rec.source == "sensors" else ()
    if len(candidates) <= 1:
        assert got == meant, (rec.source, rec.doc)
        return got
    assert meant in candidates, (meant, candidates)
    scores = classifier().scores(str(report.get("address") or ""))
    if any(scores.get(c, 0.0) > 0 for c in candidates):
        assert got == meant, (report.get("address"), scores, rec.doc)
    else:
        assert got == candidates[0] and load_config().compatibility(got, meant) > 0, (got, meant, rec.doc)
    return got


def _docs_for(cat: Category, seed: int) -> tuple[list[SimRecord], dict[str, dict[str, Any]]]:
    """Every report the generator produces for ``cat``: a grid report, a 12345 call, an alarm."""
    sim = _Sim(seed, 2.0, 600, DEFAULT_START_MS, load_world(None))
    sim.heap.clear()  # drop the fleet's scheduled heartbeats: only this category's records remain
    incident = sim._new_incident()
    t = DEFAULT_START_MS
    for template in cat.caller_texts:  # every wording, with a fresh place each
        place = make_place(sim.rng, sim.counties)
        sim._fp_event(t, cat, place, incident)
        sim._fp_event(t, cat, place, incident, event_source="12345转办", ref="20250616000001")
        sim._hotline_call(t, cat, place, incident, template)
    if cat.device_type is not None:
        i = sim.by_type[cat.device_type][0]
        sim._alarm_storm(t, i, incident, storm=2, recover_after=5 * 60_000)
    records = [p for _, _, p in sim.heap if isinstance(p, SimRecord) and p.incident == incident]
    registry = {d.device_id: d.registry_row() for d in sim.devices}
    return records, registry


def test_table_codes_resolve_to_the_category_taxonomy_code() -> None:
    """Code, name and path each resolve on their own (a deployment may send only one of them).

    A category the hub's code table has no code for (cooking_fume, waterlogging) carries the
    template's broader code: alone it gives that broader category, which fusion joins with the
    category, and with the name the category itself (the name wins).
    """
    tax, cfg = taxonomy(), load_config()
    table = tax.code_table(PROVINCE)
    assert table is not None
    for cat in CATEGORIES.values():
        assert cat.taxonomy in tax.categories and cat.taxonomy != OTHER, cat.key
        by_code = tax.four_platforms(cat.fp_code, None, PROVINCE)
        if cat.taxonomy in table.codes.values():
            assert by_code == cat.taxonomy, (cat.key, cat.fp_code)
        else:
            assert by_code != OTHER and cfg.compatibility(by_code, cat.taxonomy) > 0, (cat.key, cat.fp_code, by_code)
        assert tax.four_platforms(None, cat.fp_name, PROVINCE) == cat.taxonomy, (cat.key, cat.fp_name)
        assert tax.four_platforms(cat.fp_code, cat.fp_name, PROVINCE) == cat.taxonomy, (cat.key, cat.fp_code)
        assert tax.hotline(cat.hotline_code, cat.hotline_name) == cat.taxonomy, (cat.key, cat.hotline_name)
        if cat.device_type is not None:
            assert cat.taxonomy in tax.sensor_source(cat.device_type).candidates, (cat.key, cat.device_type)


def test_every_device_type_has_the_category_of_its_alarms() -> None:
    tax = taxonomy()
    assert set(SENSOR_CATEGORY) == set(tax.device_types)
    for dtype, key in SENSOR_CATEGORY.items():
        assert CATEGORIES[key].device_type == dtype
        assert CATEGORIES[key].taxonomy in tax.sensor_source(dtype).candidates, (dtype, key)


@pytest.mark.parametrize("key", sorted(CATEGORIES))
def test_generated_reports_normalise_to_the_category(key: str) -> None:
    cat = CATEGORIES[key]
    records, registry = _docs_for(cat, seed=11)
    seen: dict[str, int] = {}
    for rec in records:
        if rec.kind == "recover" or rec.kind == "update":
            continue
        _check_category(rec, registry, cat.taxonomy)
        seen[rec.source] = seen.get(rec.source, 0) + 1
    expected = {"four-platforms", "hotline-12345"} | ({"sensors"} if cat.device_type else set())
    assert set(seen) == expected, seen


def test_consultations_are_consultations() -> None:
    tax = taxonomy()
    for _, path, code, _, _ in CONSULTATIONS:
        assert tax.hotline(code, path) == "consultation", path


def test_fire_sources_are_fusion_compatible() -> None:
    """A fire is a smoke alarm, a grid report and 12345 calls: fusion must be allowed to join them."""
    cfg = load_config()
    for key in SENSOR_CATEGORY.values():
        records, registry = _docs_for(CATEGORIES[key], seed=12)
        cats = {(rec.source, _category_of(rec, registry)) for rec in records if rec.kind == "report"}
        assert {s for s, _ in cats} == set(SOURCES), cats
        for _, a in cats:
            for _, b in cats:
                assert cfg.compatibility(a, b) > 0, (key, a, b)


def test_generated_traffic_is_never_unclassified() -> None:
    """A seeded run end to end: no report lands on `other`, and each source's reports stay in the table."""
    seed, rate, duration = 5, 2.0, 1800.0
    registry = {d.device_id: d.registry_row() for d in devices_for(seed, rate, duration)}
    # (source, the source's own label) -> the taxonomy code the simulator meant
    meant: dict[tuple[str, str], str] = {}
    for c in CATEGORIES.values():
        meant["four-platforms", f"{c.fp_code} {c.fp_name}"] = c.taxonomy
        meant["hotline-12345", c.hotline_name] = c.taxonomy
        if c.device_type:
            meant["sensors", c.device_type] = c.taxonomy
    for _, path, _, _, _ in CONSULTATIONS:
        meant["hotline-12345", path] = "consultation"
    counts: dict[str, int] = {}
    for rec in generate(seed, rate, duration):
        if rec.kind not in ("report", "consultation"):
            continue
        doc = rec.doc
        label = {"four-platforms": f"{doc.get('categoryCode')} {doc.get('categoryName')}",
                 "hotline-12345": str(doc.get("categoryName")), "sensors": str(doc.get("deviceType"))}[rec.source]
        got = _check_category(rec, registry, meant[rec.source, label])
        assert got != OTHER, json.dumps(doc, ensure_ascii=False)
        counts[rec.source] = counts.get(rec.source, 0) + 1
    assert set(counts) == set(SOURCES) and min(counts.values()) >= 20, counts
