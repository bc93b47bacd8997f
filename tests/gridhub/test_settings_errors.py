"""Settings errors an operator can act on: one line naming the variable, the value and what is allowed.

The real ``gridhub`` command is run (it is what an operator sees), exit status 2.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gridhub.core.settings import REPO_ROOT, SettingsError, load_settings

GRIDHUB = str(REPO_ROOT / ".venv" / "bin" / "gridhub")


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_") or k == "GRIDHUB_RUN_DIR"}
    return subprocess.run([GRIDHUB, "infra", "status", "--json"], env={**clean, **env}, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(("env", "line"), [
    ({"GRIDHUB_KAFKA_PORT": "19o92"},
     "error: GRIDHUB_KAFKA_PORT='19o92': input should be a valid integer (allowed: an integer)"),
    ({"GRIDHUB_PRODUCER_LINGER_MS": "5000"},
     "error: GRIDHUB_PRODUCER_LINGER_MS='5000': input should be less than or equal to 1000 "
     "(allowed: an integer >= 0 and <= 1000)"),
    ({"GRIDHUB_LOG_FORMAT": "xml"},
     "error: GRIDHUB_LOG_FORMAT='xml': input should be 'auto', 'json' or 'console' "
     "(allowed: one of auto, json, console)"),
    ({"GRIDHUB_MQTT_TLS": "maybe"},
     "error: GRIDHUB_MQTT_TLS='maybe': input should be a valid boolean (allowed: true or false)"),
])
def test_a_bad_variable_is_one_line_and_exit_2(env: dict[str, str], line: str) -> None:
    result = run(env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [line]
    assert result.stdout == ""


def test_a_secret_is_never_echoed() -> None:
    with pytest.raises(SettingsError) as caught:
        os.environ["GRIDHUB_KAFKA_SASL_PASSWORD"] = "hunter2"
        try:
            load_settings(kafka_sasl_password=["not", "text"])
        finally:
            del os.environ["GRIDHUB_KAFKA_SASL_PASSWORD"]
    assert "hunter2" not in str(caught.value) and "<hidden>" in str(caught.value)


def test_unknown_and_bad_keys_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "gridhub.yaml"
    config.write_text("kafka_port: 19092\nclickhouse_hots: ch.internal\n", encoding="utf-8")
    result = run({"GRIDHUB_CONFIG": str(config)})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: GRIDHUB_CONFIG={config}: unknown key 'clickhouse_hots'; did you mean 'clickhouse_host'?"]

    config.write_text("kafka_port: nineteen\n", encoding="utf-8")
    result = run({"GRIDHUB_CONFIG": str(config)})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: GRIDHUB_CONFIG={config} key kafka_port='nineteen': input should be a valid integer "
        "(allowed: an integer)"]

    config.write_text("- just\n- a list\n", encoding="utf-8")
    result = run({"GRIDHUB_CONFIG": str(config)})
    assert result.returncode == 2 and "must be a YAML mapping" in result.stderr


def test_good_settings_still_load(tmp_path: Path) -> None:
    config = tmp_path / "gridhub.yaml"
    config.write_text("kafka_port: 29092\n", encoding="utf-8")
    result = run({"GRIDHUB_CONFIG": str(config), "GRIDHUB_LOG_FORMAT": "json"})
    assert result.returncode == 0, result.stderr
