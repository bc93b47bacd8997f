"""docs/scaling.md "Deploy it" matches deploy/k8s/ line for line.

Every workload, Service and ConfigMap of the manifests is named in the
walk-through; every ``kind/name`` a command in it uses exists; every secret
the manifests mount is created there with every key they read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gridhub.core.settings import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
DOCS: list[dict[str, Any]] = [d for p in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
TEXT = (REPO_ROOT / "docs" / "scaling.md").read_text(encoding="utf-8")
SECTION = TEXT[TEXT.index("\n## Deploy it\n"):TEXT.index("\n## ", TEXT.index("\n## Deploy it\n") + 5)]
KINDS = {"statefulset": "StatefulSet", "deployment": "Deployment", "job": "Job", "svc": "Service",
         "service": "Service", "configmap": "ConfigMap"}


def names(kind: str) -> set[str]:
    return {d["metadata"]["name"] for d in DOCS if d["kind"] == kind}


def pod_specs() -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in DOCS if "template" in d.get("spec", {})]


def test_every_manifest_and_object_is_in_the_walk_through() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert f"`{resource}`" in SECTION, resource
    for kind in ("StatefulSet", "Deployment", "Job", "Service", "ConfigMap", "PersistentVolumeClaim"):
        for name in names(kind):
            assert f"`{name}`" in SECTION or re.search(rf"\b{re.escape(name)}\b", SECTION), f"{kind} {name}"


def test_every_object_a_command_names_exists() -> None:
    used = re.findall(r"\b(statefulset|deployment|job|svc)/([a-z0-9-]+)", SECTION)
    assert len(used) >= 8
    for kind, name in used:
        assert name in names(KINDS[kind]), f"{kind}/{name} is not in deploy/k8s"
    for name in re.findall(r"delete job ([a-z0-9-]+)\s+([a-z0-9-]+)", SECTION)[0]:
        assert name in names("Job")


def referenced_secret_keys() -> dict[str, set[str]]:
    """secret -> keys the manifests read (secretKeyRef, items, and files under a whole-secret mount)."""
    out: dict[str, set[str]] = {}
    config = next(d for d in DOCS if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "gridhub-config")["data"]
    for spec in pod_specs():
        volumes = {v["name"]: v["secret"] for v in spec.get("volumes", []) if "secret" in v}
        for secret in volumes.values():
            keys = out.setdefault(secret["secretName"], set())
            keys.update(i["key"] for i in secret.get("items", []))
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    out.setdefault(ref["name"], set()).add(ref["key"])
            values = [v for k, v in config.items() if k.endswith("_FILE")] \
                if any("configMapRef" in e for e in container.get("envFrom", [])) else []
            for mount in container.get("volumeMounts", []):
                secret = volumes.get(mount["name"])
                if secret is None or secret.get("items"):
                    continue
                prefix = mount["mountPath"].rstrip("/") + "/"
                out[secret["secretName"]].update(v[len(prefix):] for v in values if v.startswith(prefix))
    return out


def test_every_secret_and_key_is_created() -> None:
    referenced = referenced_secret_keys()
    assert set(referenced) >= {"gridhub-secrets", "kafka-scram", "kafka-tls", "mosquitto-passwd", "mosquitto-tls"}
    for secret, keys in referenced.items():
        assert f"create secret generic {secret}" in SECTION, secret
        rows = [line for line in SECTION.splitlines() if line.startswith(f"| `{secret}` |")]
        documented = set(re.findall(r"`([^`]+)`", " ".join(r.split("|")[2] for r in rows)))
        assert keys <= documented, f"{secret}: keys {sorted(keys - documented)} are read but not documented"
    # keys a server reads from its own config (not through a secretKeyRef) are documented too
    kafka = next(d for d in DOCS if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kafka-config")
    for key in re.findall(r"/etc/kafka/tls/([\w.]+)", kafka["data"]["server.properties.template"]):
        assert f"`{key}`" in SECTION, key
    mosquitto = next(d for d in DOCS if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "mosquitto-config")
    for key in re.findall(r"/mosquitto/(?:tls|secret)/([\w.]+)", mosquitto["data"]["mosquitto.conf"]):
        assert f"`{key}`" in SECTION, key


def test_the_values_the_walk_through_quotes_are_the_manifests() -> None:
    external = next(d for d in DOCS if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kafka-external")
    for broker, address in external["data"].items():
        assert f"`{broker}`" in SECTION
        assert address.endswith(":9095") and "9095" in SECTION
    config = next(d for d in DOCS if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "gridhub-config")["data"]
    for variable in ("GRIDHUB_WEB_BIND", "GRIDHUB_CLICKHOUSE_CLUSTER", "GRIDHUB_CH_SINK_MIGRATE", "GRIDHUB_MQTT_TLS",
                     "GRIDHUB_MQTT_USERNAME", "GRIDHUB_MQTT_PASSWORD_FILE", "GRIDHUB_MQTT_CA_FILE"):
        assert variable in config and variable in SECTION, variable
    assert f"GRIDHUB_WEB_BIND={config['GRIDHUB_WEB_BIND']}" in SECTION
    assert f"GRIDHUB_CLICKHOUSE_CLUSTER={config['GRIDHUB_CLICKHOUSE_CLUSTER']}" in SECTION
    assert f"GRIDHUB_CH_SINK_MIGRATE={config['GRIDHUB_CH_SINK_MIGRATE']}" in SECTION
    assert "prometheus.io/port: \"16066\"" in SECTION and config["GRIDHUB_WEB_PORT"] == "16066"
    assert Path(REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml").exists()
