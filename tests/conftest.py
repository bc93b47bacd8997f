"""The one fixture module that starts real infrastructure (Kafka, ClickHouse, Mosquitto).

Isolation: the servers are shared by the whole session (and by anyone else
using the same run dir); every test gets its own *namespace* ``t<8 hex>``,
hence its own topics (``settings.topic(name)``), Faust application id
(consumer groups, changelogs, table data dir) and ClickHouse database
(``settings.ch_database``, created before and dropped after the test).  The
namespace's Kafka topics are deleted after the test so a long session does not
pile up thousands of partitions in the 1 GiB broker.

The servers are never stopped by the tests: a developer's servers keep
running for the next session, and CI machines are thrown away.  ``gridhub
infra down`` stops them.

Fixtures:

* ``infra`` (session): :class:`gridhub.infra.Infra`, every server healthy.
* ``settings``: a :class:`Settings` with a fresh namespace and free
  ``gateway_port`` / ``web_port``.
* ``kafka_producer``: kafka-python ``KafkaProducer`` (acks=all).
* ``consume(topic, n, timeout=30)``: records of the namespaced ``topic``,
  from the beginning, once at least ``n`` are there (or the timeout passed).
* ``ch_client``: clickhouse-driver ``Client`` on ``settings.ch_database``.
* ``secure`` (session): a secured Kafka broker of its own (tests/security).
* ``worker``: ``w = worker(settings, only="ingest")`` runs ``gridhub run`` in
  a subprocess until the Faust worker is ready; ``w.stop()`` (SIGTERM),
  ``w.kill()`` (SIGKILL), ``w.restart()``.  Its log is attached to a failed
  test's report.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gridhub.infra import Infra, InfraError
from gridhub.core.kafka_admin import delete_namespace
from gridhub.core.settings import Settings

from gridhub.ops.common import settings_for
from gridhub.core.errors import EXIT_FAIL_STOP
from gridhub.supervisor import WorkerProcess, free_port
from helpers.kafka import read_topic


# --- infrastructure -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def infra() -> Infra:
    """Every server up and healthy: started if needed, reused when already running. Never stopped."""
    manager = Infra(Settings())
    try:
        manager.up()
    except InfraError as error:
        pytest.fail(f"gridhub infra up failed: {error}\n{error.detail}", pytrace=False)
    return manager


@pytest.fixture
def settings(infra: Infra) -> Iterator[Settings]:
    """Settings in a fresh namespace, with its ClickHouse database created (dropped afterwards)."""
    # Own ports for the HTTP gateway and the Faust web server too: several test
    # sessions (and a running demo) share this machine.
    s = Settings(namespace=f"t{uuid.uuid4().hex[:8]}", gateway_port=free_port(), web_port=free_port())
    from clickhouse_driver import Client

    admin = Client(host=s.clickhouse_host, port=s.clickhouse_port, user=s.clickhouse_user,
                   password=s.secret("clickhouse_password"))
    admin.execute(f"CREATE DATABASE IF NOT EXISTS {s.ch_database}")
    admin.disconnect()
    try:
        yield s
    finally:
        if os.environ.get("GRIDHUB_KEEP_TEST_NAMESPACES"):  # debugging: inspect the topics afterwards
            print(f"kept namespace {s.namespace}", file=sys.stderr)
            return
        try:
            delete_namespace(s)
        except Exception as exc:  # cleanup only: a failure here must not hide the test's result
            print(f"warning: could not delete the namespace {s.namespace}: {exc!r}", file=sys.stderr)


@pytest.fixture
def kafka_producer(settings: Settings) -> Iterator[Any]:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    yield producer
    producer.close(timeout=10)


@pytest.fixture
def consume(settings: Settings) -> Iterator[Callable[..., list[Any]]]:
    """``consume(topic, n, timeout=30)``: read the namespaced topic from the beginning.

    Returns every record read once at least ``n`` were read, or what was there
    when ``timeout`` seconds passed (so duplicates and extra records stay
    visible to the test).  ``n=0`` reads for the whole timeout (to assert
    that nothing arrives).
    """
    def _consume(topic: str, n: int, timeout: float = 30.0) -> list[Any]:
        return read_topic(settings, topic, n, timeout)

    yield _consume


@pytest.fixture
def other_settings(settings: Settings) -> Iterator[Settings]:
    """A second namespace beside the test's own (replay / import targets), removed afterwards."""
    other = settings_for(settings.namespace + "x", settings)
    yield other
    delete_namespace(other)


