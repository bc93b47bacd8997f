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
