"""``gridhub ch``: ClickHouse administration."""

from __future__ import annotations

from pathlib import Path

import click

from gridhub.core.settings import get_settings


@click.group("ch")
def ch() -> None:
    """ClickHouse: schema migrations, analysts' users."""


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


@ch.command("users")
@click.option("--county", "counties", multiple=True, required=True, metavar="CODE",
              help="a county (6-digit code) whose analysts get a read-only user (repeatable)")
@click.option("--database", default=None, help="the hub's database (default: settings.ch_database)")
@click.option("--users-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="where the server merges users files (default: <run_dir>/clickhouse/users.d, the local server's)")
@click.option("--credentials", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="password files, one per user, 0600 (default: <run_dir>/secure/clickhouse-analysts)")
@click.option("--print", "print_only", is_flag=True, help="print the users file instead of installing it")
def users_command(counties: tuple[str, ...], database: str | None, users_dir: Path | None,
                  credentials: Path | None, print_only: bool) -> None:
    """Read-only analysts per county: row policies (current ClickHouse) or county copies (18.16).

    docs/security.md explains both; the password of user U is in CREDENTIALS/U.
    """
    from connectors.clickhouse.backend import DriverBackend
    from gridhub.clickhouse.users import county_access, install

    settings = get_settings()
    run_dir = Path(settings.run_dir)
    backend = DriverBackend.from_settings(settings)
    try:
        access = county_access(backend, database or settings.ch_database, list(counties),
                               credentials or run_dir / "secure" / "clickhouse-analysts")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    finally:
        backend.close()
    if print_only:
        click.echo(access.xml)
        return
    path = install(access, users_dir or run_dir / "clickhouse" / "users.d")
    click.echo(f"{access.mode}: {len(access.analysts)} read-only user(s) in {path}")
    for a in access.analysts:
        click.echo(f"  {a.user}: county {a.county}, database {a.database}")
