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
* ``worker``: ``w = worker(settings, only="ingest")`` runs ``gridhub run`` in
  a subprocess until the Faust worker is ready; ``w.stop()`` (SIGTERM),
  ``w.kill()`` (SIGKILL), ``w.restart()``.  Its log is attached to a failed
  test's report.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gridhub.infra import Infra, InfraError
from gridhub.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
_VENV_GRIDHUB = REPO_ROOT / ".venv" / "bin" / "gridhub"
#: The console script of this checkout (CI and developers run the repository's .venv).
GRIDHUB = str(_VENV_GRIDHUB) if _VENV_GRIDHUB.exists() else (shutil.which("gridhub") or "gridhub")

#: Logged by faust.tables.recovery once partitions are assigned and the flow resumed.
WORKER_READY = "Worker ready"


_handed_out: set[int] = set()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port nobody listens on now, never handed out before in this session.

    Drawn from 20000-32767, below Linux's ephemeral range (32768-60999), so a
    client connection's source port cannot take it between this check and the
    server's bind; ``port + 9`` is free too (ClickHouse's interserver port).
    """
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 32767 - 9)
        if {port, port + 9} & _handed_out or not (_bindable(port) and _bindable(port + 9)):
            continue
        _handed_out.update({port, port + 9})
        return port
    raise RuntimeError("no free TCP port found in 20000-32767")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


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


def _delete_namespace_topics(settings: Settings) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=30000)
    try:
        mine = [t for t in admin.list_topics() if t.startswith(settings.namespace + ".")]
        if mine:
            admin.delete_topics(mine, timeout_ms=30000)
    finally:
        admin.close()


@pytest.fixture
def settings(infra: Infra) -> Iterator[Settings]:
    """Settings in a fresh namespace, with its ClickHouse database created (dropped afterwards)."""
    # Own ports for the HTTP gateway and the Faust web server too: several test
    # sessions (and a running demo) share this machine.
    s = Settings(namespace=f"t{uuid.uuid4().hex[:8]}", gateway_port=free_port(), web_port=free_port())
    from clickhouse_driver import Client

    admin = Client(host=s.clickhouse_host, port=s.clickhouse_port, user=s.clickhouse_user,
                   password=s.clickhouse_password)
    admin.execute(f"CREATE DATABASE IF NOT EXISTS {s.ch_database}")
    try:
        yield s
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {s.ch_database}")
        admin.disconnect()
        try:
            _delete_namespace_topics(s)
        except Exception as exc:  # cleanup only: a failure here must not hide the test's result
            print(f"warning: could not delete topics of {s.namespace}: {exc!r}", file=sys.stderr)


def create_topics(settings: Settings, names: list[str], partitions: int | None = None) -> None:
    """Create the namespaced topics (contract names) if missing, and wait until they are visible.

    A Faust consumer that subscribes before its source topic exists gets no
    partitions until its next metadata refresh (minutes), so a worker's input
    topics must exist before it starts.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    physical = [settings.topic(n) for n in names]
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=30000)
    try:
        missing = [t for t in physical if t not in set(admin.list_topics())]
        if missing:
            try:
                admin.create_topics([NewTopic(t, partitions or settings.partitions, settings.replication_factor)
                                     for t in missing], timeout_ms=30000)
            except TopicAlreadyExistsError:
                pass  # a concurrent creator won the race
        deadline = time.monotonic() + 30
        while set(physical) - set(admin.list_topics()) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        admin.close()


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
    from kafka import KafkaConsumer, TopicPartition

    consumers: list[Any] = []

    def _consume(topic: str, n: int, timeout: float = 30.0) -> list[Any]:
        name = settings.topic(topic)
        consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                 auto_offset_reset="earliest")
        consumers.append(consumer)
        deadline = time.monotonic() + timeout
        partitions = consumer.partitions_for_topic(name)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.5)
            consumer.poll(timeout_ms=0)  # refreshes metadata
            partitions = consumer.partitions_for_topic(name)
        if not partitions:
            return []
        tps = [TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        while time.monotonic() < deadline and (n == 0 or len(records) < n):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        consumer.close()
        return records

    yield _consume
    for c in consumers:
        c.close()


@pytest.fixture
def ch_client(settings: Settings) -> Iterator[Any]:
    from clickhouse_driver import Client

    client = Client(host=settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                    password=settings.clickhouse_password, database=settings.ch_database)
    yield client
    client.disconnect()


# --- hub worker subprocesses -----------------------------------------------------------------

class WorkerProcess:
    """One ``gridhub run`` subprocess with the test's settings.

    Ready means the Faust web server answers on its port and the worker
    logged ``Worker ready`` (partitions assigned, flow resumed) since this
    start: earlier than that, records produced by the test may be read
    before the agents' consumers exist, which is fine, but the test could not
    tell a stuck worker from a slow one.
    """

    def __init__(self, settings: Settings, only: str = "", env: dict[str, str] | None = None,
                 args: list[str] | None = None, ready_timeout: float = 120.0, log_dir: Path | None = None,
                 command: list[str] | None = None, topics: list[str] | None = None) -> None:
        self.web_port = free_port()
        overrides = {"web_port": self.web_port}
        self.settings = settings.model_copy(update=overrides)
        self.only = only
        self.extra_env = env or {}
        self.args = args or []
        self._command = command
        self.topics = topics or []
        self.ready_timeout = ready_timeout
        log_dir = log_dir or Path(settings.run_dir) / "tests"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{settings.namespace}-worker-{self.web_port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.as_env(), "GRIDHUB_LOG_FORMAT": "json", **self.extra_env}

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        if self._command:
            return list(self._command)
        return [GRIDHUB, "run", *(["--only", self.only] if self.only else []), *self.args]

    def prepare_topics(self) -> None:
        """Input topics must exist before the consumer subscribes (see :func:`create_topics`)."""
        if self.topics:
            create_topics(self.settings, self.topics)
        if self._command is None:
            from gridhub.ops.topics import ensure_topics

            ensure_topics(self.settings)

    def start(self, wait: bool = True) -> WorkerProcess:
        if self.starts == 0:
            self.prepare_topics()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            log.write(f"--- start #{self.starts + 1}: {' '.join(self.command())}\n".encode())
            self.proc = subprocess.Popen(self.command(), cwd=REPO_ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        if wait:
            self.wait_ready(offset)
        return self

    def log_text(self, offset: int = 0) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(offset)
                return handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_ready(self, offset: int = 0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(f"gridhub run exited with {code} before it was ready "
                                   f"(log: {self.log_path}):\n{self.log_tail()}")
            if WORKER_READY in self.log_text(offset) and _port_open(self.web_port):
                return
            time.sleep(0.3)
        raise TimeoutError(f"gridhub run not ready after {self.ready_timeout:.0f} s "
                           f"(log: {self.log_path}):\n{self.log_tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait for the clean stop; returns the exit code (SIGKILL after ``timeout``)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> int | None:
        """SIGKILL the worker's whole process group (a crash: no clean shutdown, no commit)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(30)
        return self.proc.returncode

    def restart(self, kill: bool = False, wait: bool = True) -> WorkerProcess:
        """Stop (SIGTERM, or SIGKILL with ``kill=True``) and start again with the same settings and ports."""
        self.kill() if kill else self.stop()
        return self.start(wait=wait)


@pytest.fixture
def worker(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: ``worker(settings, only="ingest,fusion", env={...})`` -> a ready :class:`WorkerProcess`.

    Before the first start, the namespace's topics of ``deploy/topics.yaml``
    are ensured (``gridhub.ops.topics.ensure_topics``) and ``topics=[...]``
    (contract names) are created: a Faust consumer subscribing to a missing
    topic would sit without partitions.  ``command=[...]`` runs another Faust
    worker program instead of ``gridhub run`` (same environment, same
    readiness signal, no topics.yaml).
    """
    started: list[WorkerProcess] = []
    request.node.gridhub_workers = started

    def _start(s: Settings | None = None, only: str = "", env: dict[str, str] | None = None,
               args: list[str] | None = None, ready_timeout: float = 120.0, wait: bool = True,
               command: list[str] | None = None, topics: list[str] | None = None) -> WorkerProcess:
        w = WorkerProcess(s or settings, only=only, env=env, args=args, ready_timeout=ready_timeout,
                          command=command, topics=topics)
        started.append(w)
        return w.start(wait=wait)

    yield _start
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
