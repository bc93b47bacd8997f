"""``gridhub ch``: ClickHouse administration."""

from __future__ import annotations

import click

from gridhub.core.settings import get_settings


@click.group("ch")
def ch() -> None:
    """ClickHouse: schema migrations."""


@ch.command("migrate")
@click.option("--database", default=None, help="target database (default: settings.ch_database)")
def migrate_command(database: str | None) -> None:
    """Apply the DDL in schemas/migrations that the database has not seen yet (idempotent)."""
    from connectors.clickhouse.backend import DriverBackend
    from connectors.clickhouse.migrate import migrate

    settings = get_settings()
    backend = DriverBackend.from_settings(settings)
    try:
        result = migrate(backend, database or settings.ch_database)
    finally:
        backend.close()
    click.echo(f"database {result.database} on ClickHouse {result.server_version}: "
               f"{len(result.applied)} applied, {len(result.already)} already applied")
    for label in result.applied:
        click.echo(f"  applied {label}")
