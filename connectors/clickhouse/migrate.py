"""Versioned ClickHouse DDL: ``schemas/migrations/NNNN_name.sql``.

Why a tool of our own: the DDL must run unchanged on ClickHouse 18.16 (the
Debian package these machines install) and on current ClickHouse, and the
two disagree (``LowCardinality`` needs an experimental setting on 18.16 that
current servers reject; 18.16 has no ``ADD COLUMN IF NOT EXISTS``).  So the
tool asks the server its version, renders placeholders accordingly, applies
each file once, and records ``(version, name, checksum, server_version)`` in
``<db>.schema_migrations``.  A file changed after it was applied is refused:
write a new migration instead.

Placeholders: ``{db}`` the target database; ``{lcstring}``
``LowCardinality(String)`` from 19.9 on (where it needs no setting), else
``String``.

**Replicated (``--cluster NAME``).**  The files are written once, for one
node.  With a cluster name, :func:`cluster_statements` rewrites each fact table
``CREATE TABLE {db}.t (...) ENGINE = ReplacingMergeTree(v) ...`` into

* ``{db}.t_local``: ``ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/<db>/t', '{replica}', v)``
  (the ``{shard}`` / ``{replica}`` macros come from each server's config), and
* ``{db}.t``: ``Distributed(NAME, <db>, t_local, cityHash64(<ORDER BY columns>))``, the
  contract name analysts, the views and the sink use.  Every version of one
  row has the same ORDER BY key, so it lands on one shard and ``FINAL`` stays
  correct per shard.

Views and the ledger are per server.  :func:`migrate_cluster` applies the
files on *every* replica the cluster lists (``system.clusters``), each over its
own connection: never through a load balancer, which would create the tables
on whichever replica it picked.  ``ON CLUSTER`` DDL is not used: it needs each
server to recognise itself in ``remote_servers`` by address, which pod
networking and a one-machine test both break.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.clickhouse.backend import Backend, DriverBackend
from gridhub.core.logging import get_logger
from gridhub.core.settings import REPO_ROOT, Settings

log = get_logger(__name__)

MIGRATIONS_DIR = REPO_ROOT / "schemas" / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# LowCardinality left experimental in 19.9 (ClickHouse changelog 2019).
LOW_CARDINALITY_SINCE = (19, 9)


class MigrationError(RuntimeError):
    """The migrations on disk and those recorded in the database disagree."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass
class MigrateResult:
    database: str
    server_version: str
    applied: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is used twice")
        found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def check_database_name(database: str) -> str:
    if not _IDENT.match(database):
        raise MigrationError(f"{database!r} is not a plain ClickHouse identifier")
    return database


def render(text: str, database: str, server_version: tuple[int, ...], cluster: str | None = None) -> list[str]:
    """The statements of one migration file, placeholders filled, comments dropped.

    With ``cluster``, fact tables become replicated + Distributed (:func:`cluster_statements`).
    """
    lcstring = "LowCardinality(String)" if server_version >= LOW_CARDINALITY_SINCE else "String"
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    body = body.replace("{db}", check_database_name(database)).replace("{lcstring}", lcstring)
    statements = [stmt.strip() for stmt in re.split(r";\s*(?:\n|$)", body) if stmt.strip()]
    if cluster:
        return [out for stmt in statements for out in cluster_statements(stmt, database, cluster)]
    return statements


_CREATE_TABLE = re.compile(
    r"^CREATE TABLE (?P<ine>IF NOT EXISTS )?(?P<db>\w+)\.(?P<table>\w+)\s*(?P<body>\(.*\))\s*"
    r"ENGINE\s*=\s*(?P<engine>\w*MergeTree)(?:\((?P<args>[^)]*)\))?(?P<rest>.*)$", re.S)
_ORDER_BY = re.compile(r"ORDER BY\s+(\([^)]*\)|[\w.]+)")
_ALTER_TABLE = re.compile(r"^ALTER TABLE (?P<db>\w+)\.(?P<table>\w+)\s+(?P<rest>.*)$", re.S)


