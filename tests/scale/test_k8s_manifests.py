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
        "CLIENT:SASL_SSL", "CONTROLLER:SSL", "REPLICATION:SSL", "EXTERNAL:SASL_SSL"}, \
        "no plaintext listener in production"
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


# --- the schemas, and the wiring issue 17 found broken ------------------------------------------

#: Kubernetes releases the manifests must be valid for: the upstream-supported minors (three at a time).
K8S_VERSIONS = ["1.35.0", "1.36.0", "1.37.0"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_document_validates_against_the_kubernetes_schemas(version: str) -> None:
    import kubernetes_validate

    errors = []
    for doc in DOCS:
        if doc["kind"] == "Kustomization":
            continue
        body = {k: v for k, v in doc.items() if k != "__file"}
        try:
            # strict: an unknown (misspelt) field is an error too, not silently dropped by the API server.
            kubernetes_validate.validate(body, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{doc['__file']} {doc['kind']}/{doc['metadata']['name']}: "
                          f"{'.'.join(map(str, error.path))}: {error.message}")
    assert not errors, "\n".join(errors)
    assert sum(1 for d in DOCS if d["kind"] != "Kustomization") >= 30


def _config() -> dict[str, str]:
    return find("ConfigMap", "gridhub-config")["data"]


def _env(deployment: dict[str, Any]) -> dict[str, str]:
    """Effective GRIDHUB_* values of the deployment's first container (ConfigMap, then its own env)."""
    container = next(containers(deployment))
    out = dict(_config()) if any("configMapRef" in e for e in container.get("envFrom", [])) else {}
    out.update({e["name"]: e.get("value", "") for e in container.get("env", []) if "value" in e})
    return out


def _port(doc: dict[str, Any], name: str) -> int:
    for port in doc["spec"]["ports"]:
        if port["name"] == name:
            return int(port["port"])
    raise AssertionError(f"{doc['metadata']['name']} has no port {name}")


def _container_port(deployment: dict[str, Any], name: str) -> int:
    for port in next(containers(deployment)).get("ports", []):
        if port["name"] == name:
            return int(port["containerPort"])
    raise AssertionError(f"{deployment['metadata']['name']} has no container port {name}")


def test_mqtt_bridge_logs_in_over_tls_to_a_broker_that_requires_it() -> None:
    conf = find("ConfigMap", "mosquitto-config")["data"]["mosquitto.conf"]
    lines = dict(line.split(None, 1) for line in conf.splitlines() if line and not line.startswith("#"))
    assert lines["allow_anonymous"] == "false" and lines["password_file"].startswith("/mosquitto/secret/")
    assert lines["certfile"].startswith("/mosquitto/tls/") and lines["keyfile"].startswith("/mosquitto/tls/")
    assert int(lines["autosave_interval"]) <= 300, "queued QoS 1 messages saved often, not only at shutdown"
    listener = int(lines["listener"])
    assert _port(find("Service", "mosquitto"), "mqtts") == listener
    bridge = _env(find("Deployment", "gridhub-mqtt-bridge"))
    assert int(bridge["GRIDHUB_MQTT_PORT"]) == listener
    assert bridge["GRIDHUB_MQTT_HOST"] == "mosquitto"
    assert bridge["GRIDHUB_MQTT_TLS"] == "true" and bridge["GRIDHUB_MQTT_CA_FILE"].startswith("/var/run/secrets/")
    assert bridge["GRIDHUB_MQTT_USERNAME"] and bridge["GRIDHUB_MQTT_PASSWORD_FILE"].startswith("/var/run/secrets/")
    workers = _env(find("Deployment", "gridhub-worker"))
    assert workers["GRIDHUB_MQTT_PORT"] == "0", "only the bridge connects (one persistent session)"


def test_clickhouse_replicas_reach_each_other_and_are_migrated_one_by_one() -> None:
    sts = find("StatefulSet", "clickhouse")
    env = {e["name"]: e for e in next(containers(sts))["env"]}
    host = env["INTERSERVER_HOST"]["value"]
    headless = sts["spec"]["serviceName"]
    assert host.startswith("$(POD_NAME).") and f".{headless}." in host, "a name the other replica can resolve"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    cluster = ET.fromstring(find("ConfigMap", "clickhouse-config")["data"]["cluster.xml"])
    name = cluster.find("./remote_servers/*")
    assert name is not None
    hosts = [r.findtext("host") for r in cluster.findall("./remote_servers/*/shard/replica")]
    assert hosts == [f"clickhouse-{i}.{headless}" for i in range(sts["spec"]["replicas"])]
    assert cluster.find("./macros/shard") is not None and cluster.find("./macros/replica") is not None

    config = _config()
    assert config["GRIDHUB_CLICKHOUSE_CLUSTER"] == name.tag
    assert config["GRIDHUB_CH_SINK_MIGRATE"] == "false", "the sink must not migrate through the Service"
    job = find("Job", "gridhub-ch-migrate")
    args = next(containers(job))["args"]
    assert args[:3] == ["gridhub", "ch", "migrate"] and args[args.index("--cluster") + 1] == name.tag
    job_env = _env(job)
    assert job_env["GRIDHUB_CLICKHOUSE_HOST"] in hosts, "migrations connect to a replica, not the Service"
    users = find("ConfigMap", "clickhouse-config")["data"]["insert-sync.xml"]
    assert ET.fromstring(users).findtext("./profiles/default/insert_distributed_sync") == "1"


def test_every_broker_has_an_external_listener_for_agencies() -> None:
    sts = find("StatefulSet", "kafka")
    props = properties(find("ConfigMap", "kafka-config")["data"]["server.properties.template"])
    assert "EXTERNAL://:9095" in props["listeners"].split(",")
    assert "EXTERNAL://@EXTERNAL@" in props["advertised.listeners"].split(",")
    external = find("ConfigMap", "kafka-external")["data"]
    start = find("ConfigMap", "kafka-config")["data"]["start.sh"]
    assert "/etc/kafka/external/${HOST}" in start and "@EXTERNAL@" in start
    for i in range(sts["spec"]["replicas"]):
        service = find("Service", f"kafka-{i}-external")
        assert service["spec"]["type"] in ("LoadBalancer", "NodePort")
        assert service["spec"]["selector"] == {"statefulset.kubernetes.io/pod-name": f"kafka-{i}"}
        assert service["spec"]["ports"][0]["targetPort"] == "external"
        assert external[f"kafka-{i}"].endswith(f":{service['spec']['ports'][0]['port']}")
    assert len(set(external.values())) == sts["spec"]["replicas"], "one advertised address per broker"
    policy = find("NetworkPolicy", "kafka")
    assert {"ports": [{"port": 9095}]} in policy["spec"]["ingress"]


def test_metrics_are_bound_to_the_pod_ip_and_scraped_and_probes_are_http() -> None:
    config = _config()
    assert config["GRIDHUB_WEB_BIND"] == "0.0.0.0"
    for name in ("gridhub-worker", "gridhub-mqtt-bridge"):
        deployment = find("Deployment", name)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) == _container_port(deployment, "web") \
            == int(_env(deployment)["GRIDHUB_WEB_PORT"])
        container = next(containers(deployment))
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}
    worker = next(containers(find("Deployment", "gridhub-worker")))
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "web"}
    assert _container_port(find("Deployment", "gridhub-worker"), "gateway") == int(config["GRIDHUB_GATEWAY_PORT"])
    assert find("Service", "gridhub-gateway")["spec"]["ports"][0]["targetPort"] == "gateway"
    metrics = find("NetworkPolicy", "metrics")
    assert metrics["spec"]["ingress"][0]["ports"] == [{"port": int(config["GRIDHUB_WEB_PORT"])}]


