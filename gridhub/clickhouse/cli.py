"""``gridhub ch``: ClickHouse administration."""

from __future__ import annotations

import click

from gridhub.core.settings import get_settings


@click.group("ch")
def ch() -> None:
    """ClickHouse: schema migrations."""


@ch.command("migrate")
@click.option("--database", default=None, help="target database (default: settings.ch_database)")
@click.option("--cluster", default=None,
              help="replicated: Replicated*MergeTree + Distributed tables on every replica of this cluster "
                   "(remote_servers name; default: GRIDHUB_CLICKHOUSE_CLUSTER)")
def migrate_command(database: str | None, cluster: str | None) -> None:
    """Apply the DDL in schemas/migrations that the database has not seen yet (idempotent)."""
    from connectors.clickhouse.backend import DriverBackend
    from connectors.clickhouse.migrate import MigrationError, migrate, migrate_cluster

    settings = get_settings()
    cluster = cluster or settings.clickhouse_cluster or None
    if cluster:
        try:
            results = migrate_cluster(settings, database or settings.ch_database, cluster)
        except MigrationError as error:
            raise click.ClickException(str(error)) from None
        for replica, result in results:
            click.echo(f"database {result.database} on replica {replica} of cluster {cluster} "
                       f"(ClickHouse {result.server_version}): {len(result.applied)} applied, "
                       f"{len(result.already)} already applied")
        return
    backend = DriverBackend.from_settings(settings)
    try:
        result = migrate(backend, database or settings.ch_database)
    finally:
        backend.close()
    click.echo(f"database {result.database} on ClickHouse {result.server_version}: "
               f"{len(result.applied)} applied, {len(result.already)} already applied")
    for label in result.applied:
        click.echo(f"  applied {label}")