def zookeeper_path(database: str, table: str) -> str:
    """Where a replicated table keeps its parts list in ZooKeeper / Keeper (one per shard and table)."""
    return f"/clickhouse/tables/{{shard}}/{database}/{table}"


def cluster_statements(statement: str, database: str, cluster: str) -> list[str]:
    """One single-node statement as the statements of a replicated cluster (module docstring)."""
    check_database_name(cluster)
    create = _CREATE_TABLE.match(statement)
    if create:
        table, engine, rest = create["table"], create["engine"], create["rest"]
        order = _ORDER_BY.search(rest)
        if order is None:
            raise MigrationError(f"{table}: a MergeTree table without ORDER BY cannot be sharded")
        key = order.group(1).strip("()")
        args = ", ".join(a for a in (f"'{zookeeper_path(database, table)}'", "'{replica}'",
                                     (create["args"] or "").strip()) if a)
        ine = create["ine"] or ""
        return [
            f"CREATE TABLE {ine}{database}.{table}_local {create['body']}\n"
            f"ENGINE = Replicated{engine}({args}){rest}",
            f"CREATE TABLE {ine}{database}.{table} AS {database}.{table}_local\n"
            f"ENGINE = Distributed({cluster}, {database}, {table}_local, cityHash64({key}))",
        ]
    alter = _ALTER_TABLE.match(statement)
    if alter:  # a column added later: on the replicated table first, then on the Distributed one
        return [f"ALTER TABLE {database}.{alter['table']}_local {alter['rest']}", statement]
    return [statement]


