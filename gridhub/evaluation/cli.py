"""``gridhub eval``: measure the hub's decisions against labelled traffic."""

from __future__ import annotations

import json
import sys

import click

from gridhub.logging import get_logger

log = get_logger(__name__)


@click.group("eval")
def eval_group() -> None:
    """Measure quality on labelled data (see docs/fusion.md)."""


@eval_group.command("fusion")
@click.option("--devset", "devset_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="a directory in the dev set's layout (records.jsonl, labels.jsonl with kind, "
                   "registry.jsonl, incidents.json); replaces --records/--labels/--registry")
@click.option("--records", "records_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON Lines {source, doc} in delivery order (gridhub simulate --records)")
@click.option("--labels", "labels_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON Lines {source, source_ref, incident[, kind]} (gridhub simulate --labels, or the dev set's)")
@click.option("--registry", "registry_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="device registry: CSV (gridhub simulate's devices.csv) or JSON Lines of CONTRACTS 1.3 records")
@click.option("--incidents", "incidents_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="the dev set's incidents.json: scores are also printed per module")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="fusion config (default deploy/fusion.yaml)")
@click.option("--worst", default=5, show_default=True, help="how many worst merges and splits to explain")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of text")
@click.option("--min-f1", type=float, default=None, help="exit 1 when B-cubed F1 is below this")
def fusion(devset_dir: str | None, records_path: str | None, labels_path: str | None, registry_path: str | None,
           incidents_path: str | None, config_path: str | None, worst: int, as_json: bool,
           min_f1: float | None) -> None:
    """B-cubed precision / recall / F1 and coverage of the report->case mapping, and the worst
    merges and splits with their reports side by side (source, ref, time, category, address, text).

    Runs every record through the real normaliser (streams.ingest.normalize) and the real
    fusion engine, in process, in delivery order.
    """
    from gridhub.evaluation.fusion import read_devset, read_jsonl, read_registry, run
    from streams.fusion.config import load_config

    groups: dict[str, str] = {}
    if devset_dir:
        records, labels, registry, groups = read_devset(devset_dir)
    else:
        if not records_path or not labels_path:
            raise click.UsageError("give --devset DIR, or --records and --labels")
        records, labels = list(read_jsonl(records_path)), list(read_jsonl(labels_path))
        registry = {str(r["deviceId"]): r for r in read_registry(registry_path)} if registry_path else {}
    if incidents_path:
        raw = json.loads(open(incidents_path, encoding="utf-8").read())
        groups = {str(k): str(v.get("module") or "") for k, v in raw.items() if isinstance(v, dict)}
    result = run(records, labels, config=load_config(config_path), registry=registry or None, worst=worst,
                 groups=groups or None)
    s = result.scores
    if as_json:
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False))
    else:
        click.echo(f"records {result.records}  reports {result.reports}  rejected {result.rejected}  "
                   f"labelled items {s.items}  incidents {result.incidents}  cases {result.cases}")
        click.echo(f"B-cubed precision {s.precision:.4f}  recall {s.recall:.4f}  F1 {s.f1:.4f}  "
                   f"coverage {result.coverage:.4f}")
        for name, g in sorted(result.by_group.items()):
            click.echo(f"  {name:16} P {g.precision:.4f}  R {g.recall:.4f}  F1 {g.f1:.4f}  ({g.items} items)")
        if result.non_incident_linked:
            click.echo(f"non-incident records linked into a case: {len(result.non_incident_linked)}: "
                       + ", ".join(result.non_incident_linked[:5]))
        if result.reject_reasons:
            click.echo("rejected by the normaliser: " + "; ".join(
                f"{n} x {reason}" for reason, n in result.reject_reasons.most_common(3)))
        click.echo(f"\nworst merges (one case, several incidents): {len(result.merged)} shown, "
                   "the reports grouped by incident")
        for c in result.merged:
            click.echo(f"  case {c.key} (costs F1 ~{c.cost:.4f}): " + ", ".join(f"{i} x{n}" for i, n in c.parts))
            for part, row in c.rows:
                click.echo(f"    {part[:12]:12} {row.line()}")
        click.echo(f"\nworst splits (one incident, several cases): {len(result.split)} shown, "
                   "the reports grouped by case")
        for c in result.split:
            click.echo(f"  incident {c.key} (costs F1 ~{c.cost:.4f}): "
                       + ", ".join(f"{i[:12]} x{n}" for i, n in c.parts))
            for part, row in c.rows:
                click.echo(f"    {part[:12]:12} {row.line()}")
    log.info("fusion_eval", precision=round(s.precision, 4), recall=round(s.recall, 4), f1=round(s.f1, 4),
             items=s.items, coverage=round(result.coverage, 4))
    if min_f1 is not None and s.f1 < min_f1:
        click.echo(f"F1 {s.f1:.4f} is below --min-f1 {min_f1}", err=True)
        sys.exit(1)
