"""Pure tests of the topics spec and the ensure plan (no broker)."""

from __future__ import annotations

from gridhub.core.kafka_admin import load_spec, plan, resolve_specs
from gridhub.core.settings import Settings


def _settings(ns: str = "", rf: int = 1) -> Settings:
    return Settings(namespace=ns, replication_factor=rf, partitions=12)


def test_spec_names_are_namespaced_and_compacted_where_keyed_state() -> None:
    settings = _settings("t1")
    specs = {s.name: s for s in resolve_specs(settings, existing=["t1.gridhub-open_cases-changelog", "other"])}
    assert "t1.raw.sensors" in specs and "raw.sensors" not in specs
    assert specs["t1.registry.devices"].configs["cleanup.policy"] == "compact"
    assert specs["t1.cases"].configs["cleanup.policy"] == "compact"
    assert specs["t1.reports"].configs["cleanup.policy"] == "delete"
    changelog = specs["t1.gridhub-open_cases-changelog"]
    assert changelog.configs["cleanup.policy"] == "compact" and changelog.partitions is None
    assert "other" not in specs
    assert int(specs["t1.dlq"].configs["retention.ms"]) > int(specs["t1.reports"].configs["retention.ms"])
    assert specs["t1.dlq.retries"].partitions == 1
    assert all("min.insync.replicas" not in s.configs for s in specs.values())


def test_min_insync_replicas_only_with_three_replicas() -> None:
    specs = resolve_specs(_settings(rf=3))
    assert {s.configs.get("min.insync.replicas") for s in specs} == {"2"}


def test_on_demand_names_use_patterns() -> None:
    settings = _settings("t2")
    [dispatch] = resolve_specs(settings, ["dispatch.330502.zhzf"])
    assert dispatch.name == "t2.dispatch.330502.zhzf"
    assert dispatch.configs["retention.ms"] == load_spec()["patterns"]["dispatch.*"]["configs"]["retention.ms"]


def test_dispatch_topics_get_the_patterns_partition_count_other_topics_the_default() -> None:
    from gridhub.core.kafka_admin import spec_partitions

    settings = _settings("t2")
    assert spec_partitions(settings, "dispatch.330502.zhzf") == load_spec()["patterns"]["dispatch.*"]["partitions"]
    assert spec_partitions(settings, "dispatch.330502.zhzf") < settings.partitions
    assert spec_partitions(settings, "reports") == settings.partitions


def test_plan_creates_alters_grows_and_reports_drift() -> None:
    settings = _settings("t3")
    specs = resolve_specs(settings, ["raw.sensors", "reports", "cases", "dlq", "feedback"])
    state = {
        "t3.reports": {"partitions": 24, "replication_factor": 1,
                       "configs": {"cleanup.policy": "delete", "retention.ms": "604800000"}},
        "t3.cases": {"partitions": 6, "replication_factor": 1,
                     "configs": {"cleanup.policy": "delete", "retention.ms": "604800000"}},
        "t3.dlq": {"partitions": 12, "replication_factor": 2,
                   "configs": {"cleanup.policy": "delete", "retention.ms": "7776000000"}},
        "t3.feedback": {"partitions": 12, "replication_factor": 1,
                        "configs": {"cleanup.policy": "delete", "retention.ms": "2592000000"}},
    }
    actions = {(a.topic, a.kind): a for a in plan(specs, state, settings)}
    assert actions[("t3.raw.sensors", "create")].changes["partitions"] == 12
    assert "cannot remove" in actions[("t3.reports", "drift")].detail
    assert actions[("t3.cases", "alter")].changes["configs"] == {"cleanup.policy": "compact"}
    assert actions[("t3.cases", "partitions")].changes["partitions"] == 12
    assert "replication factor 2" in actions[("t3.dlq", "drift")].detail
    assert ("t3.feedback", "ok") in actions


def test_windowed_changelog_policy_is_accepted() -> None:
    settings = _settings("t4")
    specs = resolve_specs(settings, ["t4.gridhub-alarms-changelog"])
    state = {"t4.gridhub-alarms-changelog": {"partitions": 3, "replication_factor": 1,
                                             "configs": {"cleanup.policy": "compact,delete",
                                                         "retention.ms": "604800000"}}}
    # Faust's own retention and partition count are left alone: nothing to do
    assert [a.kind for a in plan(specs, state, settings)] == ["ok"]


def test_the_spec_is_read_again_when_the_file_changes_and_callers_cannot_edit_the_cache(tmp_path) -> None:
    import os

    path = tmp_path / "topics.yaml"
    path.write_text("defaults: {partitions: 12}\n", encoding="utf-8")
    first = load_spec(path)
    first["defaults"]["partitions"] = 99  # a caller's edit stays in its own copy
    assert load_spec(path) == {"defaults": {"partitions": 12}}
    path.write_text("defaults: {partitions: 6}\n", encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a later mtime even on coarse clocks
    assert load_spec(path) == {"defaults": {"partitions": 6}}
