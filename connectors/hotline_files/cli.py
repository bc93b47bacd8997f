"""``gridhub import 12345 FILE``: load a 12345 export (CSV / XLSX) into the hub."""

from __future__ import annotations

from pathlib import Path

import click

from connectors.hotline_files.importer import DEFAULT_BATCH, import_file
from gridhub.core.settings import get_settings

SOURCES = {"12345": "hotline-12345", "hotline-12345": "hotline-12345"}


@click.command("import")
@click.argument("source", type=click.Choice(sorted(SOURCES)))
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", default=DEFAULT_BATCH, show_default=True, help="rows per acknowledged Kafka batch")
@click.option("--sheet", default=None, help="XLSX sheet name (default: the active sheet)")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@click.option("--historical", is_flag=True,
              help="backfill: cases and facts are recorded for analysts, nothing is dispatched, nothing escalates")
def import_cmd(source: str, files: tuple[Path, ...], batch_size: int, sheet: str | None, no_progress: bool,
               historical: bool) -> None:
    """Import 12345 work-order export FILES (.csv in UTF-8/GB18030, or .xlsx) to raw.hotline-12345.

    Re-importing a file is safe: each row gives the same key (工单编号) and the same bytes,
    which the hub treats as a redelivery (no new report, no new case).  Bad rows are listed
    with their row number and sent to the dead-letter topic (stage file-import).
    """
    settings = get_settings()
    for path in files:
        summary = import_file(settings, path, batch_size=batch_size, sheet=sheet, progress=not no_progress,
                              historical=historical)
        click.echo(f"{path.name}: {summary.rows_read} rows read, {summary.produced} produced, "
                   f"{summary.rejected} rejected")
        for number, reason in summary.errors:
            click.echo(f"  row {number}: {reason}")
        if summary.rejected > len(summary.errors):
            click.echo(f"  ... and {summary.rejected - len(summary.errors)} more (see `gridhub dlq ls`)")
    # Exit status 0 even with rejected rows: they are dead-lettered and listed above, the good
    # rows are in.  A Kafka failure raises (non-zero exit); re-running the import is then safe.
