"""streams/app.py: ``fail_stop`` ends the worker without acknowledging the record, for infrastructure errors only."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from streams.app import EXIT_FAIL_STOP

_SCRIPT = textwrap.dedent("""
    from types import SimpleNamespace
    from gridhub.core.logging import configure_logging
    from streams.app import fail_stop

    configure_logging(fmt="json")
    event = SimpleNamespace(message=SimpleNamespace(topic="t.reports", partition=3, offset=1234))
    try:
        fail_stop(event, "fusion", RuntimeError("changelog unreachable"))
    finally:
        print("finally ran")  # os._exit skips it, as it skips Faust's acknowledging finally
""")


def test_fail_stop_exits_at_once_and_says_which_record() -> None:
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_FAIL_STOP, done.stderr
    assert "finally ran" not in done.stdout
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    stop = [line for line in lines if line.get("event") == "worker_fail_stop"]
    assert stop, done.stderr
    assert (stop[0]["topic"], stop[0]["partition"], stop[0]["offset"]) == ("t.reports", 3, 1234)
    assert stop[0]["error"] == "RuntimeError: changelog unreachable"


def test_only_infrastructure_errors_stop_the_worker(monkeypatch: Any) -> None:
    from faust.exceptions import PartitionsMismatch

    from streams import app as app_module

    stopped: list[str] = []

    def record(event: Any, stage: str, exc: BaseException) -> None:
        stopped.append(type(exc).__name__)

    monkeypatch.setattr(app_module, "fail_stop", record)
    event = SimpleNamespace(message=SimpleNamespace(topic="t.cases", partition=0, offset=1))
    with app_module.stop_on_infrastructure_error(event, "routing"):  # type: ignore[arg-type]
        raise PartitionsMismatch("changelog has 6 partitions")
    with app_module.stop_on_infrastructure_error(event, "routing"):  # type: ignore[arg-type]
        raise KafkaTimeoutError("metadata of dispatch.330502.xfjy")
    assert stopped == ["PartitionsMismatch", "KafkaTimeoutError"]
    with pytest.raises(ValueError):  # data errors are the caller's to dead-letter
        with app_module.stop_on_infrastructure_error(event, "routing"):  # type: ignore[arg-type]
            raise ValueError("bad case")


def test_every_table_partition_gets_the_small_rocksdb_options() -> None:
    """Faust's defaults (3 x 64 MiB write buffers, a 2 GiB block cache) apply per table partition."""
    import streams.fusion.agents  # noqa: F401  (registers the tables on the app)
    import streams.ingest.agents  # noqa: F401
    import streams.routing.agents  # noqa: F401
    from streams.app import ROCKSDB_PARTITION_OPTIONS, app

    stores = {name: table.data for name, table in app.tables.items()}
    assert set(stores) >= {"fusion-state", "device-liveness", "routing-cases"}
    for name, store in stores.items():
        options = store.rocksdb_options
        got = {key: getattr(options, key) for key in ROCKSDB_PARTITION_OPTIONS}
        assert got == ROCKSDB_PARTITION_OPTIONS, name
