"""``gridhub demo``: the hub's main job, end to end, on simulated feeds.

1. start (or reuse) the local Kafka, ClickHouse and Mosquitto;
2. create the topics and ClickHouse tables of a fresh namespace, so a demo
   never mixes with earlier data;
3. run every hub service (``gridhub run``) in a worker subprocess;
4. produce simulated traffic of all three sources with ground-truth labels
   (``gridhub simulate``);
5. wait until the pipeline has landed every report in ClickHouse;
6. print what happened, measured from the real outputs: reports and cases
   per source, the dedupe ratio, fusion quality against the labels (B-cubed),
   dispatches per agency, lifecycle events and dead letters.

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

from gridhub.logging import get_logger
from gridhub.settings import REPO_ROOT, Settings, get_settings
from gridhub.supervisor import GRIDHUB, WorkerProcess

log = get_logger(__name__)

#: How long the landed-report count may stay flat before the pipeline counts as drained.
#: 15 s: three of the sink's 1 s flushes plus Faust's commit interval (2.8 s) with room to spare.
QUIET_SECONDS = 15.0


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
        dead = ch.execute(f"SELECT stage, count() FROM {db}.dead_letters GROUP BY stage ORDER BY stage")
        mapping = {(s, r): c for s, r, c in ch.execute(f"SELECT source, source_ref, case_id FROM {db}.report_case_map")}
    finally:
        ch.disconnect()

    truth = _expected_reports(labels_path)
    found = {key: label for key, label in truth.items() if key in mapping}
    quality = bcubed(found, {key: mapping[key] for key in found})
    figures = {
        "namespace": settings.namespace, "reports": landed, "cases": cases,
        "dedupe_ratio": round(landed / cases, 3) if cases else None,
        "multi_source_cases": multi_source, "expected_reports": len(truth),
        "missing_reports": len(truth) - len(found),
        "bcubed": {"precision": round(quality.precision, 4), "recall": round(quality.recall, 4),
                   "f1": round(quality.f1, 4)},
        "dispatches": sum(n for _, _, n in dispatches), "dead_letters": sum(n for _, n in dead),
    }
    _table("Reports by source", [(s, n, c) for s, n, c in by_source], ("source", "reports", "cases"))
    click.echo(f"\ncases: {cases} (from {landed} reports: {figures['dedupe_ratio']} reports per case; "
               f"{multi_source} cases fused from more than one source)")
    click.echo(f"fusion vs ground truth: B-cubed precision {quality.precision:.3f}, recall {quality.recall:.3f}, "
               f"F1 {quality.f1:.3f} over {quality.items} reports; {figures['missing_reports']} expected reports "
               f"not landed")
    _table("Top dispatches (agency, role)", [tuple(r) for r in dispatches], ("agency", "role", "dispatches"))
    _table("Lifecycle events", [tuple(r) for r in events], ("event", "count"))
    _table("Dead letters by stage", [tuple(r) for r in dead] or [("(none)", 0)], ("stage", "count"))
    return figures


@click.command("demo")
@click.option("--rate", default=30.0, show_default=True, help="simulated records per second")
@click.option("--duration", default=60.0, show_default=True, help="seconds of simulated traffic")
@click.option("--seed", default=1, show_default=True)
@click.option("--counties", default="330502,330503,330521",
              show_default=True, help="county codes to simulate (fewer counties: more incidents reported twice)")
@click.option("--namespace", default=None, help="default: a fresh demo-<time> namespace")
@click.option("--drain-timeout", default=300.0, show_default=True, help="seconds to wait for the pipeline to land")
@click.option("--json", "as_json", is_flag=True, help="also print the figures as one JSON object")
def demo(rate: float, duration: float, seed: int, counties: str, namespace: str | None,
         drain_timeout: float, as_json: bool) -> None:
    """Run the whole hub on simulated feeds and summarise what it did."""
    from clickhouse_driver import Client

    from gridhub.clickhouse.backend import DriverBackend
    from gridhub.clickhouse.migrate import migrate
    from gridhub.infra.cli import _fail, _progress
    from gridhub.infra.base import InfraError
    from gridhub.infra.manager import Infra
    from gridhub.ops.topics import ensure_topics

    base = get_settings()
    ns = namespace or f"demo-{datetime.now().strftime('%Y%m%d%H%M%S')}"
    settings = base.model_copy(update={"namespace": ns})
    out_dir = REPO_ROOT / "out" / ns

    _echo_step("infrastructure: Kafka, ClickHouse, Mosquitto")
    try:
        Infra(base).up(_progress)
    except InfraError as error:
        _fail(error)

    _echo_step(f"namespace {ns}: topics and ClickHouse database {settings.ch_database}")
    ensure_topics(settings)
    admin = DriverBackend.from_settings(settings)
    admin.execute(f"CREATE DATABASE IF NOT EXISTS {settings.ch_database}")
    applied = migrate(admin, settings.ch_database)
    click.echo(f"ClickHouse {applied.server_version}: migrations applied {applied.applied or 'none'}, "
               f"already there {applied.already or 'none'}")

    _echo_step("hub worker: gridhub run (ingest, fusion, routing, ClickHouse sink, gateway, MQTT bridge)")
    worker = WorkerProcess(settings, log_dir=settings.run_dir / "demo", ready_timeout=180.0)
    worker.start()
    click.echo(f"worker ready (pid {worker.pid}, log {worker.log_path})")
    try:
        _echo_step(f"simulated feeds: {rate:g} records/s for {duration:g} s")
        subprocess.run([GRIDHUB, "simulate", "--rate", str(rate), "--duration", str(duration), "--seed", str(seed),
                        "--counties", counties, "--out", str(out_dir),
                        *([] if sys.stderr.isatty() else ["--no-progress"])],
                       env={**worker.env, "GRIDHUB_LOG_FORMAT": "console"}, check=True)
        labels = out_dir / "labels.jsonl"
        expected = len(_expected_reports(labels))
        _echo_step("waiting for the pipeline to land every report")
        ch = Client(host=settings.clickhouse_host, port=settings.clickhouse_port,
                    user=settings.clickhouse_user, password=settings.secret("clickhouse_password"))
        try:
            landed = _wait_for_landing(ch, settings.ch_database, expected, drain_timeout)
        finally:
            ch.disconnect()
        if not worker.running():
            raise click.ClickException(f"the hub worker died (log: {worker.log_path}):\n{worker.log_tail()}")
        _echo_step("summary")
        figures = summarise(settings, labels, landed)
    finally:
        worker.stop()
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False))
    click.echo(f"\nExplore it: GRIDHUB_NAMESPACE={ns} .venv/bin/gridhub report   "
               f"(also: case show, dlq ls, replay --namespace; simulated inputs in {out_dir})")
