"""A local multi-broker Kafka cluster: ``gridhub infra up --brokers 3``.

DESIGN.md "Beyond one machine" asks for replication factor 3,
``min.insync.replicas=2`` and ``acks=all`` producers, and for a test that a
cluster losing a broker loses no acknowledged record.  This module starts such
a cluster on one machine: N KRaft nodes in combined mode (each a broker and a
voter of the controller quorum, like ``deploy/k8s/kafka.yaml``), each a
:class:`~gridhub.infra.kafka.KafkaServer` with its own directory, ports and
node id, sharing one cluster id.

It lives apart from the shared single-node dev servers: its own run dir
(``<run_dir>/cluster/`` unless told otherwise) and its own ports (by default
the dev broker's port + 10000: 29092, 29094, 29096 for clients and the next
odd port for each controller), so starting or stopping it never touches the
servers other developers' tests use.  ClickHouse and Mosquitto are not part of
it: they have no replication story here.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Any

from gridhub.infra.base import LocalServer, _pid_alive
from gridhub.infra.install import _classpath_cache, kafka_classpath
from gridhub.infra.kafka import DEPLOY_DIR, KafkaNode, KafkaServer
from gridhub.infra.manager import Infra, Progress, _quiet
from gridhub.core.settings import Settings

#: The port offset of the cluster from the dev broker: 19092 -> 29092 (``kafka_port`` + 10000).
CLUSTER_PORT_OFFSET = 10000
#: Heap per node: three JVMs on a 2-core / 24 GiB developer box; 512 MiB holds the test topics easily.
CLUSTER_HEAP = "-Xms256m -Xmx512m"


def cluster_properties(brokers: int) -> dict[str, str]:
    """The durability settings of a replicated cluster (DESIGN.md, deploy/k8s/kafka.yaml)."""
    rf = min(3, brokers)
    # min ISR 2 needs at least 3 replicas to tolerate a loss; with fewer brokers it stays 1.
    min_isr = "2" if rf >= 3 else "1"
    return {
        "default.replication.factor": str(rf),
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": str(rf),
        "transaction.state.log.replication.factor": str(rf),
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": str(rf),
        "share.coordinator.state.topic.min.isr": min_isr,
        # Never elect a replica that missed acknowledged writes.
        "unclean.leader.election.enable": "false",
        # A killed node's partitions move within seconds (default 9 s session; 6 s keeps tests short).
        "broker.session.timeout.ms": "6000",
        "broker.heartbeat.interval.ms": "1000",
    }


def share_classpath_cache(source: Settings, target: Settings) -> None:
    """Reuse another run dir's resolved jar classpath (the jars are in ~/.m2 either way; Maven is slow)."""
    src, dst = _classpath_cache(source), _classpath_cache(target)
    if src.exists() and not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


class ClusterNode(KafkaServer):
    """One node of the cluster: a :class:`KafkaServer` whose cluster id is shared with its peers."""

    def __init__(self, settings: Settings, node: KafkaNode, voters: list[KafkaNode], cluster_dir: Path,
                 extra_properties: dict[str, str], classpath_settings: Settings | None = None) -> None:
        super().__init__(settings, node=node, voters=voters, name=f"kafka-{node.node_id}",
                         extra_properties=extra_properties)
        self.status_key = f"kafka-{node.node_id}"
        #: One cluster id for every node (KRaft refuses a quorum of differently formatted nodes).
        self.cluster_id_file = cluster_dir / "cluster.id"
        #: Where the resolved jar classpath is cached (the dev run dir's cache: no second Maven run).
        self.classpath_settings = classpath_settings or settings

    def _java(self, main: str, *args: str) -> list[str]:
        return ["java", *self.settings.kafka_heap.split(), "-cp", kafka_classpath(self.classpath_settings),
                f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'kafka' / 'log4j2.properties'}",
                "-Djava.awt.headless=true", main, *args]


