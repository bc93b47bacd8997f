"""``gridhub infra`` as an operator runs it: a subprocess, its output and exit code."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridhub.supervisor import GRIDHUB, free_port

from gridhub.core.settings import REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
def private_dir(infra: Any) -> Iterator[Path]:
    """A scratch dir for a second run dir, under the shared run dir rather than pytest's tmp_path.

    pytest prunes old ``/tmp/pytest-of-<user>/pytest-N`` dirs, and other pytest
    sessions on the same machine can prune one while servers still write into it.
    """
    path = Path(infra.run_dir) / "tests" / f"private-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _gridhub(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GRIDHUB, *args], cwd=REPO_ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _private_env(run_dir: Path) -> dict[str, str]:
    """A second, private infrastructure: own run dir and free ports, so the shared servers stay untouched."""
    return {
        "GRIDHUB_RUN_DIR": str(run_dir),
        "GRIDHUB_KAFKA_PORT": str(free_port()),
        "GRIDHUB_KAFKA_CONTROLLER_PORT": str(free_port()),
        "GRIDHUB_CLICKHOUSE_PORT": str(free_port()),
        "GRIDHUB_CLICKHOUSE_HTTP_PORT": str(free_port()),
        "GRIDHUB_MQTT_PORT": str(free_port()),
    }


def _processes_mentioning(text: str) -> list[str]:
    result = subprocess.run(["pgrep", "-af", text], capture_output=True, text=True)
    return [line for line in result.stdout.splitlines() if line.strip()]


def test_status_json_reports_every_service(infra: Any, settings: Any) -> None:
    result = _gridhub("infra", "status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["kafka"]["bootstrap"] == f"{settings.kafka_host}:{settings.kafka_port}"
    assert data["kafka"]["version"].startswith("4.")
    assert data["clickhouse"]["host"] == settings.clickhouse_host
    assert data["clickhouse"]["port"] == settings.clickhouse_port
    assert data["clickhouse"]["http_port"] == settings.clickhouse_http_port
    assert data["mqtt"]["host"] == settings.mqtt_host
    assert data["mqtt"]["port"] == settings.mqtt_port
    assert all(data[key]["healthy"] is True for key in ("kafka", "clickhouse", "mqtt"))
    assert data["healthy"] is True
    assert Path(data["run_dir"]) == Path(settings.run_dir).resolve()


def test_status_table_is_readable(infra: Any) -> None:
    result = _gridhub("infra", "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["service", "state", "version", "pid", "endpoint"]
    assert {line.split()[0]: line.split()[1] for line in lines[1:4]} == {
        "kafka": "healthy", "clickhouse": "healthy", "mqtt": "healthy"}


def test_up_twice_reuses_the_running_servers(infra: Any) -> None:
    before = {s.name: s.pid() for s in infra.servers}
    result = _gridhub("infra", "up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {s.name: s.pid() for s in infra.servers} == before
    assert [line.split()[:2] for line in result.stdout.splitlines()[:3]] == [
        ["kafka", "running"], ["clickhouse", "running"], ["mosquitto", "running"]]


def test_taken_port_fails_with_one_clear_line(private_dir: Path) -> None:
    env = _private_env(private_dir / "run")
    port = int(env["GRIDHUB_KAFKA_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = _gridhub("infra", "up", env=env)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    log = (private_dir / "run" / "kafka" / "kafka.log").relative_to(REPO_ROOT)  # the CLI runs in REPO_ROOT
    assert errors == [f"error: kafka: port {port} on 127.0.0.1 is already in use by another process (log: {log})"]
    assert _processes_mentioning(str(private_dir)) == []


def test_down_leaves_no_process_behind(private_dir: Path) -> None:
    run_dir = private_dir / "run"
    env = _private_env(run_dir)
    try:
        up = _gridhub("infra", "up", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        status = json.loads(_gridhub("infra", "status", "--json", env=env).stdout)
        assert status["healthy"] is True
        pids = [status[key]["pid"] for key in ("kafka", "clickhouse", "mqtt")]
        assert all(isinstance(pid, int) for pid in pids)
        assert len(_processes_mentioning(str(run_dir))) >= 3
    finally:
        down = _gridhub("infra", "down", env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert sorted(line.split()[0] for line in down.stdout.splitlines() if "stopped" in line) == [
        "clickhouse", "kafka", "mosquitto"]
    assert _processes_mentioning(str(run_dir)) == []
    # Exited servers are children of init now; give it a moment to reap them.
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
    after = json.loads(_gridhub("infra", "status", "--json", env=env).stdout)
    assert [after[key]["running"] for key in ("kafka", "clickhouse", "mqtt")] == [False, False, False]
    assert after["healthy"] is False
    # every port is free again for a server: nobody listens. SO_REUSEADDR as the servers set it,
    # so the TIME_WAIT connections a stopped listener leaves behind do not count as "in use".
    for key in ("GRIDHUB_KAFKA_PORT", "GRIDHUB_CLICKHOUSE_PORT", "GRIDHUB_MQTT_PORT"):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", int(env[key])))
            probe.listen(1)


def test_a_dying_server_is_reported_with_its_log(private_dir: Path) -> None:
    """ClickHouse refusing its config: the error names the service and log, and shows the log's tail."""
    run_dir = private_dir / "run"
    env = _private_env(run_dir)
    # A file where ClickHouse creates its metadata directory makes it exit at start.
    (run_dir / "clickhouse" / "data").mkdir(parents=True)
    (run_dir / "clickhouse" / "data" / "metadata").write_text("not a directory")
    try:
        result = _gridhub("infra", "up", env=env)
    finally:
        _gridhub("infra", "down", env=env)
    assert result.returncode == 1
    first_error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(first_error) == 1 and first_error[0].startswith("error: clickhouse: ")
    assert f"(log: {(run_dir / 'clickhouse' / 'clickhouse.log').relative_to(REPO_ROOT)})" in first_error[0]
    assert "--- last lines of the clickhouse log ---" in result.stderr
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(run_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(str(run_dir)) == []
