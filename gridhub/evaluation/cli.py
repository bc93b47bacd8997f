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


@eval_group.command("routing")
@click.option("--records", "records_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="JSON Lines {source, doc} in delivery order")
@click.option("--labels", "labels_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="JSON Lines {source, source_ref, incident, kind}")
@click.option("--incidents", "incidents_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="JSON object incident id -> {category, expected_lead, expected_also, county_code, summary}")
@click.option("--registry", "registry_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="device registry: CSV or JSON Lines of CONTRACTS 1.3 records")
@click.option("--category-map", "category_map_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON object label category -> hub category code (or list of codes); "
                   "without it category accuracy is not scored")
@click.option("--rules", "rules_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="routing rules (default deploy/routing.yaml)")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="fusion config (default deploy/fusion.yaml)")
@click.option("--module", "modules", multiple=True,
              help="score only the incidents whose 'module' is this (repeatable): a hold-out half")
@click.option("--tokenizer", type=click.Choice(["jieba", "chars", "off"]), default=None,
              help="override deploy/categories.yaml's classifier tokenizer (off: the text is not read)")
@click.option("--worst", default=10, show_default=True, help="how many worst misses to print")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of text")
@click.option("--min-lead", type=float, default=None, help="exit 1 when lead accuracy is below this")
def routing(records_path: str, labels_path: str, incidents_path: str, registry_path: str | None,
            category_map_path: str | None, rules_path: str | None, config_path: str | None,
            modules: tuple[str, ...], tokenizer: str | None, worst: int, as_json: bool,
            min_lead: float | None) -> None:
    """Routing lead accuracy, assisting-agency recall and category accuracy per source.

    Replays every record through the real normaliser and fusion engine in process, plans each
    incident's case with the routing rules, and scores as the dev set README says.
    """
    from pathlib import Path

    from gridhub.evaluation.fusion import read_jsonl, read_registry
    from gridhub.evaluation.routing import read_incidents, run
    from gridhub.core.settings import REPO_ROOT
    from streams.fusion.config import load_config
    from streams.routing.rules import load_rules

    from streams.ingest import classify

    if tokenizer:
        classify.use_tokenizer(tokenizer)
    registry = {str(r["deviceId"]): r for r in read_registry(registry_path)} if registry_path else None
    cmap = None
    if category_map_path:
        raw = json.loads(Path(category_map_path).read_text(encoding="utf-8"))
        cmap = {k: v for k, v in raw.items() if not k.startswith("_")}  # "_comment" keys document the file
    rules = load_rules(Path(rules_path) if rules_path else REPO_ROOT / "deploy" / "routing.yaml")
    wanted = set(modules)
    result, rep = run(read_jsonl(records_path), list(read_jsonl(labels_path)), read_incidents(incidents_path),
                      rules, category_map=cmap, config=load_config(config_path), registry=registry,
                      only=(lambda _i, inc: str(inc.get("module")) in wanted) if wanted else None)
    if as_json:
        click.echo(json.dumps(result.as_dict(worst), ensure_ascii=False))
    else:
        click.echo(f"incidents {len(result.incidents)}  routing lead accuracy {result.lead_accuracy:.4f}  "
                   f"assisting-agency recall {result.also_recall:.4f} (of {result.also_total})")
        for source, (right, n) in sorted(result.category.items()):
            click.echo(f"category accuracy {source:<15} {right / n if n else 1.0:.4f}  ({right}/{n})")
        if rep.rejected:
            click.echo("rejected by the normaliser: " + "; ".join(
                f"{n} x {reason}" for reason, n in rep.rejected.most_common(3)))
        misses = result.misses()
        click.echo(f"\nwrong lead: {len(misses)} incidents, {min(worst, len(misses))} shown")
        for r in misses[:worst]:
            click.echo(f"  {r.incident} expected {r.expected_lead} got {r.lead} (case category {r.category}, "
                       f"{r.items} reports): {r.summary[:70]}")
            for t in r.texts:
                click.echo(f"      {t}")
        click.echo(f"\nwrong category: {len(result.category_misses)} reports, "
                   f"{min(worst, len(result.category_misses))} shown")
        if result.category_misses:
            click.echo("  by pair: " + "; ".join(f"{s} {e} -> {g} x{n}" for s, e, g, n in result.confusions()[:8]))
        for m in result.category_misses[:worst]:
            click.echo(f"  {m.source}:{m.source_ref} ({m.incident}) expected {'|'.join(m.expected)} got {m.got}")
            click.echo(f"      {m.text}")
    log.info("routing_eval", lead_accuracy=round(result.lead_accuracy, 4), also_recall=round(result.also_recall, 4),
             incidents=len(result.incidents))
    if min_lead is not None and result.lead_accuracy < min_lead:
        click.echo(f"lead accuracy {result.lead_accuracy:.4f} is below --min-lead {min_lead}", err=True)
        sys.exit(1)