def test_hub_ports_agree_with_the_servers() -> None:
    config = _config()
    assert int(config["GRIDHUB_KAFKA_PORT"]) == _port(find("Service", "kafka"), "client")
    assert int(config["GRIDHUB_CLICKHOUSE_PORT"]) == _port(find("Service", "clickhouse"), "native")
    assert config["GRIDHUB_KAFKA_HOST"] == "kafka" and config["GRIDHUB_CLICKHOUSE_HOST"] == "clickhouse"


def test_images_of_one_product_share_one_release() -> None:
    tags = {c["image"].rpartition(":")[0]: c["image"].rpartition(":")[2] for d in DOCS for c in containers(d)}
    assert tags["clickhouse/clickhouse-server"] == tags["clickhouse/clickhouse-keeper"]
    assert re.fullmatch(r"4\.0\.\d+", tags["apache/kafka"])
    assert re.fullmatch(r"2\.0\.\d+", tags["eclipse-mosquitto"])


def test_every_file_a_hub_container_reads_is_mounted() -> None:
    """Settings read every GRIDHUB_*_FILE at start: one unmounted secret and the pod crash-loops."""
    config = _config()
    checked = 0
    for doc in DOCS:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        spec = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            if not any(e.get("configMapRef", {}).get("name") == "gridhub-config" for e in container.get("envFrom", [])):
                continue
            env = {**config, **{e["name"]: e.get("value", "") for e in container.get("env", [])}}
            # Secrets (read by Settings at start) and the Kafka CA (every hub process talks to Kafka);
            # the MQTT CA only where an MQTT client runs (the Deployments).
            files = [v for k, v in env.items() if v and (k.endswith(("_FILE", "_CAFILE"))) and
                     (k != "GRIDHUB_MQTT_CA_FILE" or doc["kind"] == "Deployment")]
            mounts = container.get("volumeMounts", [])
            for path in files:
                mount = next((m for m in mounts if path.startswith(m["mountPath"].rstrip("/") + "/")), None)
                assert mount is not None, f"{doc['metadata']['name']}: {path} is not on a mounted volume"
                source = volumes[mount["name"]].get("secret", {})
                key = path[len(mount["mountPath"].rstrip("/")) + 1:]
                items = source.get("items")
                assert items is None or key in {i["path"] for i in items}, \
                    f"{doc['metadata']['name']}: {path} is not among the mounted items of {source['secretName']}"
                checked += 1
    assert checked >= 20
