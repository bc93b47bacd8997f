"""A local replicated ClickHouse: ``gridhub infra up --clickhouse-replicas 2``.

Production runs one shard of two ClickHouse replicas coordinated by Keeper
(deploy/k8s/clickhouse*.yaml).  This module starts the same shape on one
machine, so the replicated DDL (``gridhub ch migrate --cluster``) and the sink
are tested against real replication: N ClickHouse servers of Debian's package
(18.16, which has no Keeper of its own) and one ZooKeeper from Debian's
``zookeeper`` package (ZooKeeper is the coordination protocol Keeper speaks,
so the servers' ``<zookeeper>`` section is the same in both).

Like ``--brokers 3`` it never touches the shared dev servers: its own run dir
(``<run_dir>/replicated/``: ``zookeeper/``, ``clickhouse-1/``,
``clickhouse-2/``) and its own ports (the dev ports + 10000 for replica 1, + 10
for each next replica; ZooKeeper on 22181 = 2181 + 20000, as 12181 would be
the dev convention but is free for a system ZooKeeper's admin tools).

Every replica's ``config.d/cluster.xml`` (from
``deploy/clickhouse/cluster.xml.template``) names the cluster ``gridhub`` (one
shard, every replica, ``internal_replication``), the ZooKeeper and the
``{shard}`` / ``{replica}`` macros, exactly as the k8s ConfigMap does.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from gridhub.infra.base import DEPLOY_DIR, InfraError, LocalServer, render_template
from gridhub.infra.clickhouse import ClickHouseServer
from gridhub.infra.cluster import share_classpath_cache
from gridhub.infra.manager import Infra, Progress, _quiet
from gridhub.core.settings import Settings

#: Debian's zookeeper package: one jar whose manifest Class-Path names its dependencies.
ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
#: The cluster name of deploy/k8s/clickhouse.yaml (remote_servers), used by `ch migrate --cluster`.
CLUSTER_NAME = "gridhub"
#: Replica ports: the dev ports + 10000 (19000 -> 29000, 18123 -> 28123), + 10 per further replica.
REPLICA_PORT_OFFSET = 10000
REPLICA_PORT_STEP = 10
#: ZooKeeper's standard client port 2181 + 20000 (12181 + 10000, following the dev convention).
ZOOKEEPER_PORT = 22181


class ZooKeeperServer(LocalServer):
    """A standalone ZooKeeper (Debian's package) for the replicas' coordination."""

    name = "zookeeper"
    status_key = "zookeeper"
    # The JVM starts in a few seconds; 60 s covers a loaded 2-core machine.
    start_timeout = 60.0
    stop_timeout = 20.0

    def __init__(self, settings: Settings, port: int = ZOOKEEPER_PORT, name: str | None = None) -> None:
        super().__init__(settings, name)
        self.port = port

    @property
    def host(self) -> str:
        return self.settings.clickhouse_host

    def ports(self) -> list[int]:
        return [self.port]

    @property
    def config_file(self) -> Path:
        return self.home / "zoo.cfg"

    def prepare(self) -> None:
        if not ZOOKEEPER_JAR.exists():
            raise InfraError(self.name, f"{ZOOKEEPER_JAR} is missing: install Debian's zookeeper package "
                                        "(deploy/setup.sh does)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        render_template(DEPLOY_DIR / "clickhouse" / "zoo.cfg.template", self.config_file,
                        {"data_dir": self.data_dir, "host": self.host, "port": self.port})

    def command(self) -> list[str]:
        # 256 MiB: a test's few hundred znodes; ZooKeeper's own guidance is to size the heap to the data.
        return ["java", "-Xms64m", "-Xmx256m", "-Djava.awt.headless=true", "-cp", str(ZOOKEEPER_JAR),
                "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(self.config_file)]

    def _four_letters(self, word: str) -> str:
        with socket.create_connection((self.host, self.port), timeout=3) as sock:
            sock.sendall(word.encode())
            chunks = []
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def check(self) -> None:
        if self._four_letters("ruok") != "imok":
            raise RuntimeError("zookeeper did not answer imok")

    def version(self) -> str | None:
        try:
            first = self._four_letters("srvr").splitlines()[0]  # "Zookeeper version: 3.8.0-..., built on ..."
        except (OSError, IndexError):
            return None
        return first.split(":", 1)[-1].split(",")[0].strip().split("-")[0]

    def info(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port}


class ReplicaServer(ClickHouseServer):
    """One ClickHouse replica: the dev server's config plus ``config.d/cluster.xml``."""

    def __init__(self, settings: Settings, number: int, replicas: list[tuple[int, int, int]],
                 zookeeper: ZooKeeperServer, cluster: str = CLUSTER_NAME) -> None:
        tcp, http, interserver = replicas[number - 1]
        super().__init__(settings, name=f"clickhouse-{number}", tcp_port=tcp, http_port=http,
                         interserver_http_port=interserver)
        self.status_key = f"clickhouse-{number}"
        self.number = number
        self.replicas = replicas
        self.zookeeper = zookeeper
        self.cluster = cluster

    def prepare(self) -> None:
        super().prepare()
        replicas = "\n".join(
            f"                <replica><host>{self.host}</host><port>{tcp}</port></replica>"
            for tcp, _, _ in self.replicas)
        render_template(DEPLOY_DIR / "clickhouse" / "cluster.xml.template", self.home / "config.d" / "cluster.xml", {
            "cluster": self.cluster, "replicas": replicas.strip(), "zookeeper_host": self.zookeeper.host,
            "zookeeper_port": self.zookeeper.port, "shard": "01", "replica": f"replica-{self.number}"})

    def info(self) -> dict[str, Any]:
        return {**super().info(), "replica": f"replica-{self.number}", "cluster": self.cluster}


class ReplicatedClickHouse(Infra):
    """One ZooKeeper and N ClickHouse replicas of one shard, under their own run dir."""

    def __init__(self, settings: Settings, replicas: int = 2, *, run_dir: Path | None = None,
                 base_port: int | None = None, zookeeper_port: int | None = None,
                 ports: list[tuple[int, int, int]] | None = None, cluster: str = CLUSTER_NAME) -> None:
        if replicas < 1:
            raise ValueError("a replicated ClickHouse needs at least one replica")
        self.parent_settings = settings
        self.cluster = cluster
        home = (run_dir or Path(settings.run_dir) / "replicated").resolve()
        node_settings = settings.model_copy(update={"run_dir": home})
        if ports is None:
            tcp = base_port if base_port is not None else settings.clickhouse_port + REPLICA_PORT_OFFSET
            http = settings.clickhouse_http_port + (tcp - settings.clickhouse_port)
            ports = [(tcp + REPLICA_PORT_STEP * i, http + REPLICA_PORT_STEP * i, tcp + 9 + REPLICA_PORT_STEP * i)
                     for i in range(replicas)]
        if len(ports) != replicas:
            raise ValueError("one (tcp, http, interserver) port triple per replica")
        self.zookeeper = ZooKeeperServer(node_settings, zookeeper_port or ZOOKEEPER_PORT)
        self.replicas = [ReplicaServer(node_settings, n, ports, self.zookeeper, cluster)
                         for n in range(1, replicas + 1)]
        super().__init__(node_settings, servers=[self.zookeeper, *self.replicas])

    def up(self, progress: Progress = _quiet) -> dict[str, float]:
        # `up` resolves the Kafka jars too (shared install step): reuse the dev run dir's cached classpath.
        share_classpath_cache(self.parent_settings, self.settings)
        return super().up(progress)

    def replica_settings(self, number: int, base: Settings | None = None, **update: Any) -> Settings:
        """``base`` (default: the settings given) for a hub process whose ClickHouse is replica ``number``."""
        replica = self.replicas[number - 1]
        return (base or self.parent_settings).model_copy(update={
            "clickhouse_host": replica.host, "clickhouse_port": replica.tcp_port,
            "clickhouse_http_port": replica.http_port, "clickhouse_cluster": self.cluster, **update})

    def status(self) -> dict[str, Any]:
        data = super().status()
        data["clickhouse"] = {
            "cluster": self.cluster, "replicas": len(self.replicas),
            "healthy": all(data[r.status_key]["healthy"] for r in self.replicas),
            "endpoints": [f"{r.host}:{r.tcp_port}" for r in self.replicas],
        }
        return data
