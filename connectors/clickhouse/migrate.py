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
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from connectors.clickhouse.backend import Backend
from gridhub.core.logging import get_logger
from gridhub.core.settings import REPO_ROOT

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


def render(text: str, database: str, server_version: tuple[int, ...]) -> list[str]:
    """The statements of one migration file, placeholders filled, comments dropped."""
    lcstring = "LowCardinality(String)" if server_version >= LOW_CARDINALITY_SINCE else "String"
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    body = body.replace("{db}", check_database_name(database)).replace("{lcstring}", lcstring)
    return [stmt.strip() for stmt in re.split(r";\s*(?:\n|$)", body) if stmt.strip()]


def _ledger_ddl(database: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations (version UInt32, name String, "
            "checksum String, server_version String, applied_at DateTime) "
            "ENGINE = ReplacingMergeTree(applied_at) ORDER BY version")


def applied_migrations(backend: Backend, database: str) -> dict[int, str]:
    result = backend.query(f"SELECT version, checksum FROM {database}.schema_migrations FINAL")
    return {int(version): str(checksum) for version, checksum in result.rows}


def migrate(backend: Backend, database: str, directory: Path = MIGRATIONS_DIR) -> MigrateResult:
    """Apply every migration not yet recorded in ``database``; idempotent."""
    check_database_name(database)
    version = backend.server_version()
    version_text = ".".join(map(str, version))
    backend.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    backend.execute(_ledger_ddl(database))
    done = applied_migrations(backend, database)
    result = MigrateResult(database, version_text)
    for migration in load_migrations(directory):
        label = f"{migration.version:04d}_{migration.name}"
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                raise MigrationError(f"{label} changed after it was applied to {database}; add a new migration")
            result.already.append(label)
            continue
        for statement in render(migration.text, database, version):
            backend.execute(statement)
        backend.insert(f"{database}.schema_migrations", [{
            "version": migration.version, "name": migration.name, "checksum": migration.checksum,
            "server_version": version_text, "applied_at": int(time.time())}])
        log.info("ch.migration_applied", database=database, migration=label, server_version=version_text)
        result.applied.append(label)
    return result
