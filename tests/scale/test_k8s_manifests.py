"""The production manifests (deploy/k8s/) parse and keep the invariants docs/scaling.md relies on.

No cluster is needed: these are the properties a reviewer would check by eye
(replication, quorum sizes, workers <= partitions, pinned images, no secret in
the repository), made executable so a later edit cannot quietly break them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|PII_KEY|PRIVATE", re.I)
VERSION_TAG = re.compile(r"^\d+\.\d+\.\d+(\.\d+)?$")


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                doc["__file"] = path.name
                docs.append(doc)
    return docs


DOCS = documents()


def find(kind: str, name: str) -> dict[str, Any]:
    for doc in DOCS:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


def properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert len(DOCS) >= 20


def test_kafka_three_brokers_rf3_min_isr2() -> None:
    sts = find("StatefulSet", "kafka")
    assert sts["spec"]["replicas"] == 3
    props = properties(find("ConfigMap", "kafka-config")["data"]["server.properties.template"])
    assert len(props["controller.quorum.voters"].split(",")) == 3
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["unclean.leader.election.enable"] == "false"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert "StandardAuthorizer" in props["authorizer.class.name"]
    assert set(props["listener.security.protocol.map"].split(",")) == {
        "CLIENT:SASL_SSL", "CONTROLLER:SSL", "REPLICATION:SSL"}, "no plaintext listener in production"
    pdb = find("PodDisruptionBudget", "kafka")
    assert pdb["spec"]["maxUnavailable"] == 1, "two brokers down would refuse acks=all writes (min ISR 2)"


def test_topics_as_code_asks_min_isr_2_at_rf_3() -> None:
    topics = yaml.safe_load((ROOT / "deploy" / "topics.yaml").read_text())
    rule = topics["min_insync_replicas"]
    assert rule["when_replication_factor_at_least"] <= 3 and rule["value"] == "2"


def test_clickhouse_two_replicas_and_three_keepers() -> None:
    assert find("StatefulSet", "clickhouse")["spec"]["replicas"] == 2
    assert find("StatefulSet", "clickhouse-keeper")["spec"]["replicas"] == 3
    cluster = ET.fromstring(find("ConfigMap", "clickhouse-config")["data"]["cluster.xml"])
    replicas = cluster.findall("./remote_servers/gridhub/shard/replica")
    assert len(replicas) == 2
    assert cluster.findtext("./remote_servers/gridhub/shard/internal_replication") == "true"
    assert len(cluster.findall("./zookeeper/node")) == 3
    keeper = ET.fromstring(find("ConfigMap", "clickhouse-keeper-config")["data"]["keeper_config.xml"])
    assert len(keeper.findall("./keeper_server/raft_configuration/server")) == 3


def test_workers_share_one_group_and_fit_the_partitions() -> None:
    config = find("ConfigMap", "gridhub-config")["data"]
    workers = find("Deployment", "gridhub-worker")
    replicas = workers["spec"]["replicas"]
    assert 2 <= replicas <= int(config["GRIDHUB_PARTITIONS"]), "workers beyond the partitions sit idle"
    assert config["GRIDHUB_REPLICATION_FACTOR"] == "3"
    env = {e["name"] for c in containers(workers) for e in c.get("env", [])}
    assert "GRIDHUB_NAMESPACE" not in env and "GRIDHUB_APP_ID" not in env, "one group: same app id everywhere"
    service = find("Service", "gridhub-gateway")
    labels = workers["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items(), "the gateway Service must select the workers"
    bridge = find("Deployment", "gridhub-mqtt-bridge")
    assert bridge["spec"]["replicas"] == 1 and bridge["spec"]["strategy"]["type"] == "Recreate"


def test_images_are_pinned() -> None:
    images = [c["image"] for d in DOCS for c in containers(d)]
    assert len(images) >= 6
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", f"{image}: pin a release tag"
        assert VERSION_TAG.match(tag), f"{image}: tag must be a full version (x.y.z)"


def test_no_plaintext_secrets() -> None:
    for doc in DOCS:
        assert doc["kind"] != "Secret", f"{doc['__file']}: secrets are created out of band (docs/security.md)"
        if doc["kind"] == "ConfigMap":
            for key, value in doc["data"].items():
                if SECRET_NAME.search(key):
                    assert key.endswith("_FILE") and value.startswith("/"), f"{key}: reference a file, not a value"
        for c in containers(doc):
            for e in c.get("env", []):
                if SECRET_NAME.search(e["name"]) and not e["name"].endswith("_FILE"):
                    assert "value" not in e and "secretKeyRef" in e.get("valueFrom", {}), \
                        f"{doc['__file']}: {e['name']} must come from a Secret"
    text = "\n".join(p.read_text(encoding="utf-8") for p in K8S.glob("*.yaml"))
    for match in re.finditer(r"(?im)^\s*[\w.]*password\s*[=:]\s*(\S+)", text):
        value = match.group(1)
        assert value.startswith(("${dir:", "{", "valueFrom")) or value.startswith("/"), \
            f"literal password in deploy/k8s: {match.group(0).strip()}"


@pytest.mark.parametrize("secret", ["gridhub-secrets", "kafka-scram", "kafka-tls", "mosquitto-passwd"])
def test_every_referenced_secret_is_documented(secret: str) -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in K8S.glob("*.yaml"))
    assert f"secretName: {secret}" in text or f"name: {secret}" in text
    assert secret in (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
