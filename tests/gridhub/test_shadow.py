"""A shadow namespace (GRIDHUB_SHADOW=1) starts no webhook delivery and no live MQTT bridge (issue 15).

The status topics are proven silent on the real servers in tests/gridhub/ops/test_replay_diff_e2e.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.mqtt_bridge import service as mqtt_service
from connectors.webhook import service as webhook_service
from gridhub.core.settings import Settings
from gridhub.core.shadow import is_shadow

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_is_shadow_reads_the_environment() -> None:
    assert is_shadow({"GRIDHUB_SHADOW": "1"}) and is_shadow({"GRIDHUB_SHADOW": "true"})
    assert not is_shadow({}) and not is_shadow({"GRIDHUB_SHADOW": "0"})


def test_no_webhooks_and_no_mqtt_in_a_shadow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # one agency delivered by webhook, so that outside a shadow the webhook sink does start
    agencies = (DEPLOY / "agencies.yaml").read_text("utf-8").replace(
        "    # \"330502.whsc\":\n    #   mode: webhook",
        "    \"330502.whsc\":\n      mode: webhook\n      url: http://127.0.0.1:9/hook\n      secret_env: X_HOOK_SECRET")
    assert "mode: webhook\n" in agencies
    (tmp_path / "agencies.yaml").write_text(agencies, encoding="utf-8")
    rules = (DEPLOY / "routing.yaml").read_text("utf-8").replace(
        "categories: categories.yaml", f"categories: {DEPLOY / 'categories.yaml'}")
    (tmp_path / "routing.yaml").write_text(rules, encoding="utf-8")
    settings = Settings(namespace="tshadow", mqtt_port=11883, routing_rules=tmp_path / "routing.yaml")
    monkeypatch.delenv("GRIDHUB_SHADOW", raising=False)
    assert mqtt_service.create(None, settings) is not None  # live: the bridge would subscribe to the feed
    assert webhook_service.create(None, settings) is not None  # live: agencies would be called
    monkeypatch.setenv("GRIDHUB_SHADOW", "1")
    assert mqtt_service.create(None, settings) is None
    assert webhook_service.create(None, settings) is None
