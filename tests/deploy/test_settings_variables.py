"""Every GRIDHUB_* variable that docker-compose.yml and deploy/k8s/ set reaches a setting, and ports agree.

A misspelt variable is ignored by pydantic-settings (other prefixes share
``GRIDHUB_``), so a deployment could run for months on a default nobody chose.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from connectors.clickhouse.service import SinkSettings
from gridhub.core.settings import REPO_ROOT, Settings

K8S = REPO_ROOT / "deploy" / "k8s"
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def known_variables() -> set[str]:
    """Every variable a gridhub setting reads: Settings (and its _FILE form) and the sink's GRIDHUB_CH_SINK_*."""
    names = {f"GRIDHUB_{f.upper()}" for f in Settings.model_fields}
    names |= {f"{n}_FILE" for n in names}
    names |= {f"GRIDHUB_CH_SINK_{f.upper()}" for f in SinkSettings.model_fields}
    return names | {"GRIDHUB_CONFIG"}


def k8s_variables() -> Iterator[tuple[str, str, str]]:
    """(file, variable, value) for every GRIDHUB_* a manifest sets (ConfigMap data and container env)."""
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc:
                continue
            if doc["kind"] == "ConfigMap":
                for key, value in doc.get("data", {}).items():
                    if key.startswith("GRIDHUB_"):
                        yield path.name, key, str(value)
            spec = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                for env in container.get("env", []):
                    if env["name"].startswith("GRIDHUB_"):
                        yield path.name, env["name"], str(env.get("value", ""))


def compose_variables() -> Iterator[tuple[str, str, str]]:
    for name, service in COMPOSE["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if key.startswith("GRIDHUB_"):
                yield f"docker-compose.yml:{name}", key, str(value)


def test_every_variable_reaches_a_setting() -> None:
    known = known_variables()
    found = list(k8s_variables()) + list(compose_variables())
    assert len(found) >= 30
    unknown = sorted({f"{where}: {name}" for where, name, _ in found if name not in known})
    assert not unknown, "variables no setting reads (typo, or a setting that was renamed):\n" + "\n".join(unknown)


def test_every_value_is_valid_for_its_setting() -> None:
    """The values parse: the same check `gridhub` does at start (one error line, exit 2)."""
    for where, name, value in list(k8s_variables()) + list(compose_variables()):
        if name.endswith("_FILE") or name.startswith("GRIDHUB_CH_SINK_"):
            continue
        field = name.removeprefix("GRIDHUB_").lower()
        Settings.model_validate({field: value})  # raises with the field and value on a bad one


def _published(service: str) -> dict[int, int]:
    """container port -> host port of a compose service."""
    out = {}
    for mapping in COMPOSE["services"][service].get("ports", []):
        host, _, container = str(mapping).rpartition(":")
        out[int(container)] = int(host)
    return out


def test_compose_ports_agree() -> None:
    hub = COMPOSE["services"]["hub"]["environment"]
    kafka = COMPOSE["services"]["kafka"]["environment"]
    internal = re.search(r"INTERNAL://kafka:(\d+)", kafka["KAFKA_ADVERTISED_LISTENERS"])
    assert internal and int(hub["GRIDHUB_KAFKA_PORT"]) == int(internal.group(1))
    assert f"INTERNAL://:{hub['GRIDHUB_KAFKA_PORT']}" in kafka["KAFKA_LISTENERS"]
    assert int(hub["GRIDHUB_CLICKHOUSE_PORT"]) in _published("clickhouse")  # 9000 inside the network
    assert int(hub["GRIDHUB_CLICKHOUSE_HTTP_PORT"]) in _published("clickhouse")
    assert int(hub["GRIDHUB_MQTT_PORT"]) in _published("mosquitto")
    assert int(hub["GRIDHUB_GATEWAY_PORT"]) in _published("hub")
    web = int(hub["GRIDHUB_WEB_PORT"])
    assert web in _published("hub")
    check = " ".join(COMPOSE["services"]["hub"]["healthcheck"]["test"])
    assert f"127.0.0.1:{web}/healthz" in check


def test_compose_kafka_keeps_its_log_on_the_volume() -> None:
    kafka: dict[str, Any] = COMPOSE["services"]["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in kafka["volumes"]}
    assert any(log_dirs == target or log_dirs.startswith(target + "/") for target in mounts), (log_dirs, mounts)
    assert all(not Path(target).is_relative_to("/tmp") for target in mounts)


def test_compose_and_k8s_run_the_same_releases() -> None:
    def images(docs: list[dict[str, Any]]) -> dict[str, str]:
        out = {}
        for doc in docs:
            spec = doc.get("spec", {}).get("template", {}).get("spec", {})
            for c in spec.get("containers", []):
                name, _, tag = c["image"].rpartition(":")
                out[name] = tag
        return out

    k8s = images([d for p in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d])
    compose = {s["image"].rpartition(":")[0]: s["image"].rpartition(":")[2]
               for s in COMPOSE["services"].values() if "image" in s}
    assert set(compose) == {"apache/kafka", "clickhouse/clickhouse-server", "eclipse-mosquitto"}
    for image, tag in compose.items():
        assert k8s[image] == tag, f"{image}: compose {tag}, k8s {k8s[image]}"
