"""docker-compose.yml: the Docker path stays in step with the native one (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gridhub.core.settings import REPO_ROOT, Settings

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]


def _tag(service: str) -> tuple[str, str]:
    image, _, tag = SERVICES[service]["image"].partition(":")
    return image, tag


def test_servers_are_pinned_images() -> None:
    assert set(SERVICES) == {"kafka", "clickhouse", "mosquitto", "hub"}
    image, tag = _tag("kafka")
    assert image == "apache/kafka" and re.fullmatch(r"4\.0\.\d+", tag), tag
    # The same 4.0 line as the native path (whose jars Maven resolves; patch releases are wire-compatible).
    assert tag.rsplit(".", 1)[0] == Settings.model_construct().kafka_version.rsplit(".", 1)[0]
    image, tag = _tag("clickhouse")
    assert image == "clickhouse/clickhouse-server" and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", tag), tag
    assert int(tag.split(".")[0]) >= 26
    image, tag = _tag("mosquitto")
    assert image == "eclipse-mosquitto" and re.fullmatch(r"2\.\d+\.\d+", tag), tag


def test_kafka_is_a_kraft_combined_node_with_the_dev_defaults() -> None:
    env = SERVICES["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_NUM_PARTITIONS"] == str(Settings.model_construct().partitions)
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert "INTERNAL://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_host_ports_are_the_native_defaults() -> None:
    # Field defaults, not Settings(): CI may move this run's ports through GRIDHUB_* variables.
    s = Settings.model_construct()
    published = {svc: [str(p) for p in SERVICES[svc].get("ports", [])] for svc in SERVICES}
    assert f"{s.kafka_port}:{s.kafka_port}" in published["kafka"]
    assert f"{s.clickhouse_port}:9000" in published["clickhouse"]
    assert f"{s.clickhouse_http_port}:8123" in published["clickhouse"]
    assert f"{s.mqtt_port}:1883" in published["mosquitto"]
    assert f"{s.gateway_port}:{s.gateway_port}" in published["hub"]


def test_every_service_has_a_healthcheck_and_the_hub_waits_for_them() -> None:
    for name, service in SERVICES.items():
        check = service["healthcheck"]["test"]
        assert check[0] in ("CMD", "CMD-SHELL") and len(check) > 1, name
    assert SERVICES["hub"]["depends_on"] == {
        name: {"condition": "service_healthy"} for name in ("kafka", "clickhouse", "mosquitto")}


def test_hub_is_built_from_the_dockerfile_and_runs_gridhub() -> None:
    hub = SERVICES["hub"]
    assert hub["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
    assert hub["command"] == ["gridhub", "run"]
    dockerfile = (REPO_ROOT / hub["build"]["dockerfile"]).read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11[\w.-]*$", dockerfile, re.M)
    # Settings field names, not invented variables: each one must reach a field.
    fields = {f"GRIDHUB_{name.upper()}" for name in Settings.model_fields}
    assert set(hub["environment"]) <= fields
    assert hub["environment"]["GRIDHUB_KAFKA_HOST"] == "kafka"
    assert hub["environment"]["GRIDHUB_CLICKHOUSE_HOST"] == "clickhouse"
    assert hub["environment"]["GRIDHUB_MQTT_HOST"] == "mosquitto"


def test_mounted_files_exist() -> None:
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).is_file(), source
    assert Path(REPO_ROOT / "deploy" / "mosquitto" / "docker.conf").read_text().count("listener 1883") == 1
