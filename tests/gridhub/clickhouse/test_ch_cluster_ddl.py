"""``gridhub ch migrate --cluster``: the single-node DDL rewritten for replicas, without a server."""

from __future__ import annotations

import re

import pytest

from connectors.clickhouse.migrate import MigrationError, cluster_statements, load_migrations, render

FACT_TABLES = {"reports", "cases", "case_events", "dispatches", "dead_letters", "device_events"}


def statements(cluster: str | None) -> list[str]:
    return [s for m in load_migrations() for s in render(m.text, "gh", (18, 16, 1), cluster)]


def test_without_a_cluster_the_ddl_is_unchanged() -> None:
    single = statements(None)
    assert not any("Replicated" in s or "Distributed" in s for s in single)
    created = {m.group(1) for s in single if (m := re.match(r"CREATE TABLE IF NOT EXISTS gh\.(\w+)", s))}
    assert created == FACT_TABLES


def test_every_fact_table_becomes_replicated_local_plus_distributed() -> None:
    out = statements("gridhub")
    local = {m.group(1): s for s in out if (m := re.match(r"CREATE TABLE IF NOT EXISTS gh\.(\w+)_local ", s))}
    dist = {m.group(1): s for s in out if (m := re.match(r"CREATE TABLE IF NOT EXISTS gh\.(\w+) AS ", s))}
    assert set(local) == set(dist) == FACT_TABLES
    for table, ddl in local.items():
        assert f"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/gh/{table}', '{{replica}}'" in ddl
        assert "ORDER BY" in ddl
    # The version column stays the ReplacingMergeTree version; the sharding key is the ORDER BY key.
    assert "'{replica}', version)" in local["reports"]
    assert "'{replica}')" in local["case_events"]
    assert dist["reports"].endswith("ENGINE = Distributed(gridhub, gh, reports_local, cityHash64(report_id))")
    assert dist["case_events"].endswith("cityHash64(case_id, event_id))")
    # Views stay as written: they read the contract names, now the Distributed tables.
    views = [s for s in out if s.startswith("CREATE VIEW")]
    assert views and views == [s for s in statements(None) if s.startswith("CREATE VIEW")]


def test_alter_reaches_the_replicated_table_and_the_distributed_one() -> None:
    got = cluster_statements("ALTER TABLE gh.reports ADD COLUMN x String", "gh", "gridhub")
    assert got == ["ALTER TABLE gh.reports_local ADD COLUMN x String", "ALTER TABLE gh.reports ADD COLUMN x String"]


def test_a_table_without_order_by_or_a_bad_cluster_name_is_refused() -> None:
    with pytest.raises(MigrationError, match="ORDER BY"):
        cluster_statements("CREATE TABLE gh.t (a UInt8) ENGINE = ReplacingMergeTree", "gh", "gridhub")
    with pytest.raises(MigrationError, match="identifier"):
        cluster_statements("SELECT 1", "gh", "grid hub; DROP")
