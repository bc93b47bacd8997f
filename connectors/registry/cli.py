"""``gridhub registry load devices.csv``."""

from __future__ import annotations

from pathlib import Path

import click

from connectors.registry.loader import load_registry, read_registry_csv
from gridhub.core.settings import get_settings


@click.group("registry")
def registry() -> None:
    """The IoT device registry (compacted topic registry.devices)."""


@registry.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def load(file: Path) -> None:
    """Load FILE to registry.devices (compacted, keyed by deviceId; created if missing).

    FILE is a CSV (UTF-8 or GB18030) with the columns deviceId, deviceType, streetCode,
    villageCode, address, lng, lat, owner, ownerPhone, heartbeatSeconds.
    """
    settings = get_settings()
    summary = load_registry(settings, read_registry_csv(file), source_name=file.name)
    click.echo(f"{file.name}: {summary.rows_read} rows read, {summary.produced} devices produced to "
               f"{settings.topic('registry.devices')}, {summary.rejected} rejected"
               + (" (topic created, compacted)" if summary.created_topic else ""))
    for number, reason in summary.errors[:100]:
        click.echo(f"  row {number}: {reason}")
