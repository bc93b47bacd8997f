"""``gridhub topics``: topics as code (``deploy/topics.yaml`` -> the broker) from the command line.

The library is :mod:`gridhub.core.kafka_admin`; this module is its click commands.

``gridhub topics ensure`` makes the broker match the spec where Kafka allows
it (create missing topics, set configs, add partitions) and reports the
differences it cannot fix: Kafka never removes partitions, and changing the
replication factor is a reassignment an operator plans, not a side effect of
a deploy.  ``ensure_topics(settings, names=None)`` is the same thing as a
function, for the demo, tests and services that create topics on demand
(``dispatch.<county>.<agency>``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from kafka.admin import ConfigResource, ConfigResourceType

from gridhub.core.kafka_admin import (admin_client, describe, end_offsets, ensure_topics, load_spec,
                                      namespace_topics)
from gridhub.core.logging import get_logger
from gridhub.core.settings import Settings
from gridhub.ops.common import render_table, settings_for

log = get_logger(__name__)

# --- commands -------------------------------------------------------------------------------

@click.group("topics")
def topics() -> None:
    """Topics as code (deploy/topics.yaml): list, and make the broker match."""


@topics.command("ensure")
@click.argument("names", nargs=-1)
@click.option("--dry-run", is_flag=True, help="print the plan, change nothing")
@click.option("--strict", is_flag=True, help="exit 1 when a difference cannot be fixed")
@click.option("--namespace", default=None, help="another namespace than GRIDHUB_NAMESPACE")
@click.option("--spec", "spec_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="topics spec (default deploy/topics.yaml)")
@click.option("--dispatch", "with_dispatch", is_flag=True,
              help="also create every agency's dispatch.<agency> topic ahead (agency catalog of the routing rules)")
@click.option("--county", "counties", multiple=True, metavar="CODE",
              help="with --dispatch: only the agencies of these counties (repeatable)")
def ensure_cmd(names: tuple[str, ...], dry_run: bool, strict: bool, namespace: str | None,
               spec_path: Path | None, with_dispatch: bool, counties: tuple[str, ...]) -> None:
    """Create missing topics, set configs, add partitions; report what cannot be fixed.

    NAMES: contract names (``raw.sensors``, ``dispatch.330502.zhzf``); default
    every topic of the spec and existing ones matching its patterns.  ``--dispatch``
    creates the agencies' topics before the first case does (docs/scaling.md): routing
    otherwise creates each on first use, in the middle of the stream.
    """
    settings = settings_for(namespace)
    spec = load_spec(spec_path) if spec_path else None
    if counties and not with_dispatch:
        raise click.UsageError("--county selects the agencies of --dispatch; add --dispatch")
    dispatch_names: list[str] = []
    if with_dispatch:
        from gridhub.core.agencies import catalog_for_rules
        from gridhub.core.topics import dispatch_topic

        try:
            agencies = catalog_for_rules(settings.routing_rules).dispatch_agencies(counties or None)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--county") from exc
        dispatch_names = [dispatch_topic(a) for a in agencies]
    report = ensure_topics(settings, list(names) or None, dry_run=dry_run, spec=spec)
    covered = {a.topic for a in report.actions}  # the spec pass already covers existing dispatch topics
    dispatch_names = [n for n in dispatch_names if settings.topic(n) not in covered]
    if dispatch_names:
        report.actions += ensure_topics(settings, dispatch_names, dry_run=dry_run, spec=spec).actions
    verbs = {"create": "create" if not dry_run else "would create",
             "alter": "alter" if not dry_run else "would alter",
             "partitions": "add partitions" if not dry_run else "would add partitions",
             "drift": "CANNOT FIX", "ok": "ok"}
    rows = [(verbs[a.kind], a.topic, a.detail) for a in report.actions]
    click.echo(render_table(rows, ["action", "topic", "detail"]))
    problems = report.problems
    if problems:
        click.echo(f"\n{len(problems)} difference(s) this tool cannot fix; see CANNOT FIX above.", err=True)
        if strict:
            sys.exit(1)


@topics.command("ls")
@click.option("--namespace", default=None, help="another namespace than GRIDHUB_NAMESPACE")
@click.option("--all", "show_all", is_flag=True, help="every topic on the broker, not only this namespace's")
@click.option("--partitions", "per_partition", is_flag=True, help="end offset of every partition")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per topic")
def ls_cmd(namespace: str | None, show_all: bool, per_partition: bool, as_json: bool) -> None:
    """Topics with partitions, replication, non-default configs and end offsets."""
    settings = settings_for(namespace)
    with_admin = admin_client(settings)
    try:
        everything = with_admin.list_topics()
        names = sorted(everything) if show_all else namespace_topics(settings, everything)
        state = describe(with_admin, names)
        offsets = end_offsets(with_admin, {t: s["partitions"] for t, s in state.items()})
        modified = with_admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in state], config_filter="modified") if state else {}
    finally:
        with_admin.close()
    rows = []
    for name in names:
        if name not in state:
            continue
        configs = {k: v.get("value") for k, v in (modified.get("topic", {}).get(name) or {}).items()}
        ends = offsets.get(name, [])
        if as_json:
            click.echo(json.dumps({"topic": name, "partitions": state[name]["partitions"],
                                   "replication_factor": state[name]["replication_factor"],
                                   "end_offsets": ends, "configs": configs}, ensure_ascii=False))
            continue
        ends_text = ",".join(str(e) for e in ends) if per_partition else str(sum(ends))
        rows.append((name, state[name]["partitions"], state[name]["replication_factor"], ends_text,
                     " ".join(f"{k}={v}" for k, v in sorted(configs.items()))))
    if not as_json:
        click.echo(render_table(rows, ["topic", "partitions", "rf",
                                       "end offsets" if per_partition else "end offsets (sum)", "configs"]))