@pytest.fixture
def ch_client(settings: Settings) -> Iterator[Any]:
    from clickhouse_driver import Client

    client = Client(host=settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                    password=settings.secret("clickhouse_password"), database=settings.ch_database)
    yield client
    client.disconnect()


@pytest.fixture(scope="session")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One secured Kafka (SASL/SCRAM + ACLs, ``gridhub infra up --secure`` style) for the whole session:
    its own temporary run dir and ports, stopped at the end (only this broker; the shared servers are
    untouched).  Principals for the agencies of :data:`helpers.secure.AGENCIES`."""
    from gridhub.infra.secure import SecureInfra
    from helpers.secure import AGENCIES

    manager = SecureInfra(Settings(run_dir=tmp_path_factory.mktemp("secure-kafka")), AGENCIES, port=free_port(2),
                          classpath_settings=Settings())
    try:
        manager.up()
        yield manager
    finally:
        manager.down()  # this broker only


# --- hub worker subprocesses -----------------------------------------------------------------

#: How often the worker fixture looks for a fail-stopped worker (seconds): a restart policy's reaction
#: time, small against the 10-120 s the tests wait for outputs.
FAIL_STOP_CHECK_S = 0.5


@pytest.fixture
def worker(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: ``worker(settings, only="ingest,fusion", env={...})`` -> a ready :class:`WorkerProcess`.

    Before the first start, the namespace's topics of ``deploy/topics.yaml``
    are ensured (``gridhub.core.kafka_admin.ensure_topics``) and ``topics=[...]``
    (contract names) are created: a Faust consumer subscribing to a missing
    topic would sit without partitions.  ``command=[...]`` runs another Faust
    worker program instead of ``gridhub run`` (same environment, same
    readiness signal, no topics.yaml).

    A worker that stops itself with status 70 (a fail-stop: a record the broker refused, e.g. after
    aiokafka's producer stalled on a NotLeaderForPartition, aio-libs/aiokafka#1018) is started again
    within a second, as deploy/k8s's restart policy does; its input was not committed, so nothing is
    lost.  A test that expects the fail-stop itself passes ``restart_on_fail_stop=False``.
    """
    started: list[WorkerProcess] = []
    kept: list[WorkerProcess] = []  # the workers the keeper restarts after a fail-stop
    request.node.gridhub_workers = started
    done = threading.Event()

    def keep() -> None:
        while not done.wait(FAIL_STOP_CHECK_S):
            for w in list(kept):
                if w.proc is not None and w.proc.poll() == EXIT_FAIL_STOP and w.restart_if_fail_stopped():
                    with w.log_path.open("ab") as log:
                        log.write(b"--- restarted by the test fixture after a fail-stop (exit 70)\n")

    keeper = threading.Thread(target=keep, name="worker-keeper", daemon=True)
    keeper.start()

    def _start(s: Settings | None = None, only: str = "", env: dict[str, str] | None = None,
               args: list[str] | None = None, ready_timeout: float = 120.0, wait: bool = True,
               command: list[str] | None = None, topics: list[str] | None = None,
               ensure_topics: bool = True, restart_on_fail_stop: bool = True) -> WorkerProcess:
        w = WorkerProcess(s or settings, only=only, env=env, args=args, ready_timeout=ready_timeout,
                          command=command, topics=topics, ensure_topics=ensure_topics)
        started.append(w)
        w.start(wait=wait)
        if restart_on_fail_stop:
            kept.append(w)
        return w

    yield _start
    done.set()
    keeper.join(10)
    for w in started:
        w.stop(timeout=30)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the tail of every worker's log to a failed test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for w in getattr(item, "gridhub_workers", []):
            report.sections.append((f"gridhub run log ({w.log_path})", w.log_tail(80)))
