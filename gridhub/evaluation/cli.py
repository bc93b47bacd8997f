"""``gridhub eval``: measure the hub's decisions against labelled traffic."""

from __future__ import annotations

import json
import sys

import click

from gridhub.core.logging import get_logger

log = get_logger(__name__)


@click.group("eval")
def eval_group() -> None:
    """Measure quality on labelled data (see docs/fusion.md)."""


@eval_group.command("fusion")
@click.option("--records", "records_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="JSON Lines {source, doc} in delivery order (gridhub simulate --records)")
@click.option("--labels", "labels_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="JSON Lines {source, source_ref, incident} (gridhub simulate --labels)")
@click.option("--registry", "registry_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="device registry: CSV (gridhub simulate's devices.csv) or JSON Lines of CONTRACTS 1.3 records")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="fusion config (default deploy/fusion.yaml)")
@click.option("--worst", default=5, show_default=True, help="how many worst confusions to print")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of text")
@click.option("--min-f1", type=float, default=None, help="exit 1 when B-cubed F1 is below this")
def fusion(records_path: str, labels_path: str, registry_path: str | None, config_path: str | None,
           worst: int, as_json: bool, min_f1: float | None) -> None:
    """B-cubed precision / recall / F1 of the report->case mapping, and the worst confusions.

    Runs every record through the real normaliser (streams.ingest.normalize) and the real
    fusion engine, in process, in delivery order.
    """
    from gridhub.evaluation.fusion import read_jsonl, read_registry, run
    from streams.fusion.config import load_config

    registry = {str(r["deviceId"]): r for r in read_registry(registry_path)} if registry_path else None
    result = run(read_jsonl(records_path), read_jsonl(labels_path), config=load_config(config_path),
                 registry=registry, worst=worst)
    s = result.scores
    if as_json:
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False))
    else:
        click.echo(f"records {result.records}  reports {result.reports}  rejected {result.rejected}  "
                   f"labelled items {s.items}  incidents {result.incidents}  cases {result.cases}")
        click.echo(f"B-cubed precision {s.precision:.4f}  recall {s.recall:.4f}  F1 {s.f1:.4f}")
        if result.reject_reasons:
            click.echo("rejected by the normaliser: " + "; ".join(
                f"{n} x {reason}" for reason, n in result.reject_reasons.most_common(3)))
        click.echo(f"\nworst merges (one case, several incidents): {len(result.merged)} shown")
        for c in result.merged:
            click.echo(f"  case {c.key}: " + ", ".join(f"{i} x{n}" for i, n in c.parts))
            for e in c.examples:
                click.echo(f"      {e}")
        click.echo(f"\nworst splits (one incident, several cases): {len(result.split)} shown")
        for c in result.split:
            click.echo(f"  incident {c.key}: " + ", ".join(f"{i} x{n}" for i, n in c.parts))
            for e in c.examples:
                click.echo(f"      {e}")
    log.info("fusion_eval", precision=round(s.precision, 4), recall=round(s.recall, 4), f1=round(s.f1, 4),
             items=s.items)
    if min_f1 is not None and s.f1 < min_f1:
        click.echo(f"F1 {s.f1:.4f} is below --min-f1 {min_f1}", err=True)
        sys.exit(1)
