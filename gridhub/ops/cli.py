"""The operators' commands: ``gridhub topics``, ``gridhub dlq``, ``gridhub archive``.

Each command parses its options, calls the library beside it (``gridhub/core/kafka_admin.py``
for topics, ``gridhub/ops/dlq.py``, ``gridhub/ops/archive.py``) and prints; the libraries know
nothing about click, so the demo, the tests and the benchmarks use them directly.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import click
from kafka.admin import ConfigResource, ConfigResourceType

from gridhub.core import topics as T
from gridhub.core.kafka_admin import (admin_client, describe, end_offsets, ensure_topics, load_spec,
                                      namespace_topics)
from gridhub.core.logging import get_logger
from gridhub.core.yamlconf import ConfigError
from gridhub.core.settings import Settings
from gridhub.ops.archive import CODECS, MANIFEST, export_archive, import_archive, load_manifest, verify_archive
from gridhub.ops.common import Headers, fmt_ms, parse_time, preview, render_table, settings_for
from gridhub.ops.dlq import DeadLetter, Filters, find_dead_letter, format_letter, read_dead_letters, retry_dead_letters

log = get_logger(__name__)


# --- topics -------------------------------------------------------------------------------

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
              help="also create every agency's dispatch.<agency> and feedback.<agency> topics ahead "
                   "(agency catalog of the routing rules)")
@click.option("--county", "counties", multiple=True, metavar="CODE",
              help="with --dispatch: only the agencies of these counties (repeatable)")
def topics_ensure(names: tuple[str, ...], dry_run: bool, strict: bool, namespace: str | None,
               spec_path: Path | None, with_dispatch: bool, counties: tuple[str, ...]) -> None:
    """Create missing topics, set configs, add partitions; report what cannot be fixed.

    NAMES: contract names (``raw.sensors``, ``dispatch.330502.zhzf``); default
    every topic of the spec and existing ones matching its patterns.  ``--dispatch``
    creates the agencies' topics before the first case does (docs/scaling.md): routing
    otherwise creates each on first use, in the middle of the stream.
    """
    settings = settings_for(namespace)
    try:
        # The default spec too: a broken deploy/topics.yaml is one file:line error, not a traceback.
        spec = load_spec(spec_path)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None if spec_path else None
    if counties and not with_dispatch:
        raise click.UsageError("--county selects the agencies of --dispatch; add --dispatch")
    dispatch_names: list[str] = []
    if with_dispatch:
        from gridhub.core.agencies import catalog_for_rules
        from gridhub.core.topics import dispatch_topic, feedback_topic

        try:
            agencies = catalog_for_rules(settings.routing_rules).dispatch_agencies(counties or None)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--county") from exc
        # feedback.<agency>: the agency's own feedback topic; routing's relay subscribes to those
        # that exist, by name (streams/routing/feedback.py), so they are created here, ahead.
        dispatch_names = [name for a in agencies for name in (dispatch_topic(a), feedback_topic(a))]
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
def topics_ls(namespace: str | None, show_all: bool, per_partition: bool, as_json: bool) -> None:
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


# --- dlq -------------------------------------------------------------------------------

def _filter_options(fn: Any) -> Any:
    for option in reversed([
        click.option("--stage", default=None, help="only this stage (ingest, fusion, sink, ...)"),
        click.option("--reason", default=None, help="reason contains this text (case-insensitive)"),
        click.option("--topic", "topics", multiple=True, help="source topic (contract or physical name); repeatable"),
        click.option("--since", default=None, help="ISO time or relative (1h, 2d)"),
        click.option("--until", default=None, help="ISO time or relative (1h, 2d)"),
        click.option("--namespace", default=None, help="another namespace than GRIDHUB_NAMESPACE"),
    ]):
        fn = option(fn)
    return fn


def _filters(stage: str | None, reason: str | None, topics: tuple[str, ...], since: str | None,
             until: str | None) -> Filters:
    return Filters(stage, reason, tuple(topics), parse_time(since), parse_time(until))


@click.group("dlq")
def dlq() -> None:
    """Dead letters: list, show, and re-inject after a fix."""


@dlq.command("ls")
@_filter_options
@click.option("--limit", type=int, default=0, help="print at most this many (0: all)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per dead letter")
def dlq_ls(stage: str | None, reason: str | None, topics: tuple[str, ...], since: str | None, until: str | None,
           namespace: str | None, limit: int, as_json: bool) -> None:
    """A table of dead letters: where they came from, why, and their first bytes."""
    settings = settings_for(namespace)
    rows = []
    shown = 0
    for letter in read_dead_letters(settings, _filters(stage, reason, topics, since, until)):
        if limit and shown >= limit:
            break
        shown += 1
        if as_json:
            click.echo(json.dumps({"ref": letter.ref, "partition": letter.partition, "offset": letter.offset,
                                   "timestamp": letter.timestamp, "stage": letter.info.stage,
                                   "reason": letter.info.reason, "source_topic": letter.info.topic,
                                   "source_partition": letter.info.partition,
                                   "source_offset": letter.info.offset, "preview": preview(letter.value)},
                                  ensure_ascii=False))
            continue
        reason_text = letter.info.reason if len(letter.info.reason) <= 60 else letter.info.reason[:59] + "…"
        rows.append((letter.ref, fmt_ms(letter.timestamp), letter.info.stage, letter.source, reason_text,
                     preview(letter.value)))
    if not as_json:
        click.echo(render_table(rows, ["ref", "time", "stage", "source topic/partition/offset", "reason",
                                       "first bytes"]))
        click.echo(f"{shown} dead letter(s)", err=True)


@dlq.command("show")
@click.argument("ref")
@click.option("--namespace", default=None, help="another namespace than GRIDHUB_NAMESPACE")
def dlq_show(ref: str, namespace: str | None) -> None:
    """Headers and original bytes of one dead letter (REF = PARTITION:OFFSET)."""
    letter = find_dead_letter(settings_for(namespace), ref)
    if letter is None:
        click.echo(f"no dead letter at {ref}", err=True)
        sys.exit(1)
    click.echo(format_letter(letter))


@dlq.command("retry")
@click.argument("refs", nargs=-1)
@_filter_options
@click.option("--all", "select_all", is_flag=True, help="every dead letter that matches the filters")
@click.option("--dry-run", is_flag=True, help="say what would be re-injected, change nothing")
@click.option("--force", is_flag=True, help="re-inject even if already retried")
def dlq_retry(refs: tuple[str, ...], stage: str | None, reason: str | None, topics: tuple[str, ...],
              since: str | None, until: str | None, namespace: str | None, select_all: bool, dry_run: bool,
              force: bool) -> None:
    """Re-inject dead letters to their source topic (REFS = PARTITION:OFFSET, or filters + --all)."""
    settings = settings_for(namespace)
    filters = _filters(stage, reason, topics, since, until)
    has_filter = any([stage, reason, topics, since, until])
    if not refs and not (select_all or has_filter):
        raise click.UsageError("name dead letters (PARTITION:OFFSET) or select them with filters / --all")
    letters: list[DeadLetter]
    if refs:
        letters = []
        for ref in refs:
            letter = find_dead_letter(settings, ref)
            if letter is None:
                raise click.UsageError(f"no dead letter at {ref}")
            if filters.matches(letter, settings):
                letters.append(letter)
    else:
        letters = list(read_dead_letters(settings, filters))
    outcomes = retry_dead_letters(settings, letters, dry_run=dry_run, force=force)
    click.echo(render_table([(o.ref, o.status, o.detail) for o in outcomes], ["ref", "status", "detail"]))
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    click.echo(" ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing selected", err=True)


# --- archive --------------------------------------------------------------------------------

def _split(values: Iterable[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@click.group("archive")
def archive() -> None:
    """Topics to Avro files and back (long-term keeping, replay of old days)."""


@archive.command("export")
@click.option("--topics", "topic_args", multiple=True, required=True,
              help="contract topic names, comma-separated or repeated (e.g. raw.sensors,raw.hotline-12345)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="new directory")
@click.option("--from", "since", default=None, help="records with timestamp >= this (ISO or relative: 1d)")
@click.option("--to", "until", default=None, help="records with timestamp < this")
@click.option("--codec", type=click.Choice(CODECS), default="deflate", show_default=True,
              help="Avro block codec (zstandard needs the zstandard package)")
@click.option("--namespace", default=None, help="another namespace than GRIDHUB_NAMESPACE")
@click.option("--progress/--no-progress", default=True, help="tqdm bars on a terminal")
def archive_export(topic_args: tuple[str, ...], out: Path, since: str | None, until: str | None, codec: str,
               namespace: str | None, progress: bool) -> None:
    """Write topics to one Avro file per topic per day, plus manifest.json."""
    manifest = export_archive(settings_for(namespace), _split(topic_args), out, parse_time(since), parse_time(until),
                              codec, progress)
    for topic, meta in manifest["topics"].items():
        days = sum(1 for f in manifest["files"] if f["topic"] == topic)
        click.echo(f"{topic}: {meta['records']} records in {days} file(s)")
    click.echo(f"manifest: {out / MANIFEST}")


@archive.command("import")
@click.option("--in", "src", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--topic-map", "maps", multiple=True, help="old=new topic name (contract or physical); repeatable")
@click.option("--topics", "topic_args", multiple=True, help="only these archived topics")
@click.option("--namespace", default=None, help="import into this namespace's topics")
@click.option("--append", is_flag=True, help="allow non-empty target topics")
@click.option("--progress/--no-progress", default=True, help="tqdm bars on a terminal")
def archive_import(src: Path, maps: tuple[str, ...], topic_args: tuple[str, ...], namespace: str | None, append: bool,
               progress: bool) -> None:
    """Produce an archive back: same partitions, keys, values, headers and timestamps."""
    topic_map = {}
    for item in _split(maps):
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise click.BadParameter(f"{item!r}: expected old=new")
        topic_map[old] = new
    written = import_archive(settings_for(namespace), src, topic_map, _split(topic_args) or None, append, progress)
    for target, n in written.items():
        click.echo(f"{target}: {n} records")


@archive.command("verify")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
def archive_verify(src: Path) -> None:
    """Check every file against the manifest (sha256, counts, offsets, timestamps)."""
    problems = verify_archive(src)
    manifest = load_manifest(src)
    if problems:
        for line in problems:
            click.echo(f"MISMATCH {line}")
        click.echo(f"{len(problems)} problem(s) in {src}", err=True)
        sys.exit(1)
    click.echo(f"ok: {len(manifest['files'])} file(s), "
               f"{sum(f['records'] for f in manifest['files'])} records match {src / MANIFEST}")
