"""ClickHouse set-up shared by the tests that load facts themselves."""

from __future__ import annotations

from connectors.clickhouse.backend import DriverBackend
from connectors.clickhouse.migrate import migrate
from gridhub.core.settings import Settings


def migrate_database(settings: Settings) -> None:
    """Apply every migration (schemas/migrations) to the test namespace's ClickHouse database."""
    backend = DriverBackend.from_settings(settings)
    try:
        migrate(backend, settings.ch_database)
    finally:
        backend.close()
