"""Supervise ``gridhub run`` worker subprocesses.

Used by ``gridhub demo``, the end-to-end benchmark and the tests: each runs
the hub exactly as an operator would (a separate process with its own
settings in the environment), so SIGKILL, restarts and several workers in one
consumer group are real.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from gridhub.core.errors import EXIT_FAIL_STOP
from gridhub.core.settings import REPO_ROOT, Settings

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


def free_port(count: int = 1) -> int:
    """The first of ``count`` consecutive TCP ports nobody listens on now, never handed out before
    in this session (a broker's client + controller ports, a cluster's block).

    Drawn from 20000-32767, below Linux's ephemeral range (32768-60999), so a
    client connection's source port cannot take it between this check and the
    server's bind; ``port + 9`` is free too (ClickHouse's interserver port).
    """
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 32767 - 9 - count)
        wanted = set(range(port, port + count)) | {port + 9}
        if wanted & _handed_out or not all(_bindable(p) for p in wanted):
            continue
        _handed_out.update(wanted)
        return port
    raise RuntimeError(f"no {count} free TCP ports found in 20000-32767")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def create_topics(settings: Settings, names: list[str]) -> None:
    """Ensure the namespaced topics (contract names) as deploy/topics.yaml says, and wait until their
    partitions are visible.

    A Faust consumer that subscribes before its source topic exists gets no
    partitions until its next metadata refresh (minutes), so a worker's input
    topics must exist before it starts.
    """
    from gridhub.core.kafka_admin import ensure_topics

    ensure_topics(settings, names)


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
                 command: list[str] | None = None, topics: list[str] | None = None,
                 ensure_topics: bool = True) -> None:
        self.web_port = free_port()
        #: False: start on a namespace with no topics at all, as on a fresh cluster (the worker must
        #: create its inputs before it subscribes: gridhub/runner.py ensure_contract_topics).
        self.ensure_topics = ensure_topics
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
        #: One restart per fail-stop when a test and the fixture's keeper (tests/conftest.py) both look.
        self._restart_lock = threading.Lock()

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
        if self._command is None and self.ensure_topics:
            from gridhub.core.kafka_admin import ensure_topics

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
            if WORKER_READY in self.log_text(offset) and port_open(self.web_port):
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

    def restart_if_fail_stopped(self) -> bool:
        """Start the worker again if it stopped itself with exit status 70 (a fail-stop: a refused or
        unconfirmed record, a stalled partition), as a restart policy does (deploy/k8s, systemd).
        Returns whether it did; any other exit is a crash and raises with the log's tail."""
        with self._restart_lock:
            if self.proc is None or self.proc.poll() is None:
                return False
            if self.proc.returncode != EXIT_FAIL_STOP:
                raise RuntimeError(f"gridhub run crashed with exit status {self.proc.returncode} "
                                   f"(log: {self.log_path}):\n{self.log_tail()}")
            self.start(wait=False)
            return True

    def restart(self, kill: bool = False, wait: bool = True) -> WorkerProcess:
        """Stop (SIGTERM, or SIGKILL with ``kill=True``) and start again with the same settings and ports."""
        self.kill() if kill else self.stop()
        return self.start(wait=wait)
