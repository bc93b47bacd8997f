"""The shipped division tables are complete and consistent."""

from __future__ import annotations

from gridhub.core.reference import divisions


def test_tables_load_and_link() -> None:
    d = divisions()
    assert len(d.cities) == 11 and len(d.counties) == 90
    assert len(d.streets) > 1300 and len(d.villages) > 25000
    assert d.county_of_street("330502001") == "330502"
    assert d.name("330502001") == "月河街道"
    assert d.street_of_village("330102001051") == "330102001"
    assert d.county_of_street("330502999") is None


def test_every_parent_exists() -> None:
    d = divisions()
    assert all(c.parent in d.cities for c in d.counties.values())
    assert all(s.parent in d.counties and s.code.startswith(s.parent) for s in d.streets.values())
    assert all(v.parent in d.streets and v.code.startswith(v.parent) for v in d.villages.values())
