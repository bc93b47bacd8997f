"""``gridhub simulate``: produce simulated traffic to the raw topics, with ground-truth labels.

Time: ``--rate`` and ``--duration`` are in real seconds.  ``--speed X`` packs
X simulated seconds into each real second (so a 60 s run at ``--speed 10``
covers ten minutes of incidents); by default the simulated window ends when
the run ends, so no document carries a time in the future.  ``--start`` pins
the window instead (byte-identical output for the same seed, rate, duration,
speed and start).

``--closed-loop``: simulated agencies and citizens answer the hub's dispatches
(:mod:`gridhub.simulate.loop`) for the feed's duration and ``--tail`` seconds
more.  The simulated clock (:func:`gridhub.core.clock.compressed_ms`) then meets
the wall clock when the tail ends, so nothing is dated in the future, and each
Kafka record carries its simulated delivery time (the time the hub receives
it): a worker on event time (``GRIDHUB_CLOCK=event``) follows the same
compressed timeline.
"""

from __future__ import annotations

import collections
import csv
import json
import time
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click

from gridhub.core.logging import get_logger
from gridhub.core.settings import get_settings
from gridhub.simulate.generator import SimRecord, devices_for, generate
from gridhub.simulate.world import REGISTRY_COLUMNS, Device
from gridhub.core.topics import RAW

log = get_logger(__name__)


def write_registry_csv(devices: list[Device], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=REGISTRY_COLUMNS)
        writer.writeheader()
        for d in devices:
            writer.writerow(d.registry_row())


class LabelWriter:
    """One label per distinct ``(source, source_ref)``, at its first delivery."""

    def __init__(self, f: IO[str]) -> None:
        self.f = f
        self.seen: set[tuple[str, str]] = set()

    def add(self, rec: SimRecord) -> None:
        ref = (rec.source, rec.source_ref)
        if ref in self.seen:
            return
        self.seen.add(ref)
        self.f.write(json.dumps(rec.label(), ensure_ascii=False) + "\n")


def _parse_start(text: str | None) -> int | None:
    if not text:
        return None
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        from gridhub.simulate.generator import BEIJING
        dt = dt.replace(tzinfo=BEIJING)
    return int(dt.timestamp() * 1000)


@click.command("simulate")
@click.option("--rate", default=20.0, show_default=True, help="mean records per second, all sources")
@click.option("--duration", default=60.0, show_default=True, help="seconds to run")
@click.option("--seed", default=1, show_default=True, help="random seed: same seed, same traffic")
@click.option("--speed", default=1.0, show_default=True, help="simulated seconds per real second")
@click.option("--start", default=None, help="simulated start, ISO-8601 (default: so the window ends now)")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="output directory (default out/sim-<timestamp>)")
@click.option("--labels", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="labels JSON Lines (default <out>/labels.jsonl)")
@click.option("--records", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="also write every record as JSON Lines {source, doc} in delivery order")
@click.option("--counties", default="", help="comma-separated county codes to simulate (default: all 21)")
@click.option("--dry-run", is_flag=True, help="no Kafka: only write the files (records default to <out>/records.jsonl)")
@click.option("--no-pace", is_flag=True, help="produce as fast as possible instead of in real time")
@click.option("--no-progress", is_flag=True)
@click.option("--realism", type=click.Choice(["easy", "hard"]), default="easy", show_default=True,
              help="hard: another deployment's codes, call-takers' own paths, vague addresses, varied words")
@click.option("--heartbeat-scale", default=1.0, show_default=True,
              help="multiply device heartbeat intervals (compressed-time runs: towards real hours)")
@click.option("--closed-loop", is_flag=True,
              help="also simulate agencies (feedback) and citizens (12345 回访) on the hub's clock")
@click.option("--tail", default=0.0, show_default=True,
              help="with --closed-loop: seconds to keep the agencies and citizens running after the feeds")
