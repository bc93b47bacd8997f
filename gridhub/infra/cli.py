"""``gridhub infra up | down | status [--json] | install``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from gridhub.infra.base import InfraError, display_path
from gridhub.infra.manager import Infra
from gridhub.core.settings import get_settings


def _progress(name: str, state: str, details: dict[str, Any]) -> None:
    extra = " ".join(f"{key}={value}" for key, value in details.items())
    click.echo(f"{name:<11} {state:<12} {extra}".rstrip())


def _fail(error: InfraError) -> None:
    click.echo(f"error: {error}", err=True)
    if error.detail:
        click.echo(f"--- last lines of the {error.service} log ---", err=True)
        click.echo(error.detail, err=True)
    sys.exit(1)


@click.group("infra")
def infra() -> None:
    """Local Kafka, ClickHouse and Mosquitto under the run dir (GRIDHUB_RUN_DIR)."""


#: ``--brokers N`` (N > 1): a separate replicated Kafka cluster (gridhub/infra/cluster.py, docs/scaling.md).
brokers_option = click.option("--brokers", default=1, show_default=True, type=click.IntRange(1, 9),
                              help="N > 1: a local N-node Kafka cluster in <run dir>/cluster (own ports)")


#: ``--secure``: a separate SASL/SCRAM + ACL Kafka (gridhub/infra/secure.py, docs/security.md).
secure_option = click.option("--secure", is_flag=True,
                             help="a separate Kafka with SCRAM logins and ACLs in <run dir>/secure (own ports)")


#: ``--clickhouse-replicas N`` (N > 1): ZooKeeper + N ClickHouse replicas (gridhub/infra/replicated.py).
replicas_option = click.option("--clickhouse-replicas", "replicas", default=1, show_default=True,
                               type=click.IntRange(1, 5),
                               help="N > 1: ZooKeeper and N ClickHouse replicas of cluster `gridhub` "
                                    "in <run dir>/replicated (own ports)")


def _manager(brokers: int, secure: bool = False, replicas: int = 1) -> Infra:
    if replicas > 1:
        from gridhub.infra.replicated import ReplicatedClickHouse

        return ReplicatedClickHouse(get_settings(), replicas)
    if secure:
        from gridhub.infra.secure import SecureInfra

        return SecureInfra(get_settings())
    if brokers > 1:
        from gridhub.infra.cluster import KafkaCluster

        return KafkaCluster(get_settings(), brokers)
    return Infra(get_settings())


@infra.command("up")
@brokers_option
@secure_option
@replicas_option
def up(brokers: int, secure: bool, replicas: int) -> None:
    """Install what is missing, start what is not running, wait until all are healthy."""
    manager = _manager(brokers, secure, replicas)
    try:
        manager.up(progress=_progress)
    except InfraError as error:
        _fail(error)
    click.echo(f"infra up: run dir {display_path(manager.run_dir)}")


@infra.command("down")
@brokers_option
@secure_option
@replicas_option
def down(brokers: int, secure: bool, replicas: int) -> None:
    """Stop every server started from this run dir."""
    manager = _manager(brokers, secure, replicas)
    try:
        manager.down(progress=_progress)
    except InfraError as error:
        _fail(error)


@infra.command("install")
def install_cmd() -> None:
    """Install the Debian packages (if missing) and resolve the Kafka jars (if not cached)."""
    from gridhub.infra.install import install

    try:
        installed = install(get_settings())
    except InfraError as error:
        _fail(error)
    click.echo(f"installed: {' '.join(installed) or 'nothing missing'}; kafka jars resolved")


@infra.command("status")
@click.option("--json", "as_json", is_flag=True, help="one JSON object (for scripts)")
@brokers_option
@secure_option
@replicas_option
def status(as_json: bool, brokers: int, secure: bool, replicas: int) -> None:
    """Connection facts and health of each server; exit code 0 even when unhealthy."""
    manager = _manager(brokers, secure, replicas)
    data = manager.status()
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
        return
    rows = []
    for key in [s.status_key for s in manager.servers]:
        item = data[key]
        if key.startswith("kafka"):
            endpoint = item["bootstrap"]
        elif key.startswith("clickhouse"):
            endpoint = f"{item['host']}:{item['port']} (http {item['http_port']})"
        else:
            endpoint = f"{item['host']}:{item['port']}"
        rows.append((key, "healthy" if item["healthy"] else ("running" if item["running"] else "down"),
                     str(item.get("version") or "-"), str(item["pid"] or "-"), endpoint))
    header = ("service", "state", "version", "pid", "endpoint")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    click.echo(f"run dir: {data['run_dir']}")
