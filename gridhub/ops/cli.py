"""The operators' commands: ``gridhub topics``, ``dlq``, ``archive``, ``case`` and ``replay``.

Each command parses its options, calls the library beside it (``gridhub/core/kafka_admin.py``
for topics, ``gridhub/ops/dlq.py``, ``archive.py``, ``case.py``, ``replay.py``, ``replay_diff.py``) and prints; the libraries know
nothing about click, so the demo, the tests and the benchmarks use them directly.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import click
from tqdm import tqdm
from kafka.admin import ConfigResource, ConfigResourceType

from gridhub.core import topics as T
from gridhub.core.kafka_admin import (admin_client, describe, end_offsets, ensure_topics, load_spec,
                                      namespace_topics)
from gridhub.core.logging import get_logger
from gridhub.core.yamlconf import ConfigError
from gridhub.core.settings import Settings
from gridhub.core.settings import get_settings
from gridhub.ops.archive import CODECS, MANIFEST, export_archive, import_archive, load_manifest, verify_archive
from gridhub.ops.case import (CaseStoreError, CaseView, _refs_of, _wait_event, ch_client, find_case,
                              load_case, load_case_from_kafka, relink, render_case, select_reports, send_command,
                              view_json)
from gridhub.ops.common import Headers, fmt_ms, parse_time, preview, render_table, settings_for
from gridhub.ops.replay import next_steps, replay_records
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


# --- case (gridhub/ops/case.py) ------------------------------------------------------------------

def _operator(value: str | None) -> str:
    import getpass
    import os

    return value or os.environ.get("GRIDHUB_OPERATOR") or getpass.getuser()


def _common(fn: Any) -> Any:
    fn = click.option("--namespace", default=None, help="another namespace than GRIDHUB_NAMESPACE")(fn)
    fn = click.option("--operator", default=None, help="operator id (default $GRIDHUB_OPERATOR, else the login)")(fn)
    fn = click.option("--reason", required=True, help="why: kept in the case's audit trail")(fn)
    return click.argument("case_id")(fn)


def _send(namespace: str | None, doc: dict[str, Any]) -> None:
    command_id = send_command(settings_for(namespace), doc)
    click.echo(f"{doc['action']} of case {doc['caseId']} sent: command {command_id} "
               "(see it with: gridhub case show " + doc["caseId"] + ")")


# --- commands ----------------------------------------------------------------------------------

@click.group("case")
def case() -> None:
    """Look up a case: its reports, dispatches and lifecycle (from ClickHouse)."""


@case.command("show")
@click.argument("case_id")
@click.option("--json", "as_json", is_flag=True, help="one JSON object (times in epoch ms)")
@click.option("--kafka/--no-kafka", "use_kafka", default=True,
              help="when ClickHouse has nothing, read the case's partition of reports.linked, cases, case-events")
@click.option("--namespace", default=None, help="another namespace than GRIDHUB_NAMESPACE")
def show_cmd(case_id: str, as_json: bool, use_kafka: bool, namespace: str | None) -> None:
    """Every report behind CASE_ID, its dispatches and its timeline with both clocks."""
    settings = settings_for(namespace)
    try:
        view = load_case(settings, case_id)
    except CaseStoreError as exc:
        if not use_kafka:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        click.echo(f"warning: {exc}; reading Kafka instead", err=True)
        view = CaseView(case_id, None, [], [], [], int(time.time() * 1000))
    if not view.known and use_kafka:
        view = load_case_from_kafka(settings, case_id)
    if not view.known:
        click.echo(f"case {case_id} is unknown: no row in {settings.ch_database}.cases, reports, dispatches or "
                   "case_events" + (", nor on its partition of reports.linked, cases, case-events" if use_kafka
                                    else " (a case appears there once the ClickHouse sink has loaded it)"),
                   err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(view_json(view), ensure_ascii=False, default=str))
    else:
        click.echo(render_case(view))


@case.command("find")
@click.option("--source", required=True, type=click.Choice(["four-platforms", "hotline-12345", "sensors"]))
@click.option("--ref", required=True, help="eventId, orderNo, or deviceId@eventTime (eventTime as delivered)")
@click.option("--namespace", default=None, help="another namespace than GRIDHUB_NAMESPACE")
def find_cmd(source: str, ref: str, namespace: str | None) -> None:
    """Print the case_id that a source record belongs to."""
    settings = settings_for(namespace)
    try:
        rows = find_case(settings, source, ref)
    except CaseStoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    cases = sorted({str(r["case_id"]) for r in rows if r.get("case_id")})
    if not cases:
        click.echo(f"no case for {source} {ref} in {settings.ch_database}.reports", err=True)
        sys.exit(1)
    for case_id in cases:
        click.echo(case_id)


@case.command("assign")
@_common
@click.option("--agency", required=True, help="agency code: zhzf, or 330502.zhzf")
@click.option("--assist", is_flag=True, help="add as an assisting agency instead of making it the lead")
def assign_cmd(case_id: str, reason: str, operator: str | None, namespace: str | None, agency: str,
               assist: bool) -> None:
    """指派/转办: make AGENCY the lead of CASE_ID (or add it as an assisting agency)."""
    _send(namespace, {"caseId": case_id, "action": "assign", "operator": _operator(operator), "reason": reason,
                      "agency": agency, "role": "assist" if assist else "lead"})


@case.command("recategorise")
@_common
@click.option("--category", default=None, help="category code (deploy/categories.yaml)")
@click.option("--street", "street_code", default=None, help="township code (9 digits)")
@click.option("--address", default=None)
def recategorise_cmd(case_id: str, reason: str, operator: str | None, namespace: str | None, category: str | None,
                     street_code: str | None, address: str | None) -> None:
    """Set the category and/or the township of CASE_ID; the case is re-routed and later reports keep it."""
    _send(namespace, {"caseId": case_id, "action": "recategorise", "operator": _operator(operator),
                      "reason": reason, "category": category, "streetCode": street_code, "address": address})


@case.command("merge")
@_common
@click.option("--into", "into", required=True, help="the case that stays")
def merge_cmd(case_id: str, reason: str, operator: str | None, namespace: str | None, into: str) -> None:
    """CASE_ID and INTO are one incident: CASE_ID is closed into INTO, for good."""
    settings = settings_for(namespace)
    refs = _refs_of(settings, case_id)
    _send(namespace, {"caseId": case_id, "action": "merge", "operator": _operator(operator), "reason": reason,
                      "intoCaseId": into})
    _relink_after(settings, case_id, "centre_merge", refs)


def _relink_after(settings: Settings, case_id: str, event: str, refs: list[tuple[str, str]]) -> None:
    """Once routing recorded the action, re-drive the moved records so ClickHouse's report->case map follows."""
    if not refs:
        return
    if not _wait_event(settings, case_id, event, 60.0):  # 60 s: the sink flushes every few seconds
        click.echo(f"note: {event} not in ClickHouse yet; the report->case map follows when the sources resend "
                   "(or run the command's relink again)", err=True)
        return
    time.sleep(2.0)  # routing -> case-lifecycle -> fusion: a moment after the event was recorded
    click.echo(f"re-drove {relink(settings, refs)} source record(s) so the report->case map follows")


