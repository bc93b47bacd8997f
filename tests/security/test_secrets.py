"""Secrets come from files (``GRIDHUB_<NAME>_FILE``) and never reach a log line.

The end-to-end test runs the real gateway inside ``gridhub run`` at DEBUG level
(the most talkative: aiohttp, Faust, aiokafka and our own events), with the
ingest and feedback tokens and the PII key given only as files, sends requests
with the right tokens and with wrong ones, and then searches the whole log for
every one of those strings.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from gridhub.core.settings import Settings


def _write(path: Path, text: str) -> str:
    path.write_text(text + "\n", encoding="utf-8")  # with the trailing newline editors and `echo` write
    path.chmod(0o600)
    return str(path)


def test_secret_files_are_read_and_a_set_variable_wins(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    token = secrets.token_urlsafe(16)
    monkeypatch.setenv("GRIDHUB_INGEST_TOKENS_FILE", _write(tmp_path / "ingest", f"sensors={token}"))
    monkeypatch.setenv("GRIDHUB_PII_KEY_FILE", _write(tmp_path / "pii", "file-key"))
    monkeypatch.setenv("GRIDHUB_PII_KEY", "env-key")
    monkeypatch.setenv("GRIDHUB_INGEST_TOKENS", "")  # empty: as Settings.as_env passes an unset secret
    settings = Settings()
    assert settings.secret("ingest_tokens") == f"sensors={token}"  # the trailing newline is not part of it
    assert settings.secret("pii_key") == "env-key"  # a non-empty plain variable wins over its _FILE twin
    assert token not in repr(settings) and "env-key" not in repr(settings)


def test_unreadable_secret_file_names_the_path_not_a_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDHUB_FEEDBACK_TOKENS_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="GRIDHUB_FEEDBACK_TOKENS_FILE"):
        Settings()


def _post(url: str, body: Any, token: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body, ensure_ascii=False).encode(), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.integration
@pytest.mark.slow
def test_tokens_never_appear_in_the_logs(settings: Settings, worker: Callable[..., Any], tmp_path: Path) -> None:
    ingest, feedback, pii = (secrets.token_urlsafe(18) for _ in range(3))
    wrong = [secrets.token_urlsafe(18) for _ in range(3)]
    env = {
        "GRIDHUB_INGEST_TOKENS_FILE": _write(tmp_path / "ingest", f"sensors={ingest},four-platforms={wrong[2]}x"),
        "GRIDHUB_FEEDBACK_TOKENS_FILE": _write(tmp_path / "feedback", f"330502.zhzf={feedback}"),
        "GRIDHUB_PII_KEY_FILE": _write(tmp_path / "pii", pii),
        "GRIDHUB_LOG_LEVEL": "DEBUG",
    }
    # The settings' own secrets are empty, so the child gets them from the files only.
    w = worker(settings.model_copy(update={"ingest_tokens": "", "feedback_tokens": "", "pii_key": ""}),
               only="service", env=env)

    base = f"http://127.0.0.1:{settings.gateway_port}"
    doc = {"deviceId": "SEC-1", "deviceType": "smoke", "eventType": "heartbeat",
           "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}
    deadline = time.monotonic() + 60
    status = _post(f"{base}/v1/ingest/sensors", doc, ingest)
    while status == 503 and time.monotonic() < deadline:  # the gateway's producer still connecting
        time.sleep(1)
        status = _post(f"{base}/v1/ingest/sensors", doc, ingest)
    assert status == 202
    assert _post(f"{base}/v1/ingest/sensors", doc, wrong[0]) == 401
    assert _post(f"{base}/v1/ingest/sensors", doc, None) == 401
    assert _post(f"{base}/v1/ingest/sensors", doc, "dev-sensors") == 401  # no dev tokens once configured
    fb = {"dispatchId": "d-1", "caseId": "c-1", "agency": "330502.zhzf", "action": "sign",
          "time": int(time.time() * 1000)}
    assert _post(f"{base}/v1/feedback", fb, feedback) == 202
    assert _post(f"{base}/v1/feedback", fb, wrong[1]) == 401
    assert _post(f"{base}/v1/feedback", fb, ingest) == 401  # a source token is not an agency token
    w.stop()

    log = w.log_text()
    assert "gateway_ingest" in log and "gateway_feedback" in log, "the requests must have been logged"
    for secret in (ingest, feedback, pii, *wrong):
        assert secret not in log, "a secret or a presented token appears in the log"


# --------------------------------------------------------------------------- production fails closed

PRODUCTION_OK = {"GRIDHUB_ENV": "production", "GRIDHUB_PII_KEY": "k-" + "9" * 30,
                 "GRIDHUB_INGEST_TOKENS": "sensors=s-tok", "GRIDHUB_FEEDBACK_TOKENS": "330502.zhzf=f-tok"}


@pytest.mark.parametrize("missing,named", [
    ("GRIDHUB_PII_KEY", "GRIDHUB_PII_KEY"),
    ("GRIDHUB_INGEST_TOKENS", "GRIDHUB_INGEST_TOKENS"),
    ("GRIDHUB_FEEDBACK_TOKENS", "GRIDHUB_FEEDBACK_TOKENS"),
])
def test_production_refuses_to_start_without_a_secret(missing: str, named: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION_OK.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing)
    with pytest.raises(ValueError, match=named):
        Settings()


def test_production_refuses_the_development_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION_OK.items():
        monkeypatch.setenv(name, value)
    assert Settings().env == "production"
    monkeypatch.setenv("GRIDHUB_PII_KEY", "gridhub-dev-pii-key")  # the public development key
    with pytest.raises(ValueError, match="GRIDHUB_PII_KEY"):
        Settings()
    monkeypatch.setenv("GRIDHUB_PII_KEY", PRODUCTION_OK["GRIDHUB_PII_KEY"])
    monkeypatch.setenv("GRIDHUB_INGEST_TOKENS", "sensors=dev-sensors")
    with pytest.raises(ValueError, match="'dev-' token"):
        Settings()
    monkeypatch.setenv("GRIDHUB_INGEST_TOKENS", "")
    monkeypatch.setenv("GRIDHUB_FEEDBACK_TOKENS", "")
    monkeypatch.setenv("GRIDHUB_GATEWAY_PORT", "0")  # no gateway: no tokens needed
    assert Settings().gateway_port == 0
    monkeypatch.setenv("GRIDHUB_ENV", "staging")
    with pytest.raises(ValueError, match="GRIDHUB_ENV"):
        Settings()


def test_no_secret_in_repr_str_or_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"GRIDHUB_PII_KEY": "pii-7f3a", "GRIDHUB_INGEST_TOKENS": "sensors=ing-7f3a",
              "GRIDHUB_FEEDBACK_TOKENS": "330502.zhzf=fb-7f3a", "GRIDHUB_CLICKHOUSE_PASSWORD": "ch-7f3a",
              "GRIDHUB_KAFKA_SASL_PASSWORD": "sasl-7f3a"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    shown = "\n".join([repr(settings), str(settings), str(settings.model_dump()), settings.model_dump_json()])
    for value in values.values():
        assert value.split("=")[-1] not in shown
    assert settings.secret("clickhouse_password") == "ch-7f3a"  # revealed only on request
    assert settings.as_env()["GRIDHUB_KAFKA_SASL_PASSWORD"] == "sasl-7f3a"  # a child process gets the value


def test_production_worker_names_the_missing_setting(tmp_path: Path) -> None:
    """``gridhub run`` itself refuses to start (before any connection) and says which setting is missing."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_")}
    env.update(PRODUCTION_OK, GRIDHUB_RUN_DIR=str(tmp_path))
    del env["GRIDHUB_PII_KEY"]
    gridhub = Path(sys.executable).parent / "gridhub"
    done = subprocess.run([str(gridhub), "run", "--only", "ingest"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "GRIDHUB_PII_KEY" in done.stdout + done.stderr
