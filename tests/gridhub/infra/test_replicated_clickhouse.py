"""Replicated ClickHouse for real: ZooKeeper + two 18.16 replicas started by the project's infra code.

The sink (``gridhub run --only clickhouse``) writes to replica 1 with
``GRIDHUB_CLICKHOUSE_CLUSTER`` set, so it migrates both replicas itself (each
over its own connection) and inserts through the Distributed tables.  Every
analyst query of deploy/analyst.sql and every view is then read through
replica 2 and must answer exactly as a single-node database loaded with the
same rows does on the shared dev server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from connectors.clickhouse.backend import DriverBackend
from connectors.clickhouse.migrate import migrate
from gridhub.clickhouse.report import run_queries
from gridhub.clickhouse.synthetic import encoded, generate, produce, rows
from gridhub.infra import InfraError
from gridhub.infra.replicated import ReplicatedClickHouse
from gridhub.core.settings import Settings
from gridhub.supervisor import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOW = int(time.time())
ID_COLUMNS = {"reports": "report_id", "cases": "case_id", "case_events": "event_id", "dispatches": "dispatch_id"}
#: Quick flushes: the load takes several INSERT rounds through the Distributed tables.
FAST = {"GRIDHUB_CH_SINK_BATCH_ROWS": "300", "GRIDHUB_CH_SINK_FLUSH_SECONDS": "0.3"}


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicatedClickHouse]:
    """ZooKeeper + 2 replicas on free ports in a private run dir (the shared servers are untouched)."""
    base = Settings()
    cluster = ReplicatedClickHouse(
        base, 2, run_dir=tmp_path_factory.mktemp("replicated"), zookeeper_port=free_port(),
        ports=[(free_port(), free_port(), free_port()) for _ in range(2)])
    try:
        cluster.up()
    except InfraError as error:
        cluster.down()
        pytest.fail(f"replicated ClickHouse did not come up: {error}\n{error.detail}", pytrace=False)
    yield cluster
    cluster.down()


def client(s: Settings, database: str = "default") -> Any:
    from clickhouse_driver import Client

    return Client(s.clickhouse_host, port=s.clickhouse_port, user=s.clickhouse_user,
                  password=s.secret("clickhouse_password"), database=database)


def ids(c: Any, database: str, table: str, column: str) -> set[str]:
    try:
        return {r[0] for r in c.execute(f"SELECT {column} FROM {database}.{table}")}
    except Exception:  # the sink has not created its tables yet
        return set()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def view_rows(backend: DriverBackend, database: str) -> dict[str, list[tuple[Any, ...]]]:
    views = [r[0] for r in backend.query(
        f"SELECT name FROM system.tables WHERE database = '{database}' AND engine = 'View' ORDER BY name").rows]
    assert len(views) >= 10
    return {v: sorted(backend.query(f"SELECT * FROM {database}.{v}").rows, key=repr) for v in views}


def test_sink_writes_to_one_replica_and_the_other_answers_every_query_like_a_single_node(
        replicated: ReplicatedClickHouse, settings: Settings, kafka_producer: Any, worker: Any) -> None:
    facts = generate(400, NOW * 1000, seed=17, townships=4, agencies=3)
    table_rows = rows(facts, settings)
    want = {t: {r[col] for r in table_rows[t]} for t, col in ID_COLUMNS.items()}
    db = settings.ch_database
    first, second = replicated.replica_settings(1, settings), replicated.replica_settings(2, settings)
    reader = client(second)
    try:
        produce(kafka_producer, encoded(facts, settings))
        worker(first, only="clickhouse", env=FAST)

        # Replica 2's own replicated tables (not the Distributed ones, which could read replica 1) fill up.
        wait_for(lambda: all(ids(reader, db, f"{t}_local", c) == want[t] for t, c in ID_COLUMNS.items()),
                 240, "every row replicated to replica 2")

        # The sink migrated both replicas: the same replicated DDL on each, none on the shared server.
        for s in (first, second):
            engines = dict(client(s).execute(
                f"SELECT name, engine FROM system.tables WHERE database = '{db}' AND name IN "
                "('reports', 'reports_local', 'dispatches', 'dispatches_local')"))
            assert engines == {"reports": "Distributed", "reports_local": "ReplicatedReplacingMergeTree",
                               "dispatches": "Distributed", "dispatches_local": "ReplicatedReplacingMergeTree"}
        macros = dict(reader.execute("SELECT macro, substitution FROM system.macros"))
        assert macros["replica"] == "replica-2" and macros["shard"] == "01"

        reference = f"{db}_single"
        single = DriverBackend.from_settings(settings)
        try:
            migrate(single, reference)
            for table, data in table_rows.items():
                single.insert(f"{reference}.{table}", data)
            expected = run_queries(DriverBackend.from_settings(settings, database=reference), NOW)
            expected_views = view_rows(single, reference)
        finally:
            single.execute(f"DROP DATABASE IF EXISTS {reference}")
            single.close()

        through_second = DriverBackend.from_settings(second, database=db)
        got = run_queries(through_second, NOW)
        got_views = view_rows(through_second, db)
        assert sum(1 for answer in expected if answer.rows) >= 5
        for mine, theirs in zip(got, expected, strict=True):
            assert mine == theirs, mine.query.name
        assert got_views == expected_views
    finally:
        reader.disconnect()
        for s in (first, second):
            c = client(s)
            c.execute(f"DROP DATABASE IF EXISTS {db}")
            c.disconnect()


def test_cluster_ddl_refuses_a_single_node_database(replicated: ReplicatedClickHouse) -> None:
    """A database migrated without --cluster is not silently kept as single-node tables."""
    from connectors.clickhouse.migrate import MigrationError

    s = replicated.replica_settings(1)
    backend = DriverBackend.from_settings(s)
    try:
        migrate(backend, "gh_single_then_cluster")
        with pytest.raises(MigrationError, match="single-node"):
            migrate(backend, "gh_single_then_cluster", cluster=replicated.cluster)
    finally:
        backend.execute("DROP DATABASE IF EXISTS gh_single_then_cluster")
        backend.close()


def test_replica_configs_name_the_cluster_the_coordinator_and_the_macros(tmp_path: Any) -> None:
    """The generated configs alone (no servers): what `gridhub infra up --clickhouse-replicas 2` writes."""
    import xml.etree.ElementTree as ET

    # Field defaults, not Settings(): CI may move the dev ports through GRIDHUB_* variables.
    cluster = ReplicatedClickHouse(Settings.model_construct(), 2, run_dir=tmp_path)
    assert [r.ports() for r in cluster.replicas] == [[29000, 28123, 29009], [29010, 28133, 29019]]
    for number, replica in enumerate(cluster.replicas, start=1):
        replica.prepare()
        xml = ET.parse(replica.home / "config.d" / "cluster.xml").getroot()
        hosts = [(r.findtext("host"), r.findtext("port")) for r in xml.findall("./remote_servers/gridhub/shard/replica")]
        assert hosts == [("127.0.0.1", "29000"), ("127.0.0.1", "29010")]
        assert xml.findtext("./remote_servers/gridhub/shard/internal_replication") == "true"
        assert xml.findtext("./zookeeper/node/port") == str(cluster.zookeeper.port)
        assert (xml.findtext("./macros/shard"), xml.findtext("./macros/replica")) == ("01", f"replica-{number}")
    cluster.zookeeper.prepare()
    zoo = dict(line.split("=", 1) for line in (cluster.zookeeper.config_file).read_text().splitlines()
               if line and not line.startswith("#"))
    assert zoo["clientPort"] == "22181" and zoo["dataDir"] == str(cluster.zookeeper.data_dir)
    settings = cluster.replica_settings(2, Settings(namespace="x"))
    assert (settings.clickhouse_port, settings.clickhouse_cluster, settings.namespace) == (29010, "gridhub", "x")
