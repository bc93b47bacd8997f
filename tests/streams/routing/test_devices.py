"""Device events to the owner's agency, repeated offline collapsing into one device case (no Kafka)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridhub.core.yamlconf import ConfigError
from streams.routing import devices
from streams.routing.rules import RuleSet, load_rules

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
T0 = 1_760_000_000_000


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(DEPLOY / "routing.yaml")


@pytest.fixture(scope="module")
def owners(rules: RuleSet) -> devices.Owners:
    return devices.load_owners(DEPLOY / "device_owners.yaml", rules.catalog)


def ev(kind: str, n: int, owner: str | None = "湖州市某物业服务有限公司", device: str = "DEV-1") -> dict[str, Any]:
    return {"event_id": f"e-{device}-{kind}-{n}", "device_id": device, "device_type": "smoke", "event_type": kind,
            "at": T0 + n * 60_000, "county_code": "330502", "street_code": "330502001", "address": "某小区3幢",
            "owner": owner, "detail": f"{kind} #{n}"}


def test_repeated_offline_is_one_case_closed_when_back_online(rules: RuleSet, owners: devices.Owners) -> None:
    state, fx = devices.on_device_event(None, ev("offline", 1), owners, rules.catalog)
    assert [e["event"] for e in fx.events] == ["created", "dispatched"]
    (d,) = fx.dispatches
    assert (d["agency"], d["category"], d["reason"], d["action"]) == ("330502.town-330502001", "device_offline",
                                                                      "device", "dispatch")
    case_id = d["caseId"]
    for n in (2, 3, 4):
        state, fx = devices.on_device_event(state, ev("offline", n), owners, rules.catalog)
        assert [e["event"] for e in fx.events] == ["report_linked"] and not fx.dispatches
        assert fx.events[0]["case_id"] == case_id
    again, fx = devices.on_device_event(state, ev("offline", 4), owners, rules.catalog)
    assert not fx  # a redelivered event
    state, fx = devices.on_device_event(state, ev("online", 5), owners, rules.catalog)
    assert [(e["event"], e["case_id"]) for e in fx.events] == [("closed", case_id)]
    assert [x["action"] for x in fx.dispatches] == ["withdraw"] and state["open"] == {}
    state, fx = devices.on_device_event(state, ev("offline", 6), owners, rules.catalog)
    assert fx.dispatches[0]["caseId"] != case_id  # a new silence episode is a new case


def test_fault_and_low_battery_go_to_the_owner_agency_until_a_selftest(rules: RuleSet,
                                                                       owners: devices.Owners) -> None:
    state, fx = devices.on_device_event(None, ev("fault", 1, owner="吴兴区消防救援大队"), owners, rules.catalog)
    assert fx.dispatches[0]["agency"] == "330502.xfjy"
    state, fx = devices.on_device_event(state, ev("low_battery", 2, owner="吴兴区消防救援大队"), owners, rules.catalog)
    assert [d["category"] for d in fx.dispatches] == ["device_low_battery"]
    state, fx = devices.on_device_event(state, ev("selftest", 3, owner="吴兴区消防救援大队"), owners, rules.catalog)
    assert sorted(e["event"] for e in fx.events) == ["closed", "closed"] and state["open"] == {}
    _, fx = devices.on_device_event(None, ev("fault", 1, owner=None), owners, rules.catalog)  # unknown owner
    assert fx.dispatches[0]["agency"] == "330502.town-330502001"


def test_owner_file_errors_name_the_line(tmp_path: Path, rules: RuleSet) -> None:
    path = tmp_path / "device_owners.yaml"
    path.write_text("owners:\n  - match: '物业'\n    agency: nobody\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown agency 'nobody'"):
        devices.load_owners(path, rules.catalog)
