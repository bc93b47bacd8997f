"""``gridhub demo``: the hub's main job, end to end, on simulated feeds.

1. start (or reuse) the local Kafka, ClickHouse and Mosquitto;
2. create the topics and ClickHouse tables of a fresh namespace, so a demo
   never mixes with earlier data;
3. run every hub service (``gridhub run``) in a worker subprocess;
4. produce simulated traffic of all three sources with ground-truth labels,
   and simulated agencies and citizens that close the loop
   (``gridhub simulate --closed-loop``): 签收, 退单, 延期, 办结, missed
   deadlines (督办) and 12345 回访;
5. wait until the pipeline has landed every report in ClickHouse and the
   lifecycle log has stopped moving;
6. print what happened, measured from the real outputs: reports and cases
   per source, the dedupe ratio, fusion quality against the labels (B-cubed),
   dispatches per agency, lifecycle events, the loop's figures (signed,
   resolved, on time, overdue, escalated, returned, satisfaction rate) and
   dead letters.

Compressed time: a one-minute demo covers days.  The simulator packs
``--speed`` simulated seconds into each second and stamps every record with
its simulated time; the worker runs on event time (``GRIDHUB_CLOCK=event``,
:mod:`gridhub.core.clock`): its "now" for deadlines is the latest event time it has
seen minus ``HUB_LAG_SECONDS`` of the demo's time, so an agency's in-time
answer, which needs a few wall seconds through Kafka, never arrives after the
hub fired its deadline, and a worker slowed down by a loaded machine does not
see deadlines pass that its input has not reached.

Nothing is faked: every figure is a query on the namespace's ClickHouse
database or a count of records on its Kafka topics.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from gridhub.core.logging import get_logger
from gridhub.core.settings import REPO_ROOT, Settings, get_settings
from gridhub.supervisor import GRIDHUB, WorkerProcess

log = get_logger(__name__)

#: How long the landed-report count may stay flat before the pipeline counts as drained.
#: 15 s: three of the sink's 1 s flushes plus Faust's commit interval (2.8 s) with room to spare.
QUIET_SECONDS = 15.0
#: Demo seconds (x speed = simulated time) the worker's event clock stays behind the events: above
#: the round trip from a dispatch to the simulated agency's answer (1-5 s on this 2-core class of
#: host) plus the longest 签收 window divided by the speed (2 h / 3600 = 2 s).
HUB_LAG_SECONDS = 20.0
#: Heartbeat intervals are multiplied by speed / this: at 3600x, smoke detectors beat every 20 h and
#: electric meters every 8 h, inside the real NB-IoT range of 0.5-24 h.
HEARTBEAT_SCALE_DIVISOR = 15.0


def _echo_step(text: str) -> None:
    click.secho(f"==> {text}", bold=True)


def _expected_reports(labels_path: Path) -> dict[tuple[str, str], str]:
    """(source, source_ref) -> incident label, for every record that must become a report.

    A sensor ``recover`` only updates the case its *own device's* alarm opened or joined; when
    that device raised no alarm in the simulated window (its alarm fell before it, or only a
    neighbouring device of the incident alarmed) there is no case to update and no report row
    (CONTRACTS 1.3), so such a recover is not expected to land.  Sensor refs are
    ``deviceId@eventTime``.
    """
    rows = [json.loads(line) for line in labels_path.open(encoding="utf-8")]

    def device(row: dict[str, Any]) -> tuple[str, str]:
        return row["incident"], row["source_ref"].rsplit("@", 1)[0]

    alarmed = {device(row) for row in rows
               if row.get("incident") and row["source"] == "sensors" and row.get("kind") != "recover"}
    return {(row["source"], row["source_ref"]): row["incident"] for row in rows
            if row.get("incident") and (row.get("kind") != "recover" or device(row) in alarmed)}


def _wait_for_landing(ch: Any, database: str, expected: int, timeout_s: float) -> int:
    """Poll ClickHouse until ``expected`` reports landed, or the count stopped moving."""
    from tqdm import tqdm

    landed, last_change, deadline = 0, time.monotonic(), time.monotonic() + timeout_s
    with tqdm(total=expected, unit=" reports", desc="landing in ClickHouse", disable=not sys.stderr.isatty()) as bar:
        while time.monotonic() < deadline:
            now = ch.execute(f"SELECT count() FROM {database}.reports FINAL")[0][0]
            if now != landed:
                bar.update(now - landed)
                landed, last_change = now, time.monotonic()
            if landed >= expected or time.monotonic() - last_change > QUIET_SECONDS:
                break
            time.sleep(1.0)
    return int(landed)


def _table(title: str, rows: list[tuple[Any, ...]], headers: tuple[str, ...]) -> None:
    click.echo(f"\n{title}")
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  " + "  ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
    for row in rows:
        click.echo("  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths)))


def write_report(settings: Settings, counties: str, path: Path) -> Path:
    """``gridhub report --county <the demo's> --html path`` for the demo's namespace (last 30 days)."""
    from connectors.clickhouse.backend import DriverBackend
    from gridhub.clickhouse.report import area_title, make_period, render_html, run_report

    period = make_period(None, None, None, counties)
    backend = DriverBackend.from_settings(settings, database=settings.ch_database)
    try:
        answers = run_report(backend, period)
    finally:
        backend.close()
    path.write_text(render_html(answers, period, area_title(period)), encoding="utf-8")
    return path


def loop_figures(ch: Any, db: str) -> dict[str, Any]:
    """The closed loop's figures, from the lifecycle log and the views (schemas/migrations)."""
    signed, resolved, on_time, overdue = ch.execute(
        f"SELECT countIf(is_signed), countIf(is_resolved), countIf(is_resolved AND NOT resolve_overdue), "
        f"countIf(sign_overdue OR resolve_overdue) FROM {db}.dispatch_facts WHERE dispatch_role = 'lead'")[0]
    escalated, returned, extended, reviews, satisfied, closed = ch.execute(
        f"SELECT countIf(event = 'escalated'), countIf(event = 'returned'), countIf(event = 'extended'), "
        f"countIf(event = 'reviewed'), countIf(event = 'reviewed' AND satisfaction IN ('满意', '基本满意')), "
        f"countIf(event = 'closed') FROM {db}.case_events FINAL")[0]
    return {"signed": signed, "resolved": resolved, "on_time": on_time, "overdue": overdue,
            "escalated": escalated, "returned": returned, "extended": extended, "reviewed": reviews,
            "closed": closed, "satisfaction_rate": round(satisfied / reviews, 4) if reviews else None}


