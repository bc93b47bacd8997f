"""A real Prometheus (Debian's package) scrapes a running worker; the rules and the dashboard hold.

* ``prometheus`` scrapes ``/metrics`` of a ``gridhub run`` worker (the ``worker``
  fixture) with deploy/prometheus/alerts.yml loaded, until the target is up and
  the worker's own series are in Prometheus' storage;
* ``promtool check rules`` accepts alerts.yml and ``promtool test rules`` runs
  its unit tests (alerts.test.yml: each alert fires on the series it is for);
* every metric the rules and deploy/grafana/gridhub.json name is on the
  worker's ``/metrics`` (a renamed metric would leave an alert that never fires).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gridhub.core.settings import REPO_ROOT, Settings
from gridhub.supervisor import free_port

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "gridhub.json"
METRIC = re.compile(r"\b(gridhub_[a-z0-9_]+)")
#: Suffixes Prometheus' exposition adds to a family's name (counters, histograms).
SUFFIXES = ("_total", "_created", "_bucket", "_sum", "_count")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("promtool"), "promtool missing: deploy/setup.sh installs Debian's prometheus"
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS_DIR)


def rule_exprs() -> list[str]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def named_metrics(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in METRIC.findall(e)}


def exposed(text: str) -> set[str]:
    """Every series name /metrics can carry (a labelled family with no sample yet still counts)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + s for s in SUFFIXES)
        names.update(sample.name for sample in family.samples)
    return names


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    check = promtool("check", "rules", str(ALERTS))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 8 rules found" in check.stdout
    unit = promtool("test", "rules", "alerts.test.yml")
    assert unit.returncode == 0, unit.stdout + unit.stderr
    alerts = {rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]}
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS_DIR / "alerts.test.yml").read_text()))
    assert tested == alerts, "every alert has a unit test"


def test_the_cluster_scrape_config_matches_the_pod_annotations() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yml"]
    relabel = json.dumps(config["scrape_configs"][0]["relabel_configs"])
    for annotation in ("prometheus_io_scrape", "prometheus_io_path", "prometheus_io_port"):
        assert f"__meta_kubernetes_pod_annotation_{annotation}" in relabel
    hub = [d for d in yaml.safe_load_all((REPO_ROOT / "deploy" / "k8s" / "hub.yaml").read_text()) if d]
    scraped = [d for d in hub if d["kind"] == "Deployment"
               and d["spec"]["template"]["metadata"].get("annotations", {}).get("prometheus.io/scrape") == "true"]
    assert {d["metadata"]["name"] for d in scraped} == {"gridhub-worker", "gridhub-mqtt-bridge"}


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read()
    return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()


@pytest.mark.integration
def test_prometheus_scrapes_a_worker_and_every_named_metric_exists(
        settings: Settings, worker: Any, tmp_path: Path) -> None:
    w = worker(settings, only="ingest")
    metrics_url = f"http://127.0.0.1:{w.web_port}/metrics"
    port = free_port()
    config = tmp_path / "prometheus.yml"
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    config.write_text(yaml.safe_dump({
        # 1 s: the test waits for a handful of scrapes, not minutes.
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [{"job_name": "gridhub", "static_configs": [
            {"targets": [f"127.0.0.1:{w.web_port}"]}]}],
    }))
    assert shutil.which("prometheus"), "prometheus missing: deploy/setup.sh installs Debian's prometheus"
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
                            cwd=tmp_path)
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 90
        target: dict[str, Any] = {}
        series: list[Any] = []
        while time.monotonic() < deadline:
            try:
                targets = get(f"{api}/targets")["data"]["activeTargets"]
                target = targets[0] if targets else {}
                query = urllib.parse.quote('gridhub_faust_rebalances_total{job="gridhub"}')
                series = get(f"{api}/query?query={query}")["data"]["result"]
            except OSError:
                pass  # Prometheus still starting
            if target.get("health") == "up" and series:
                break
            time.sleep(1)
        assert target.get("health") == "up", f"scrape never succeeded: {target} {(tmp_path / 'prometheus.log').read_text()[-2000:]}"
        assert target["scrapeUrl"] == metrics_url
        assert series, "the worker's series never reached Prometheus' storage"
        rules = get(f"{api}/rules")["data"]["groups"]
        assert {g["name"] for g in rules} == {"gridhub-pipeline", "gridhub-141"}
        assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()

    text = get(metrics_url)
    available = exposed(text)
    wanted_rules = named_metrics(rule_exprs())
    wanted_dashboard = named_metrics(dashboard_exprs())
    assert len(wanted_rules) >= 8 and len(wanted_dashboard) >= 15
    missing = sorted((wanted_rules | wanted_dashboard) - available)
    assert not missing, f"named in alerts.yml / gridhub.json but not on /metrics: {missing}"
    # The Faust sensor really reports: the worker joined its group (one rebalance at least) and holds partitions.
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}
    assert values["gridhub_faust_rebalances_total"] >= 1
    assert values["gridhub_faust_assigned_partitions"] > 0
    assert values["gridhub_faust_rebalancing"] == 0
