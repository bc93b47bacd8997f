"""Generated server configs (no servers needed)."""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from gridhub.infra import ClickHouseServer, KafkaNode, KafkaServer, MosquittoServer
from gridhub.infra.base import port_in_use, tail
from gridhub.core.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings(run_dir=tmp_path / "run", kafka_port=29092, kafka_controller_port=29093, partitions=12,
                    clickhouse_port=29000, clickhouse_http_port=28123, mqtt_port=21883)


def test_kafka_single_node_properties(tmp_path: Path) -> None:
    props = KafkaServer(_settings(tmp_path)).properties()
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["num.partitions"] == "12"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    assert props["log.dirs"] == str((tmp_path / "run" / "kafka" / "data").resolve())


def test_kafka_properties_are_parameterised_for_a_cluster(tmp_path: Path) -> None:
    settings = _settings(tmp_path).model_copy(update={"replication_factor": 3})
    nodes = [KafkaNode(i, "127.0.0.1", 30000 + 2 * i, 30001 + 2 * i) for i in (1, 2, 3)]
    server = KafkaServer(settings, node=nodes[1], voters=nodes, name="kafka-2",
                         extra_properties={"min.insync.replicas": "2"})
    props = server.properties()
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:30003,2@127.0.0.1:30005,3@127.0.0.1:30007"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:30004,CONTROLLER://127.0.0.1:30005"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert server.ports() == [30004, 30005]
    assert server.home == (tmp_path / "run" / "kafka-2").resolve()


def test_clickhouse_config_is_valid_xml_under_the_run_dir(tmp_path: Path) -> None:
    server = ClickHouseServer(_settings(tmp_path))
    server.prepare()
    root = ET.parse(server.config_file).getroot()
    assert root.tag == "yandex"  # 18.16's root element
    assert root.findtext("tcp_port") == "29000"
    assert root.findtext("http_port") == "28123"
    assert root.findtext("interserver_http_port") == "29009"
    assert root.findtext("listen_host") == "127.0.0.1"
    assert root.findtext("path") == f"{server.data_dir}/"
    assert root.findtext("logger/log") == str(server.log_file)
    users = ET.parse(server.home / "users.xml").getroot()
    assert users.find("users/default/password") is not None
    assert users.findtext("users/default/password") in (None, "")
    assert server.ports() == [29000, 28123, 29009]


def test_mosquitto_config(tmp_path: Path) -> None:
    server = MosquittoServer(_settings(tmp_path))
    server.prepare()
    lines = server.config_file.read_text().splitlines()
    assert "listener 21883 127.0.0.1" in lines
    assert "allow_anonymous true" in lines
    assert "persistence true" in lines
    assert f"persistence_location {server.data_dir}/" in lines
    assert f"log_dest file {server.log_file}" in lines


def test_port_in_use_sees_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.listen()
        assert port_in_use("127.0.0.1", port) is True
    assert port_in_use("127.0.0.1", port) is False


def test_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 3) == "line 97\nline 98\nline 99"
    assert tail(tmp_path / "missing.log") == ""


def test_not_our_process_when_the_pid_file_points_elsewhere(tmp_path: Path) -> None:
    import os

    server = MosquittoServer(_settings(tmp_path))
    server.home.mkdir(parents=True)
    server.pid_file.write_text(f"{os.getpid()}\n")  # alive, but its command line is pytest's
    assert server.pid() is None
    assert server.running() is False