def _ledger_ddl(database: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations (version UInt32, name String, "
            "checksum String, server_version String, applied_at DateTime) "
            "ENGINE = ReplacingMergeTree(applied_at) ORDER BY version")


def applied_migrations(backend: Backend, database: str) -> dict[int, str]:
    result = backend.query(f"SELECT version, checksum FROM {database}.schema_migrations FINAL")
    return {int(version): str(checksum) for version, checksum in result.rows}


def _engines(backend: Backend, database: str) -> dict[str, str]:
    result = backend.query(f"SELECT name, engine FROM system.tables WHERE database = '{database}'")
    return {str(name): str(engine) for name, engine in result.rows}


def _check_mode(backend: Backend, database: str, cluster: str | None) -> None:
    """Refuse to mix modes: ``IF NOT EXISTS`` would silently keep a single-node table in a cluster."""
    engines = _engines(backend, database)
    for name, engine in engines.items():
        if name == "schema_migrations" or engine in ("View", "MaterializedView"):
            continue
        replicated = engine == "Distributed" or engine.startswith("Replicated")
        if cluster and not replicated:
            raise MigrationError(f"{database}.{name} is a single-node {engine} table; a cluster needs "
                                 "Replicated tables: migrate into a new database and replay")
        if not cluster and replicated:
            raise MigrationError(f"{database}.{name} is a {engine} table: run `gridhub ch migrate --cluster NAME`")


def _prepare(backend: Backend, database: str, cluster: str | None) -> tuple[tuple[int, ...], dict[int, str]]:
    """The server's version and the migrations already applied to ``database`` (created if missing)."""
    check_database_name(database)
    version = backend.server_version()
    backend.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    backend.execute(_ledger_ddl(database))
    _check_mode(backend, database, cluster)
    return version, applied_migrations(backend, database)


#: An ALTER of a replicated table (``cluster_statements`` names them ``<table>_local``).
_REPLICATED_ALTER = re.compile(r"^ALTER TABLE \w+\.\w+_local\s")


def _apply(backend: Backend, database: str, migration: Migration, version: tuple[int, ...], done: dict[int, str],
           result: MigrateResult, cluster: str | None, replicated_alters: bool = True) -> None:
    """Apply one migration unless ``done`` has it (a changed file is refused), and record it."""
    label = f"{migration.version:04d}_{migration.name}"
    if migration.version in done:
        if done[migration.version] != migration.checksum:
            raise MigrationError(f"{label} changed after it was applied to {database}; add a new migration")
        result.already.append(label)
        return
    version_text = ".".join(map(str, version))
    for statement in render(migration.text, database, version, cluster):
        if not replicated_alters and _REPLICATED_ALTER.match(statement):
            continue  # ClickHouse replicates it from the shard's first replica
        backend.execute(statement)
    backend.insert(f"{database}.schema_migrations", [{
        "version": migration.version, "name": migration.name, "checksum": migration.checksum,
        "server_version": version_text, "applied_at": int(time.time())}])
    log.info("ch.migration_applied", database=database, migration=label, server_version=version_text)
    result.applied.append(label)


def migrate(backend: Backend, database: str, directory: Path = MIGRATIONS_DIR,
            cluster: str | None = None) -> MigrateResult:
    """Apply every migration not yet recorded in ``database``; idempotent.

    ``cluster``: this server is one replica of that cluster (``remote_servers``); create replicated
    and Distributed tables (module docstring).  A cluster is migrated by :func:`migrate_cluster`,
    all replicas in step.
    """
    version, done = _prepare(backend, database, cluster)
    result = MigrateResult(database, ".".join(map(str, version)))
    for migration in load_migrations(directory):
        _apply(backend, database, migration, version, done, result, cluster)
    return result


def cluster_replicas(backend: Backend, cluster: str) -> list[tuple[int, str, int]]:
    """``(shard, host, port)`` of every replica of every shard of ``cluster``, as the server's config lists them."""
    check_database_name(cluster)
    result = backend.query(f"SELECT shard_num, host_name, port FROM system.clusters WHERE cluster = '{cluster}' "
                           "ORDER BY shard_num, replica_num")
    if not result.rows:
        raise MigrationError(f"cluster {cluster!r} is not in this server's remote_servers (system.clusters)")
    return [(int(shard), str(host), int(port)) for shard, host, port in result.rows]


def migrate_cluster(settings: Settings, database: str, cluster: str, directory: Path = MIGRATIONS_DIR,
                    **client_options: Any) -> list[tuple[str, MigrateResult]]:
    """Migrate ``database`` on every replica of ``cluster``, one direct connection each, in step.

    The replica list comes from the server at ``settings.clickhouse_host``; any replica's
    ``remote_servers`` names them all.  Each migration is applied on every replica before the next
    one starts: ZooKeeper keeps one structure per replicated table, so a replica that creates a
    table from an older file after another replica altered it is refused (ClickHouse error 122,
    "Table structure in ZooKeeper is too different").  An ALTER of a replicated table runs on the
    first replica of each shard only: ClickHouse replicates it to the others, and the same ALTER run
    twice would fail (18.16 has no ``ADD COLUMN IF NOT EXISTS``).  The Distributed tables, the
    views and the ledger are per server and run everywhere.  Returns ``("host:port", result)`` per
    replica.
    """
    first = DriverBackend.from_settings(settings, **client_options)
    try:
        layout = cluster_replicas(first, cluster)
    finally:
        first.close()
    replicas = []
    try:
        for shard, host, port in layout:
            backend = DriverBackend.from_settings(settings.model_copy(update={"clickhouse_host": host,
                                                                              "clickhouse_port": port}),
                                                  **client_options)
            replicas.append((shard, f"{host}:{port}", backend))
        prepared = [_prepare(backend, database, cluster) for _, _, backend in replicas]
        results = [MigrateResult(database, ".".join(map(str, version))) for version, _ in prepared]
        for migration in load_migrations(directory):
            shards_done: set[int] = set()
            for (shard, _, backend), (version, done), result in zip(replicas, prepared, results):
                _apply(backend, database, migration, version, done, result, cluster,
                       replicated_alters=shard not in shards_done)
                shards_done.add(shard)
        return [(name, result) for (_, name, _), result in zip(replicas, results)]
    finally:
        for _, _, backend in replicas:
            backend.close()
