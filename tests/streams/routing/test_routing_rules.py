"""Rule validation (file:line errors), matching, planning and live reload."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from gridhub.core.agencies import load_catalog
from gridhub.core.yamlconf import parse_duration_ms
from streams.routing.rules import ConfigError, RulesHolder, load_rules

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
HEADER = f"agencies: {DEPLOY / 'agencies.yaml'}\ncategories: {DEPLOY / 'categories.yaml'}\n"


def write_rules(tmp_path: Path, body: str, name: str = "routing.yaml") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + textwrap.dedent(body), encoding="utf-8")
    return path


def case(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"category": "garbage", "county_code": "330502", "street_code": "330502001",
                               "sources": ["four-platforms"], "severity": 1}
    base.update(kw)
    return base


@pytest.fixture(scope="module")
def deployed():  # type: ignore[no-untyped-def]
    return load_rules(DEPLOY / "routing.yaml")


def test_durations() -> None:
    assert parse_duration_ms("30m") == 30 * 60_000
    assert parse_duration_ms("24h") == 24 * 3_600_000
    assert parse_duration_ms("5d") == 5 * 86_400_000
    assert parse_duration_ms("1d12h") == 36 * 3_600_000
    assert parse_duration_ms("2s") == 2000
    assert parse_duration_ms("500ms") == 500
    for bad in ("", "5x", "h", "5 days", "-1s"):
        with pytest.raises(ValueError):
            parse_duration_ms(bad)


def test_deployed_rules_load_and_catalog_covers_all_counties(deployed) -> None:  # type: ignore[no-untyped-def]
    assert len(deployed.rules) > 10
    assert len(deployed.catalog.counties) == 90
    assert deployed.catalog.exists("330502.zhzf")
    assert deployed.catalog.exists("330500.zzzx")  # 湖州市 city centre
    assert not deployed.catalog.exists("330502.nope")
    assert not deployed.catalog.exists("999999.zhzf")
    assert deployed.catalog.exists("330502.town-330502001")
    assert not deployed.catalog.exists("330502.town-330102001")  # a township of another county


def test_first_matching_rule_wins(deployed) -> None:  # type: ignore[no-untyped-def]
    plan = deployed.plan(case(category="street_vending"))
    assert plan is not None
    assert [(a.agency, a.role, a.reason) for a in plan.assignments] == [("330502.zhzf", "lead", "rule:city-management")]
    assert plan.lead.sign_ms == 2 * 3_600_000 and plan.lead.resolve_ms == 5 * 86_400_000


def test_no_rule_goes_to_triage(deployed) -> None:  # type: ignore[no-untyped-def]
    plan = deployed.plan(case(category="other"))
    assert plan is not None
    assert [(a.agency, a.role, a.reason) for a in plan.assignments] == [("330502.zzzx", "lead", "triage")]
    assert plan.rule_index == -1


def test_major_severity_also_goes_to_the_centre(deployed) -> None:  # type: ignore[no-untyped-def]
    plan = deployed.plan(case(category="water_pollution", severity=3))
    assert plan is not None
    assert [(a.agency, a.role, a.reason) for a in plan.assignments] == [
        ("330502.sthj", "lead", "rule:environment"), ("330502.zzzx", "assist", "severity")]
    plan2 = deployed.plan(case(category="water_pollution", severity=2))
    assert plan2 is not None and [a.agency for a in plan2.assignments] == ["330502.sthj"]


def test_fire_alarm_goes_to_fire_and_emergency_at_once(deployed) -> None:  # type: ignore[no-untyped-def]
    plan = deployed.plan(case(category="fire", sources=["sensors"]))
    assert plan is not None
    assert [(a.agency, a.role) for a in plan.assignments] == [("330502.xfjy", "lead"), ("330502.yjgl", "assist")]
    assert plan.lead.rule == "fire-alarm" and plan.lead.sign_ms == 5 * 60_000
    human = deployed.plan(case(category="fire", sources=["hotline-12345"]))
    assert human is not None and [a.agency for a in human.assignments] == ["330502.xfjy", "330502.yjgl"]
    assert human.lead.rule == "fire"
    hazard = deployed.plan(case(category="fire_hazard", sources=["four-platforms"]))
    assert hazard is not None and [a.agency for a in hazard.assignments] == ["330502.xfjy"]


def test_return_goes_to_next_rule_then_centre_then_city(deployed) -> None:  # type: ignore[no-untyped-def]
    c = case(category="garbage")
    assert deployed.plan(c).lead.agency == "330502.zhzf"
    assert deployed.plan(c, skip=["330502.zhzf"]).lead.agency == "330502.town-330502001"
    assert deployed.plan(c, skip=["330502.zhzf", "330502.town-330502001"]).lead.agency == "330502.zzzx"
    assert deployed.plan(c, skip=["330502.zhzf", "330502.town-330502001", "330502.zzzx"]).lead.agency == "330500.zzzx"
    assert deployed.plan(c, skip=["330502.zhzf", "330502.town-330502001", "330502.zzzx", "330500.zzzx"]) is None


def test_town_without_street_falls_back_to_centre(deployed) -> None:  # type: ignore[no-untyped-def]
    plan = deployed.plan(case(category="public_service", street_code=None))
    assert plan is not None and plan.lead.agency == "330502.zzzx" and plan.lead.reason == "rule:township"


def test_escalation_chain(deployed) -> None:  # type: ignore[no-untyped-def]
    assert deployed.escalation_chain(case()) == ["330502.town-330502001", "330502.zzzx", "330500.zzzx"]
    assert deployed.escalation_chain(case(street_code=None)) == ["330502.zzzx", "330500.zzzx"]


def test_match_on_area_source_and_severity(tmp_path: Path) -> None:
    rules = load_rules(write_rules(tmp_path, """
        rules:
          - id: wuxing-major
            match: {area: ["330502"], severity_min: 3}
            lead: zzzx
          - id: huzhou-noise-hotline
            match: {area: ["3305"], category: [noise], source: [hotline-12345]}
            lead: zhzf
            assist: [town, gaj]
            sign: 30m
            resolve: 1d
    """))
    assert rules.plan(case(severity=3)).lead.reason == "rule:wuxing-major"
    p = rules.plan(case(category="noise", sources=["four-platforms", "hotline-12345"]))
    assert [(a.agency, a.role) for a in p.assignments] == [
        ("330502.zhzf", "lead"), ("330502.town-330502001", "assist"), ("330502.gaj", "assist")]
    assert p.lead.sign_ms == 30 * 60_000 and p.lead.resolve_ms == 86_400_000
    assert rules.plan(case(category="noise", sources=["four-platforms"])).lead.reason == "triage"
    assert rules.plan(case(category="noise", county_code="330102", street_code="330102001",
                           sources=["hotline-12345"])).lead.reason == "triage"


@pytest.mark.parametrize("body, line, words", [
    ("""
        rules:
          - id: a
            match: {category: [garbage]}
            lead: nosuch
    """, 7, "unknown agency 'nosuch'"),
    ("""
        rules:
          - id: a
            match:
              category: [garbage, rubbish]
            lead: zhzf
    """, 7, "unknown category 'rubbish'"),
    ("""
        rules:
          - id: all
            lead: zzzx
          - id: garbage
            match: {category: [garbage]}
            lead: zhzf
    """, 7, "rule 'garbage' is unreachable: rule 'all' (line 5)"),
    ("""
        rules:
          - id: a
            match: {category: [garbage, noise]}
            lead: zhzf
          - id: b
            match: {category: [garbage]}
            lead: town
    """, 8, "rule 'b' is unreachable"),
    ("""
        rules:
          - id: a
            match: {category: [garbage]}
            lead: zhzf
            sign: soon
    """, 8, "sign: not a duration"),
    ("""
        rules:
          - id: a
            match: {category: [garbage], colour: red}
            lead: zhzf
    """, 6, "unknown match key 'colour'"),
    ("""
        rules:
          - id: a
            match: {area: ["3399"]}
            lead: zhzf
    """, 6, "area '3399'"),
    ("""
        rules:
          - id: a
            match: {source: [fax]}
            lead: zhzf
    """, 6, "unknown source 'fax'"),
    ("""
        rules:
          - id: a
            match: {category: [garbage]}
            lead: zhzf
          - id: a
            match: {category: [noise]}
            lead: zhzf
    """, 8, "duplicate rule id 'a'"),
    ("""
        rules:
          - id: a
            match: {category: [garbage]
            lead: zhzf
    """, 7, "YAML error"),
])
def test_invalid_rules_name_file_and_line(tmp_path: Path, body: str, line: int, words: str) -> None:
    path = write_rules(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert str(info.value).startswith(f"{path}:{line}: "), str(info.value)
    assert words in str(info.value)


def test_narrower_rule_before_broader_is_fine(tmp_path: Path) -> None:
    rules = load_rules(write_rules(tmp_path, """
        rules:
          - id: narrow
            match: {category: [garbage], area: ["330502"]}
            lead: zhzf
          - id: broad
            match: {category: [garbage]}
            lead: town
    """))
    assert [r.id for r in rules.rules] == ["narrow", "broad"]


def test_catalog_rejects_secret_in_file_and_unknown_agency(tmp_path: Path) -> None:
    bad = tmp_path / "agencies.yaml"
    bad.write_text(textwrap.dedent("""
        county_agencies: {zzzx: 中心, zhzf: 执法}
        delivery:
          agencies:
            "330502.zhzf": {url: "http://x", secret: "s3cr3t"}
    """), encoding="utf-8")
    with pytest.raises(ConfigError, match="never in the catalog"):
        load_catalog(bad, env={})
    bad.write_text(textwrap.dedent("""
        county_agencies: {zzzx: 中心}
        delivery:
          agencies:
            "330502.zhzf": {url: "http://x", secret_env: X}
    """), encoding="utf-8")
    with pytest.raises(ConfigError, match=r":5: delivery for unknown agency '330502.zhzf'"):
        load_catalog(bad, env={})


def test_catalog_webhook_from_env_override() -> None:
    env = {"GRIDHUB_WEBHOOKS": '{"330502.whsc": {"url": "http://127.0.0.1:1/h", "secret_env": "S", "max_attempts": 3}}',
           "S": "k"}
    cat = load_catalog(DEPLOY / "agencies.yaml", env=env)
    target = cat.webhook("330502.whsc")
    assert target is not None and target.max_attempts == 3 and cat.delivery("330502.whsc") == "webhook"
    assert cat.delivery("330502.zhzf") == "kafka"


def test_reload_applies_good_edits_and_keeps_last_good_rules(tmp_path: Path) -> None:
    path = write_rules(tmp_path, """
        rules:
          - id: garbage
            match: {category: [garbage]}
            lead: zhzf
    """)
    holder = RulesHolder(path)
    assert holder.current.plan(case()).lead.agency == "330502.zhzf"
    assert holder.maybe_reload() is False  # unchanged

    def edit(body: str) -> None:
        st = path.stat()
        write_rules(tmp_path, body)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # mtime resolution on some filesystems

    edit("""
        rules:
          - id: garbage
            match: {category: [garbage]}
            lead: town
    """)
    assert holder.maybe_reload() is True
    assert holder.current.plan(case()).lead.agency == "330502.town-330502001"
    edit("""
        rules:
          - id: garbage
            match: {category: [garbage]}
            lead: nosuch
    """)
    assert holder.maybe_reload() is False
    assert holder.last_error is not None and "unknown agency 'nosuch'" in holder.last_error
    assert holder.current.plan(case()).lead.agency == "330502.town-330502001"  # last good rules kept


def test_every_category_has_a_rule_whose_lead_is_the_taxonomy_lead(deployed) -> None:  # type: ignore[no-untyped-def]
    """deploy/categories.yaml and deploy/routing.yaml agree: no category silently falls to triage."""
    from streams.ingest.taxonomy import taxonomy

    tax = taxonomy()
    assert deployed.categories == frozenset(tax.categories)
    for code, cat in tax.categories.items():
        for source in ("four-platforms", "hotline-12345"):
            plan = deployed.plan(case(category=code, sources=[source]))
            assert plan is not None
            if code in ("other", "consultation"):
                assert plan.lead.reason == "triage" and plan.lead.agency == "330502.zzzx", code
                continue
            assert plan.lead.reason.startswith("rule:"), (code, plan.lead)
            # `town` = the case's own township platform (CONTRACTS 2: town-<streetCode>)
            lead = "330502.town-330502001" if cat.lead == "town" else f"330502.{cat.lead}"
            assert plan.lead.agency == lead, (code, plan.lead.agency, cat.lead)
            assert deployed.catalog.exists(lead), lead


@pytest.mark.parametrize("category,lead,assist", [
    ("gas_leak", "zjj", ["xfjy", "yjgl"]),               # 燃气: 住建 with 消防 on site and 应急
    ("special_equipment", "scjg", ["xfjy"]),             # 电梯困人: 特种设备监察, 消防 frees the people
    ("waterlogging", "zjj", ["yjgl"]),                   # 城市内涝 (drainage) ...
    ("flood", "slj", ["yjgl"]),                          # ... is not a river level (水利)
    ("highway_damage", "jtys", []),                      # 国省道 ...
    ("road_damage", "zjj", []),                          # ... are not municipal roads
    ("social_noise", "gaj", []),                         # 社会生活噪声 ...
    ("noise", "zhzf", []),                               # ... vs construction noise
    ("cooking_fume", "zhzf", []),                        # 餐饮油烟 ...
    ("air_pollution", "sthj", []),                       # ... vs industrial exhaust
    ("construction_waste", "zhzf", []),
    ("wage_arrears", "zzzx", ["town-330502001"]),
    ("dispute", "zzzx", ["town-330502001"]),
    ("land_use", "zrzy", []),
    ("health", "wsjk", []),
    ("culture_market", "whsc", []),
    ("agriculture", "nync", []),
    ("traffic", "gaj", []),
    ("work_safety", "yjgl", []),
])
def test_dev_set_categories_route_to_the_expected_agencies(deployed, category: str, lead: str,  # type: ignore[no-untyped-def]
                                                           assist: list[str]) -> None:
    plan = deployed.plan(case(category=category, sources=["hotline-12345"]))
    assert plan is not None
    assert [a.agency for a in plan.assignments] == [f"330502.{lead}"] + [f"330502.{a}" for a in assist]