class KafkaCluster(Infra):
    """N local KRaft nodes (combined broker + controller) with replication, under their own run dir."""

    def __init__(self, settings: Settings, brokers: int = 3, *, run_dir: Path | None = None,
                 base_port: int | None = None, heap: str = CLUSTER_HEAP,
                 extra_properties: dict[str, str] | None = None, classpath_settings: Settings | None = None,
                 ) -> None:
        if brokers < 1:
            raise ValueError("a cluster needs at least one broker")
        self.parent_settings = settings
        #: Settings whose run dir caches the resolved jar classpath (tests pass the dev run dir's).
        self.classpath_settings = classpath_settings or settings
        self.brokers = brokers
        cluster_dir = (run_dir or Path(settings.run_dir) / "cluster").resolve()
        base = base_port if base_port is not None else settings.kafka_port + CLUSTER_PORT_OFFSET
        # Node i (1-based): client port base + 2(i-1), controller port the next one.
        self.nodes = [KafkaNode(i, settings.kafka_host, base + 2 * (i - 1), base + 2 * (i - 1) + 1)
                      for i in range(1, brokers + 1)]
        node_settings = settings.model_copy(update={
            "run_dir": cluster_dir, "kafka_heap": heap, "kafka_port": base, "kafka_controller_port": base + 1,
            "replication_factor": min(3, brokers)})
        props = {**cluster_properties(brokers), **(extra_properties or {})}
        self.servers_by_id = {
            n.node_id: self.make_node(node_settings, n, cluster_dir, props) for n in self.nodes}
        super().__init__(node_settings, servers=list(self.servers_by_id.values()))

    def make_node(self, settings: Settings, node: KafkaNode, cluster_dir: Path,
                  props: dict[str, str]) -> ClusterNode:
        """Build one node (a subclass adds listeners or authorisation here)."""
        return ClusterNode(settings, node, self.nodes, cluster_dir, props, classpath_settings=self.classpath_settings)

    def up(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        self._share_classpath_cache()
        return super().up(*args, **kwargs)

    def _share_classpath_cache(self) -> None:
        share_classpath_cache(self.classpath_settings, self.settings)

    def down(self, progress: Progress = _quiet) -> list[str]:
        """SIGTERM every node at once, then wait (SIGKILL after the stop timeout).

        One by one, the last voter would wait out its whole stop timeout: its
        controlled shutdown needs a controller quorum that the earlier stops took away.
        """
        stopped: list[str] = []
        with self.lock():
            pids = {s.name: (s, s.pid()) for s in self.servers}
            for server, pid in pids.values():
                if pid is not None:
                    LocalServer._signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + max(s.stop_timeout for s in self.servers)
            for name, (server, pid) in pids.items():
                if pid is None:
                    server.pid_file.unlink(missing_ok=True)
                    progress(name, "not running", {})
                    continue
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if _pid_alive(pid):
                    LocalServer._signal(pid, signal.SIGKILL)
                    while _pid_alive(pid):
                        time.sleep(0.1)
                server.pid_file.unlink(missing_ok=True)
                stopped.append(name)
                progress(name, "stopped", {})
        return stopped

    @property
    def bootstrap(self) -> str:
        """Every node, comma-separated: a client bootstraps from whichever answers."""
        return ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    def node(self, node_id: int) -> ClusterNode:
        server = self.servers_by_id[node_id]
        assert isinstance(server, ClusterNode)
        return server

    def client_settings(self, **update: Any) -> Settings:
        """Settings for hub processes against this cluster (bootstrap = node 1, replication factor 3)."""
        first = self.nodes[0]
        return self.parent_settings.model_copy(update={
            "kafka_host": first.host, "kafka_port": first.port, "replication_factor": min(3, self.brokers),
            **update})

    def status(self) -> dict[str, Any]:
        data = super().status()
        nodes: list[LocalServer] = list(self.servers_by_id.values())
        data["kafka"] = {
            "bootstrap": self.bootstrap, "brokers": self.brokers,
            "running": sum(1 for s in nodes if data[s.status_key]["running"]),
            "healthy": all(data[s.status_key]["healthy"] for s in nodes),
            "version": next((data[s.status_key].get("version") for s in nodes if data[s.status_key]["healthy"]),
                            None),
        }
        return data