@case.command("split")
@_common
@click.option("--report", "report_id", required=True, help="report_id to move off into a new case")
@click.option("--category", default=None, help="the new case's category (default: the report's)")
def split_cmd(case_id: str, reason: str, operator: str | None, namespace: str | None, report_id: str,
              category: str | None) -> None:
    """Move one report of CASE_ID off into a new case; it never rejoins CASE_ID."""
    settings = settings_for(namespace)
    doc: dict[str, Any] = {"caseId": case_id, "action": "split", "operator": _operator(operator),
                           "reason": reason, "reportId": report_id, "category": category}
    try:  # the report's source id and place, so the new case is routed where the report is
        rows = _report_row(settings, report_id)
    except CaseStoreError as exc:
        click.echo(f"warning: {exc}; the new case takes the old case's place", err=True)
        rows = []
    if rows:
        row = rows[0]
        doc.update(source=row.get("source"), sourceRef=row.get("source_ref"),
                   category=category or row.get("category"), streetCode=row.get("street_code"))
    _send(namespace, doc)
    if rows:
        _relink_after(settings, case_id, "centre_split", [(str(rows[0]["source"]), str(rows[0]["source_ref"]))])


def _report_row(settings: Settings, report_id: str) -> list[dict[str, Any]]:
    return select_reports(settings, "report_id = %(r)s", {"r": report_id})


@case.command("reopen")
@_common
@click.option("--deadline", default=None, help="new 办结 deadline (ISO-8601, Beijing time without a zone)")
def reopen_cmd(case_id: str, reason: str, operator: str | None, namespace: str | None, deadline: str | None) -> None:
    """重办: CASE_ID goes back to its last lead agency with a new deadline."""
    _send(namespace, {"caseId": case_id, "action": "reopen", "operator": _operator(operator), "reason": reason,
                      "deadline": deadline})