def simulate(rate: float, duration: float, seed: int, speed: float, start: str | None, out_dir: Path | None,
             labels: Path | None, records: Path | None, counties: str, dry_run: bool, no_pace: bool,
             no_progress: bool, realism: str, heartbeat_scale: float, closed_loop: bool, tail: float) -> None:
    """Simulated feeds of all three sources (four platforms, 12345, sensors) to the raw topics.

    Writes <out>/devices.csv (and loads it to registry.devices first), <out>/labels.jsonl
    (source, source_ref, incident, kind: the ground truth for `gridhub eval fusion`),
    and with --records / --dry-run every record in delivery order.
    """
    from tqdm import tqdm

    if rate <= 0 or duration <= 0 or speed <= 0:
        raise click.BadParameter("rate, duration and speed must be positive")
    settings = get_settings()
    out = out_dir or Path("out") / f"sim-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    labels_path = labels or out / "labels.jsonl"
    records_path = records or (out / "records.jsonl" if dry_run else None)
    county_codes = tuple(c.strip() for c in counties.split(",") if c.strip()) or None

    if closed_loop and dry_run:
        raise click.BadParameter("--closed-loop needs Kafka (the agencies answer the hub's dispatches)")
    if heartbeat_scale < 1:
        raise click.BadParameter("--heartbeat-scale must be at least 1")
    timing = None
    if closed_loop:
        from gridhub.simulate.loop import timing_from

        # The simulated clock meets the wall clock when the tail ends: nothing is ever dated ahead.
        timing = timing_from(settings, speed, int((time.time() + duration + tail) * 1000))
        start = None
    sim_rate, sim_duration = rate / speed, duration * speed
    now_ms = int(time.time() * 1000)
    start_ms = _parse_start(start)
    if timing is not None:
        start_ms = timing.now()
    elif start_ms is None:
        # The simulated window [start, start + duration*speed] ends at the run's end: every
        # document's time is at or before the moment it is sent.
        start_ms = now_ms - int((speed - 1) * duration * 1000)
    devices = devices_for(seed, sim_rate, sim_duration, start_ms=start_ms, counties=county_codes,
                          heartbeat_scale=heartbeat_scale)
    registry_csv = out / "devices.csv"
    write_registry_csv(devices, registry_csv)

    producer: Any = None
    errors = collections.Counter[str]()
    if not dry_run:
        from connectors.kafka_io import sync_producer
        from connectors.registry.loader import load_registry, read_registry_csv

        summary = load_registry(settings, read_registry_csv(registry_csv), source_name=registry_csv.name)
        click.echo(f"registry: {summary.produced} devices loaded to {settings.topic('registry.devices')}")
    topics = {s: settings.topic(t) for s, t in RAW.items()}
    if not dry_run:
        from gridhub.core.kafka_admin import ensure_topics

        # created up front with the configured partitions, not on first send
        ensure_topics(settings, list(topics.values()))
        # 5 in flight: ordering across retries matters less here than throughput (a simulator).
        producer = sync_producer(settings, linger_ms=50, max_in_flight_requests_per_connection=5)

    counts = collections.Counter[tuple[str, str]]()
    incidents: set[str] = set()
    pace = not (dry_run or no_pace)
    loop = None
    hotline_docs: dict[str, dict[str, Any]] = {}
    if timing is not None:
        from gridhub.core.kafka_admin import ensure_topics
        from gridhub.simulate.loop import ClosedLoop

        ensure_topics(settings, ["feedback", "dispatches", "reports.linked"])
        loop = ClosedLoop(settings, producer, hotline_docs, timing, seed)
        loop.start()
    t0 = time.monotonic()
    rec_file = records_path.open("w", encoding="utf-8") if records_path else None
    try:
        with labels_path.open("w", encoding="utf-8") as lf, \
                tqdm(total=int(rate * duration), unit=" rec", disable=no_progress, smoothing=0.05) as bar:
            label_writer = LabelWriter(lf)
            for rec in generate(seed, sim_rate, sim_duration, start_ms=start_ms, counties=county_codes,
                                heartbeat_scale=heartbeat_scale, closed_loop=closed_loop, realism=realism):
                if pace and timing is not None:
                    from gridhub.core.clock import wall_for

                    ahead = wall_for(rec.at_ms, timing.speed, timing.sync_ms) / 1000 - time.time()
                    if ahead > 0:
                        time.sleep(ahead)
                elif pace:
                    due = (rec.at_ms - start_ms) / 1000 / speed
                    ahead = due - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                if rec.source == "hotline-12345":
                    hotline_docs[rec.key] = rec.doc
                if producer is not None:
                    # closed loop: the record time is the simulated delivery time (the hub's receipt time)
                    fut = producer.send(topics[rec.source], value=rec.value(), key=rec.key.encode("utf-8"),
                                        timestamp_ms=rec.at_ms if timing is not None else None)
                    fut.add_errback(lambda exc: errors.update([type(exc).__name__]))
                if rec_file is not None:
                    rec_file.write(json.dumps(rec.record_line(), ensure_ascii=False) + "\n")
                label_writer.add(rec)
                counts[(rec.source, rec.kind)] += 1
                if rec.incident:
                    incidents.add(rec.incident)
                bar.update(1)
        if loop is not None and tail > 0:
            click.echo(f"feeds done; agencies and citizens go on for {tail:g} s")
            time.sleep(tail)
        if loop is not None:
            loop.stop()
        if producer is not None:
            producer.flush(timeout=120)
    finally:
        if loop is not None:
            loop.stop()
        if rec_file is not None:
            rec_file.close()
        if producer is not None:
            producer.close(timeout=30)

    total = sum(counts.values())
    click.echo(f"simulated {total} records ({len(incidents)} incidents) in {time.monotonic() - t0:.1f} s; "
               f"seed {seed}, simulated start {datetime.fromtimestamp(start_ms / 1000).isoformat(timespec='seconds')}")
    for source in RAW:
        by_kind = {k: n for (s, k), n in sorted(counts.items()) if s == source}
        click.echo(f"  {source:15s} {sum(by_kind.values()):8d}  " + ", ".join(f"{k} {n}" for k, n in by_kind.items()))
    click.echo(f"labels:  {labels_path}")
    if records_path:
        click.echo(f"records: {records_path}")
    click.echo(f"devices: {registry_csv}")
    if loop is not None:
        figures = loop.summary()
        click.echo("closed loop: feedback sent " + ", ".join(f"{k} {v}" for k, v in sorted(figures["sent"].items()))
                   + "; lead dispatch fates " + ", ".join(f"{k} {v}" for k, v in sorted(figures["lead_fates"].items()))
                   + f"; {figures['pending']} actions not due yet, {figures['waiting_for_escalation']} late answers "
                   f"waiting for the hub's 督办")
        (out / "loop.json").write_text(json.dumps(figures, ensure_ascii=False), encoding="utf-8")
        if figures["errors"]:
            click.echo(f"closed loop errors: {figures['errors']}", err=True)
        if loop.failed:
            click.echo("the simulated agencies and citizens stopped early (see the log above)", err=True)
            raise SystemExit(1)
    if errors:
        click.echo(f"NOT acknowledged by Kafka: {sum(errors.values())} records ({dict(errors)})", err=True)
        raise SystemExit(1)