def _wait_for_events(ch: Any, database: str, timeout_s: float) -> int:
    """Poll until the lifecycle log stopped growing for QUIET_SECONDS (the loop's last answers landed)."""
    count, last_change, deadline = -1, time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = ch.execute(f"SELECT count() FROM {database}.case_events FINAL")[0][0]
        if now != count:
            count, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > QUIET_SECONDS:
            break
        time.sleep(1.0)
    return int(count)


def summarise(settings: Settings, labels_path: Path, landed: int) -> dict[str, Any]:
    """Print the demo's figures from ClickHouse and return them (for tests and --json)."""
    from clickhouse_driver import Client

    from gridhub.evaluation.bcubed import bcubed

    db = settings.ch_database
    ch = Client(host=settings.clickhouse_host, port=settings.clickhouse_port,
                user=settings.clickhouse_user, password=settings.secret("clickhouse_password"))
    try:
        by_source = ch.execute(f"SELECT source, count(), uniqExact(case_id) FROM {db}.reports FINAL "
                               f"GROUP BY source ORDER BY source")
        cases = ch.execute(f"SELECT count() FROM {db}.cases FINAL")[0][0]
        multi_source = ch.execute(f"SELECT countIf(length(sources) > 1) FROM {db}.cases FINAL")[0][0]
        dispatches = ch.execute(f"SELECT agency, role, count() FROM {db}.dispatches FINAL "
                                f"GROUP BY agency, role ORDER BY count() DESC, agency LIMIT 12")
        events = ch.execute(f"SELECT event, count() FROM {db}.case_events FINAL GROUP BY event ORDER BY count() DESC")
        loop = loop_figures(ch, db)
        dead = ch.execute(f"SELECT stage, count() FROM {db}.dead_letters GROUP BY stage ORDER BY stage")
        mapping = {(s, r): c for s, r, c in ch.execute(f"SELECT source, source_ref, case_id FROM {db}.report_case_map")}
    finally:
        ch.disconnect()

    truth = _expected_reports(labels_path)
    found = {key: label for key, label in truth.items() if key in mapping}
    # A sensor recover whose case the closed loop already resolved finds no open case to update:
    # an orphan (no report row, CONTRACTS 1.3), not a loss; counted apart from the other misses.
    recovers = {(r["source"], r["source_ref"]) for r in map(json.loads, labels_path.open(encoding="utf-8"))
                if r.get("kind") == "recover"}
    missing_recovers = sum(1 for key in truth if key not in mapping and key in recovers)
    quality = bcubed(found, {key: mapping[key] for key in found})
    figures = {
        "namespace": settings.namespace, "reports": landed, "cases": cases,
        "dedupe_ratio": round(landed / cases, 3) if cases else None,
        "multi_source_cases": multi_source, "expected_reports": len(truth),
        "missing_reports": len(truth) - len(found), "missing_recovers": missing_recovers,
        "bcubed": {"precision": round(quality.precision, 4), "recall": round(quality.recall, 4),
                   "f1": round(quality.f1, 4)},
        "dispatches": sum(n for _, _, n in dispatches), "dead_letters": sum(n for _, n in dead),
        "loop": loop,
    }
    _table("Reports by source", [(s, n, c) for s, n, c in by_source], ("source", "reports", "cases"))
    click.echo(f"\ncases: {cases} (from {landed} reports: {figures['dedupe_ratio']} reports per case; "
               f"{multi_source} cases fused from more than one source)")
    click.echo(f"fusion vs ground truth: B-cubed precision {quality.precision:.3f}, recall {quality.recall:.3f}, "
               f"F1 {quality.f1:.3f} over {quality.items} reports; {figures['missing_reports']} expected reports "
               f"not landed ({missing_recovers} of them sensor recovers after their case was closed)")
    _table("Top dispatches (agency, role)", [tuple(r) for r in dispatches], ("agency", "role", "dispatches"))
    _table("Lifecycle events", [tuple(r) for r in events], ("event", "count"))
    click.echo("\nClosed loop (lead dispatches; 满意率 = (满意 + 基本满意) / 回访): "
               + ", ".join(f"{k} {v}" for k, v in loop.items()))
    _table("Dead letters by stage", [tuple(r) for r in dead] or [("(none)", 0)], ("stage", "count"))
    return figures