# --- replay (gridhub/ops/replay.py, gridhub/ops/replay_diff.py) ---------------------------------

@click.group("replay", invoke_without_command=True)
@click.option("--source", "sources", multiple=True, type=click.Choice(T.SOURCES),
              help="a source to replay (repeatable; default all three)")
@click.option("--from", "since", default=None, help="records with timestamp >= this (ISO or relative: 6h, 1d)")
@click.option("--to", "until", default=None, help="records with timestamp < this")
@click.option("--archive", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="read from an archive directory instead of the live raw topics")
@click.option("--namespace", default=None,
              help="replay into this namespace (own topics, consumer group, ClickHouse database) instead of live")
@click.option("--dry-run", is_flag=True, help="count what would be replayed per topic/partition")
@click.option("--restamp", is_flag=True, help="give the records the current time instead of the original one")
@click.option("--yes", is_flag=True, help="replay into the live pipeline without asking")
@click.option("--progress/--no-progress", default=True, help="tqdm bar with rate and ETA on a terminal")
@click.option("--historical", is_flag=True,
              help="backfill: cases and facts are recorded for analysts, nothing is dispatched, nothing escalates")
@click.pass_context
def replay(ctx: click.Context, sources: tuple[str, ...], since: str | None, until: str | None, archive: Path | None,
           namespace: str | None, dry_run: bool, restamp: bool, yes: bool, progress: bool,
           historical: bool) -> None:
    """Re-drive raw feeds from a time range or an archive, into live or another namespace.

    `gridhub replay diff --namespace NS` then compares that shadow namespace with live.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = get_settings()
    since_ms, until_ms = parse_time(since), parse_time(until)
    if archive is None and since_ms is None and until_ms is None:
        raise click.UsageError("give a time range (--from/--to) or --archive DIR")
    if namespace is None and not dry_run and not yes:
        click.confirm(f"Replay into the LIVE raw topics of namespace '{settings.namespace or '(contract)'}'?",
                      abort=True)
    result = replay_records(settings, list(sources) or T.SOURCES, since_ms=since_ms, until_ms=until_ms, archive=archive,
                    namespace=namespace, dry_run=dry_run, restamp=restamp, progress=progress, historical=historical)
    rows = [(topic, "any" if part < 0 else part, n) for (topic, part), n in sorted(result.counts.items())]
    click.echo(render_table(rows, ["topic", "partition", "records"]))
    rate = result.total / result.seconds if result.seconds else 0.0
    window = f"{fmt_ms(since_ms)} .. {fmt_ms(until_ms)}"
    verb = "would replay" if dry_run else "replayed"
    click.echo(f"{verb} {result.total} records ({window}) in {result.seconds:.1f}s, {rate:.0f} rec/s, "
               f"run id {result.run_id}")
    if namespace is not None and not dry_run:
        click.echo("next:")
        for line in next_steps(namespace):
            click.echo("  " + line)


@replay.command("diff")
@click.option("--namespace", required=True, help="the shadow namespace (fed by gridhub replay --namespace NS)")
@click.option("--from", "since", default=None, help="reports received at or after this (ISO or relative: 6h, 1d)")
@click.option("--to", "until", default=None, help="reports received before this")
@click.option("--json", "as_json", is_flag=True, help="one JSON object: cases and totals")
def diff_cmd(namespace: str, since: str | None, until: str | None, as_json: bool) -> None:
    """Per case, what the shadow NAMESPACE decided differently from live: lead and assisting agencies,
    category, deadlines, escalations, fusion (reports that joined different cases), then totals."""
    from gridhub.ops import replay_diff as rd

    live = get_settings()
    shadow = settings_for(namespace, live)
    if shadow.ch_database == live.ch_database:
        raise click.UsageError("the shadow namespace is the live one: give another --namespace")
    since_ms, until_ms = parse_time(since), parse_time(until)
    client = ch_client(live)
    try:
        have = {str(n) for (n,) in client.execute("SELECT name FROM system.databases")}
        for db in (live.ch_database, shadow.ch_database):
            if db not in have:
                raise click.ClickException(f"ClickHouse database {db} does not exist (run: gridhub ch migrate)")
        diffs, totals = rd.diff(rd.load_summaries(client, live.ch_database, since_ms, until_ms),
                                rd.load_summaries(client, shadow.ch_database, since_ms, until_ms))
    finally:
        client.disconnect()
    click.echo(rd.as_json(diffs, totals, live.ch_database, shadow.ch_database) if as_json
               else rd.render(diffs, totals, live.ch_database, shadow.ch_database))
