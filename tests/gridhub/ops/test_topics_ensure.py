"""gridhub topics ensure against a real broker: create, alter, grow, report drift."""

from __future__ import annotations

import time

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from gridhub.ops.common import admin_client
from gridhub.core.kafka_admin import describe, ensure_topics
from gridhub.core.settings import Settings
from helpers.cli import run_cli

pytestmark = pytest.mark.integration


def test_ensure_creates_alters_grows_and_reports_drift(settings: Settings) -> None:
    admin = admin_client(settings)
    try:
        # pre-existing topics that differ from the spec
        admin.create_topics({
            settings.topic("cases"): {"num_partitions": 4, "replication_factor": 1,
                                      "configs": {"cleanup.policy": "delete"}},
            settings.topic("reports"): {"num_partitions": 20, "replication_factor": 1},
        })
        admin.wait_for_topics([settings.topic("cases"), settings.topic("reports")])

        dry = run_cli(settings, "topics", "ensure", "--dry-run")
        assert dry.exit_code == 0
        assert "would create" in dry.output and settings.topic("raw.sensors") not in admin.list_topics()

        result = run_cli(settings, "topics", "ensure", "--strict")
        assert result.exit_code == 1                       # the partition-count drift cannot be fixed
        assert "CANNOT FIX" in result.output and "has 20 partitions" in result.output

        state = describe(admin, [settings.topic(n) for n in ("raw.sensors", "cases", "reports", "dlq.retries")])
        assert state[settings.topic("raw.sensors")]["partitions"] == settings.partitions
        assert state[settings.topic("cases")]["partitions"] == settings.partitions
        assert state[settings.topic("cases")]["configs"]["cleanup.policy"] == "compact"
        assert state[settings.topic("reports")]["partitions"] == 20
        assert state[settings.topic("dlq.retries")]["partitions"] == 1

        # on-demand agency topic, then idempotent re-run
        ensure_topics(settings, ["dispatch.330502.zhzf"])
        assert settings.topic("dispatch.330502.zhzf") in admin.list_topics()
        again = ensure_topics(settings)
        assert again.created == [] and again.altered == [] and again.partitions_added == []
        assert [a.topic for a in again.problems] == [settings.topic("reports")]

        # a config changed behind the tool's back is put back
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, settings.topic("dlq"),
                                            {"retention.ms": "1000"})])
        # KRaft applies a config change from the metadata log after acknowledging it, so wait
        # until the broker reports the drift before asking the tool to fix it
        _wait_for_config(admin, settings.topic("dlq"), "retention.ms", "1000")
        fixed = ensure_topics(settings, ["dlq"])
        assert fixed.altered == [settings.topic("dlq")]
        _wait_for_config(admin, settings.topic("dlq"), "retention.ms", "7776000000")
    finally:
        admin.close()


def _wait_for_config(admin, topic: str, key: str, value: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while describe(admin, [topic])[topic]["configs"].get(key) != value:
        assert time.monotonic() < deadline, f"{topic} never reported {key}={value}"
        time.sleep(0.1)


def test_ls_shows_end_offsets(settings: Settings) -> None:
    from helpers.kafka import produce
    ensure_topics(settings, ["raw.sensors"])
    produce(settings, "raw.sensors", [{"key": b"d", "value": b"{}", "partition": 1}] * 3)
    result = run_cli(settings, "topics", "ls", "--partitions")
    assert result.exit_code == 0
    [line] = [l for l in result.output.splitlines() if l.startswith(settings.topic("raw.sensors"))]
    assert "0,3,0" in line and "retention.ms=2592000000" in line


def test_ensure_dispatch_creates_a_countys_agency_topics_ahead(settings: Settings) -> None:
    from gridhub.core.agencies import catalog_for_rules

    expected = catalog_for_rules(settings.routing_rules).dispatch_agencies(["330502"])
    assert "330502.zhzf" in expected and "330500.zzzx" in expected  # a county agency, the city's centre
    assert any(a.startswith("330502.town-330502") for a in expected)  # the county's township platforms
    assert not any(a.startswith("330503.") for a in expected)
    result = run_cli(settings, "topics", "ensure", "--dispatch", "--county", "330502", "raw.sensors")
    assert result.exit_code == 0, result.output
    admin = admin_client(settings)
    try:
        topics = {t for t in admin.list_topics() if t.startswith(settings.namespace + ".")}
        state = describe(admin, [settings.topic(f"dispatch.{a}") for a in expected])
        feedback_state = describe(admin, [settings.topic(f"feedback.{a}") for a in expected])
    finally:
        admin.close()
    assert {settings.topic(f"{kind}.{a}") for a in expected for kind in ("dispatch", "feedback")} \
        | {settings.topic("raw.sensors")} == topics
    assert {s["partitions"] for s in state.values()} == {3}  # deploy/topics.yaml dispatch.*
    assert len(feedback_state) == len(expected) and {s["partitions"] for s in feedback_state.values()} == {1}
    again = run_cli(settings, "topics", "ensure", "--dispatch", "--county", "330502", "--dry-run")
    dispatch_rows = [line.split()[0] for line in again.output.splitlines() if ".dispatch." in line]
    assert len(dispatch_rows) == len(expected) and set(dispatch_rows) == {"ok"}  # idempotent
    refused = run_cli(settings, "topics", "ensure", "--dispatch", "--county", "999999")
    assert refused.exit_code == 2 and "unknown county code(s) 999999" in refused.output