@click.command("demo")
@click.option("--rate", default=30.0, show_default=True, help="simulated records per second")
@click.option("--duration", default=60.0, show_default=True, help="seconds of simulated traffic")
@click.option("--speed", default=3600.0, show_default=True,
              help="simulated seconds per real second (3600: each second of the demo is an hour)")
@click.option("--tail", default=75.0, show_default=True,
              help="seconds the agencies and citizens go on after the feeds (deadlines of days come due)")
@click.option("--seed", default=1, show_default=True)
@click.option("--counties", default="330502,330503,330521",
              show_default=True, help="county codes to simulate (fewer counties: more incidents reported twice)")
@click.option("--namespace", default=None, help="default: a fresh demo-<time> namespace")
@click.option("--drain-timeout", default=300.0, show_default=True, help="seconds to wait for the pipeline to land")
@click.option("--realism", type=click.Choice(["easy", "hard"]), default="easy", show_default=True,
              help="hard: feeds as other deployments write them (gridhub simulate --realism hard)")
@click.option("--json", "as_json", is_flag=True, help="also print the figures as one JSON object")
def demo(rate: float, duration: float, speed: float, tail: float, seed: int, counties: str,
         namespace: str | None, drain_timeout: float, realism: str, as_json: bool) -> None:
    """Run the whole hub on simulated feeds and summarise what it did."""
    from clickhouse_driver import Client

    from connectors.clickhouse.backend import DriverBackend
    from connectors.clickhouse.migrate import migrate
    from gridhub.infra.cli import _fail, _progress
    from gridhub.infra.base import InfraError
    from gridhub.infra.manager import Infra
    from gridhub.core.kafka_admin import ensure_topics

    base = get_settings()
    ns = namespace or f"demo-{datetime.now().strftime('%Y%m%d%H%M%S')}"
    if speed < 1:
        raise click.BadParameter("--speed must be at least 1")
    settings = base.model_copy(update={"namespace": ns})
    worker_settings = settings.model_copy(update={"clock": "event",
                                                  "clock_lag_ms": int(HUB_LAG_SECONDS * speed * 1000)})
    out_dir = REPO_ROOT / "out" / ns

    _echo_step("infrastructure: Kafka, ClickHouse, Mosquitto")
    try:
        Infra(base).up(_progress)
    except InfraError as error:
        _fail(error)

    _echo_step(f"namespace {ns}: topics and ClickHouse database {settings.ch_database}")
    ensure_topics(settings)
    # Every agency topic of the demo's counties ahead: created on first dispatch, each costs the
    # routing agent a broker round trip while cases queue behind it.
    from gridhub.core.agencies import catalog_for_rules
    from gridhub.core.topics import dispatch_topic

    agencies = catalog_for_rules(settings.routing_rules).dispatch_agencies(
        [c.strip() for c in counties.split(",") if c.strip()])
    ensure_topics(settings, [dispatch_topic(a) for a in agencies])
    admin = DriverBackend.from_settings(settings)
    admin.execute(f"CREATE DATABASE IF NOT EXISTS {settings.ch_database}")
    applied = migrate(admin, settings.ch_database)
    click.echo(f"ClickHouse {applied.server_version}: migrations applied {applied.applied or 'none'}, "
               f"already there {applied.already or 'none'}")

    _echo_step("hub worker: gridhub run (ingest, fusion, routing, ClickHouse sink, gateway, MQTT bridge)")
    worker = WorkerProcess(worker_settings, log_dir=settings.run_dir / "demo", ready_timeout=180.0)
    worker.start()
    click.echo(f"worker ready (pid {worker.pid}, log {worker.log_path})")
    try:
        _echo_step(f"simulated feeds: {rate:g} records/s for {duration:g} s, {speed:g}x time "
                   f"({duration * speed / 3600:.0f} simulated hours), then agencies and citizens for {tail:g} s")
        # Heartbeats stretched back towards real NB-IoT intervals (0.5-24 h), so they do not swamp a
        # compressed run.
        subprocess.run([GRIDHUB, "simulate", "--rate", str(rate), "--duration", str(duration), "--seed", str(seed),
                        "--counties", counties, "--out", str(out_dir), "--closed-loop", "--tail", str(tail),
                        "--speed", str(speed), "--heartbeat-scale", str(max(1.0, speed / HEARTBEAT_SCALE_DIVISOR)),
                        "--realism", realism,
                        *([] if sys.stderr.isatty() else ["--no-progress"])],
                       env={**worker.env, **settings.as_env(), "GRIDHUB_LOG_FORMAT": "console"}, check=True)
        labels = out_dir / "labels.jsonl"
        expected = len(_expected_reports(labels))
        _echo_step("waiting for the pipeline to land every report")
        ch = Client(host=settings.clickhouse_host, port=settings.clickhouse_port,
                    user=settings.clickhouse_user, password=settings.secret("clickhouse_password"))
        try:
            landed = _wait_for_landing(ch, settings.ch_database, expected, drain_timeout)
            _wait_for_events(ch, settings.ch_database, drain_timeout)
        finally:
            ch.disconnect()
        if not worker.running():
            raise click.ClickException(f"the hub worker died (log: {worker.log_path}):\n{worker.log_tail()}")
        _echo_step("summary")
        figures = summarise(settings, labels, landed)
        # Issue 15: the county centre steers one case, and the hub answers the source systems.
        from gridhub.ops.case import demo_centre_step, demo_summary_line

        centre = demo_centre_step(settings)
        click.echo("\nCounty centre: " + demo_summary_line(centre))
        figures["centre"] = centre
    finally:
        worker.stop()
    page = write_report(settings, counties, out_dir / "report.html")
    click.echo(f"\nThe analysts' report (Chinese, offline, with charts and a map): {page}")
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False))
    click.echo(f"\nExplore it: GRIDHUB_NAMESPACE={ns} .venv/bin/gridhub report [--html FILE]   "
               f"(also: case show, dlq ls, replay --namespace; simulated inputs in {out_dir})")
