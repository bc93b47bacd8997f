"""``gridhub bench``: one subcommand per measured stage.

Other stages add their subcommands to :data:`bench` here.
"""

from __future__ import annotations

import click


@click.group("bench")
def bench() -> None:
    """Measure throughput of the hub's stages (figures on stdout)."""


@bench.command("normalize")
@click.option("-n", "--documents", default=20_000, show_default=True, help="documents per measured pass")
@click.option("--repeat", default=3, show_default=True, help="passes per variant; the best is reported")
@click.option("--seed", default=141, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of a table")
def normalize_cmd(documents: int, repeat: int, seed: int, as_json: bool) -> None:
    """Normalisation throughput vs pass-throughs (JSON round trip, JSON -> Avro), in process."""
    from bench.normalize import run_normalize_bench

    run_normalize_bench(documents, repeat, seed, as_json)


@bench.command("sink")
@click.option("-n", "--cases", default=5_000, show_default=True, help="synthetic cases (about 9 rows each)")
@click.option("--batch-rows", default=5_000, show_default=True, help="rows per INSERT, both sides")
@click.option("--seed", default=141, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of a table")
def sink_cmd(cases: int, batch_rows: int, seed: int, as_json: bool) -> None:
    """ClickHouse sink rows/s per table vs a bare batched INSERT loop (needs gridhub infra up)."""
    from bench.sink import run_sink_bench

    run_sink_bench(cases, batch_rows, seed, as_json)


@bench.command("fusion")
@click.option("--hours", default=6.0, show_default=True, help="simulated hours of traffic")
@click.option("--rate", default=4.0, show_default=True, help="simulated records per second (all sources)")
@click.option("--warmup", default=0.5, show_default=True, help="share of the reports that fill the state first")
@click.option("--seed", default=141, show_default=True)
@click.option("--store", type=click.Choice(["memory", "rocksdb"]), default="rocksdb", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of text")
def fusion_cmd(hours: float, rate: float, warmup: float, seed: int, store: str, as_json: bool) -> None:
    """Fusion engine reports/s and the state size it ran at (open cases, keys, bytes), in process."""
    from bench.fusion import run_fusion_bench

    run_fusion_bench(hours, rate, warmup, seed, store, as_json)


@bench.command("e2e")
@click.option("-n", "--documents", default=30_000, show_default=True, help="pre-loaded documents (throughput)")
@click.option("--latency-seconds", default=60.0, show_default=True, help="how long to produce at the offered rate")
@click.option("--offered", default=1000.0, show_default=True,
              help="offered documents/s for the latency phase (capped at 50%% of the measured throughput)")
@click.option("--seed", default=141, show_default=True)
@click.option("--profile", type=click.Path(dir_okay=False), default=None,
              help="run the worker under cProfile, write the stats here and print the top functions")
@click.option("--quick", is_flag=True, help="6,000 documents, 20 s at the offered rate: under 3 minutes")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 12),
              help="hub workers in one group (at most the 12 partitions); CPU is their sum, RSS the largest")
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of text")
def e2e_cmd(documents: int, latency_seconds: float, offered: float, seed: int, profile: str | None, quick: bool,
            workers: int, as_json: bool) -> None:
    """The whole hub end to end (needs gridhub infra up): throughput, latency, baseline, RSS."""
    from bench.e2e import run_e2e

    if quick:
        documents, latency_seconds = 6_000, 20.0
    run_e2e(documents, latency_seconds, offered, seed, profile, quick, as_json, workers)


@bench.command("state")
@click.option("--days", default=7.0, show_default=True, help="simulated days of province-wide traffic")
@click.option("--per-day", default=35_000, show_default=True,
              help="human reports a day (Zhejiang's volume, issue 8); updates and sensor alarms come on top")
@click.option("--seed", default=141, show_default=True)
@click.option("--timeout", default=3600.0, show_default=True, help="seconds to wait for the worker to fuse them")
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of text")
def state_cmd(days: float, per_day: int, seed: int, timeout: float, as_json: bool) -> None:
    """A fusion worker's peak RSS while holding DAYS of province-scale cases (needs gridhub infra up)."""
    from bench.state import run_state_bench

    run_state_bench(days, per_day, seed, timeout, as_json)


@bench.command("client")
@click.option("-n", "--records", "count", default=50_000, show_default=True, help="records per client and size")
@click.option("--seed", default=141, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of a table")
def client_cmd(count: int, seed: int, as_json: bool) -> None:
    """Produce path: aiokafka (Faust's client) vs confluent-kafka (librdkafka, murmur2), hub settings."""
    from bench.client import run_client_bench

    run_client_bench(count, seed, as_json)


@bench.command("json")
@click.option("--hours", default=6.0, show_default=True, help="simulated hours of traffic that build the state")
@click.option("--repeat", default=9, show_default=True, help="passes per variant (interleaved); the best is reported")
@click.option("--seed", default=141, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of a table")
def json_cmd(hours: float, repeat: int, seed: int, as_json: bool) -> None:
    """State JSON: orjson vs json (dumps / loads) on real fusion and routing state values, in process."""
    from bench.jsonstate import run_json_bench

    run_json_bench(hours, repeat, seed, as_json)


@bench.command("baseline")
@click.option("-n", "--documents", default=30_000, show_default=True, help="pre-loaded documents")
@click.option("--seed", default=141, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of text")
def baseline_cmd(documents: int, seed: int, as_json: bool) -> None:
    """The pass-through of `bench e2e` alone (hub's client stack, no logic): documents/s and CPU per
    document; A/B the stack's settings with GRIDHUB_EVENT_LOOP, GRIDHUB_PRODUCER_LINGER_MS, ..."""
    from bench.e2e import run_baseline

    run_baseline(documents, seed, as_json)


@bench.command("logic")
@click.option("-n", "--documents", default=6_000, show_default=True, help="documents of the e2e mix")
@click.option("--seed", default=141, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of text")
def logic_cmd(documents: int, seed: int, as_json: bool) -> None:
    """CPU per document of the hub's own transforms (normalize, fusion, routing, Avro), no Kafka."""
    from bench.logic import run_logic_bench

    run_logic_bench(documents, seed, as_json)
