"""Apache Kafka in KRaft combined mode (broker + controller in one JVM).

The jars come from Maven Central through ``deploy/kafka/pom.xml`` (see
:mod:`gridhub.infra.install`); the broker is ``java -cp <jars> kafka.Kafka
server.properties``.  The storage directory is formatted once with
``kafka.tools.StorageTool`` against a static controller quorum
(``controller.quorum.voters``), which Kafka 4.0 accepts without
``--standalone`` / ``--initial-controllers`` and which extends to a
three-node cluster by passing more :class:`KafkaNode`\\ s as voters.
"""

from __future__ import annotations

import base64
import logging
import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridhub.infra.base import DEPLOY_DIR, InfraError, LocalServer, display_path, tail
from gridhub.infra.install import kafka_classpath
from gridhub.core.settings import Settings

#: Topic of the produce/consume health round trip (leading underscore: infrastructure, not a contract topic).
HEALTH_TOPIC = "_gridhub-health"



class _HealthTopicNoise(logging.Filter):
    """Drops kafka-python's "topic not found" error for the health topic's first, auto-creating use."""

    def filter(self, record: logging.LogRecord) -> bool:
        return HEALTH_TOPIC not in record.getMessage()


for _name in ("kafka.cluster", "kafka.producer.sender"):  # "not found" / "not leader" while the broker settles
    logging.getLogger(_name).addFilter(_HealthTopicNoise())

#: Logged by org.apache.kafka.common.utils.AppInfoParser when the broker starts.
_VERSION_LINE = re.compile(r"Kafka version: (\S+)")


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node's identity and listeners."""

    node_id: int
    host: str
    port: int
    controller_port: int

    @property
    def voter(self) -> str:
        return f"{self.node_id}@{self.host}:{self.controller_port}"


class KafkaServer(LocalServer):
    name = "kafka"
    status_key = "kafka"
    # A cold JVM plus the first KRaft election takes ~10 s here; 120 s covers a loaded CI box.
    start_timeout = 120.0
    # Controlled shutdown of a combined node takes a few seconds; 60 s before SIGKILL.
    stop_timeout = 60.0

    def __init__(self, settings: Settings, node: KafkaNode | None = None, voters: list[KafkaNode] | None = None,
                 name: str | None = None, extra_properties: dict[str, str] | None = None) -> None:
        super().__init__(settings, name)
        self.node = node or KafkaNode(1, settings.kafka_host, settings.kafka_port, settings.kafka_controller_port)
        self.voters = voters or [self.node]
        self.extra_properties = extra_properties or {}
        self.cluster_id_file = self.home / "cluster.id"

    @property
    def host(self) -> str:
        return self.node.host

    @property
    def bootstrap(self) -> str:
        return f"{self.node.host}:{self.node.port}"

    def ports(self) -> list[int]:
        return [self.node.port, self.node.controller_port]

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    # --- configuration ------------------------------------------------------------
    def properties(self) -> dict[str, str]:
        """server.properties as a mapping; subclasses add SASL listeners or replication here."""
        rf = str(min(self.settings.replication_factor, len(self.voters)))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node.node_id),
            "controller.quorum.voters": ",".join(v.voter for v in self.voters),
            "listeners": f"PLAINTEXT://{self.node.host}:{self.node.port},"
                         f"CONTROLLER://{self.node.host}:{self.node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.node.host}:{self.node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(self.settings.partitions),
            "default.replication.factor": rf,
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": "1",
            # Dev/test: a consumer group starts at once instead of waiting 3 s for more members.
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            # One week, Kafka's default, stated so replay windows are visible here.
            "log.retention.hours": "168",
            # 2 cores: fewer threads than Kafka's defaults (3 network / 8 io).
            "num.network.threads": "2",
            "num.io.threads": "4",
        }
        props.update(self.extra_properties)
        return props

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = "# generated by gridhub infra up; edits are overwritten\n" + "".join(
            f"{key}={value}\n" for key, value in self.properties().items())
        self.config_file.write_text(text, encoding="utf-8")
        self._format_storage()

    def cluster_id(self) -> str:
        """The cluster id, created once per run dir (a base64url UUID, as Kafka expects)."""
        if self.cluster_id_file.exists():
            return self.cluster_id_file.read_text().strip()
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        self.cluster_id_file.parent.mkdir(parents=True, exist_ok=True)
        self.cluster_id_file.write_text(cid + "\n")
        return cid

    def _java(self, main: str, *args: str) -> list[str]:
        return ["java", *self.settings.kafka_heap.split(), "-cp", kafka_classpath(self.settings),
                f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'kafka' / 'log4j2.properties'}",
                "-Djava.awt.headless=true", main, *args]

    def format_args(self) -> list[str]:
        """Extra ``StorageTool format`` arguments (a SASL subclass adds ``--add-scram`` credentials)."""
        return []

    def _format_storage(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cmd = self._java("kafka.tools.StorageTool", "format", "-t", self.cluster_id(), "-c", str(self.config_file),
                         *self.format_args())
        result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        with self.log_file.open("a", encoding="utf-8") as log:
            log.write(result.stdout[-4000:] + result.stderr[-4000:])
        if result.returncode != 0:
            raise InfraError(self.name, f"formatting the storage failed (log: {display_path(self.log_file)})",
                             detail=tail(self.log_file))

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_file))

    # --- health -------------------------------------------------------------------
    def client_options(self) -> dict[str, Any]:
        """Extra kafka-python arguments of the health clients (a SASL subclass adds credentials)."""
        return {}

    def check(self) -> None:
        """Produce a unique record and read it back from the partition it landed on."""
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        token = uuid.uuid4().bytes
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", max_block_ms=10000,
                                 request_timeout_ms=10000, **self.client_options())
        try:
            meta = producer.send(HEALTH_TOPIC, value=token).get(timeout=15)
        finally:
            producer.close(timeout=5)
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                 request_timeout_ms=10000, **self.client_options())
        try:
            tp = TopicPartition(HEALTH_TOPIC, meta.partition)
            consumer.assign([tp])
            consumer.seek(tp, meta.offset)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=1000).values():
                    if any(r.value == token for r in records):
                        return
        finally:
            consumer.close()
        raise RuntimeError("kafka health record was produced but not consumed")

    def api_version(self) -> str | None:
        """The broker's version as its ApiVersions answer identifies it (major.minor)."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap,
                                 request_timeout_ms=10000, **self.client_options())
        try:
            version = admin._client.check_version(timeout_ms=5000)  # probes ApiVersions on the broker
        finally:
            admin.close()
        return ".".join(str(part) for part in version)

    def version(self) -> str | None:
        """The full version the running broker logged at start, confirmed against ApiVersions.

        The broker's own ``Kafka version: X`` line gives the patch level; the
        ApiVersions probe proves the answering broker is of that line.
        """
        try:
            api = self.api_version()
        except Exception:
            return None
        logged = self._logged_version()
        if api and logged and logged.startswith(api + "."):
            return logged
        return api

    def _logged_version(self) -> str | None:
        found: str | None = None
        try:
            with self.log_file.open(encoding="utf-8", errors="replace") as log:
                for line in log:  # the last start's line wins
                    match = _VERSION_LINE.search(line)
                    if match:
                        found = match.group(1)
        except OSError:
            return None
        return found

    def info(self) -> dict[str, Any]:
        return {
            "bootstrap": self.bootstrap,
            "host": self.node.host,
            "port": self.node.port,
            "controller_port": self.node.controller_port,
            "node_id": self.node.node_id,
        }
