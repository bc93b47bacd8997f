"""What every locally managed server has in common.

A :class:`LocalServer` is one OS process that ``gridhub infra up`` starts in
its own directory under the run dir (``<run_dir>/<name>/``): a generated
config, a pid file, a log file and a data directory.  Subclasses say how to
render the config, which command runs the server, which ports it binds and
how to prove it works (a real round trip, not a port probe).

The process is ours when the pid file names a live process whose command
line mentions this run dir's config file: a recycled pid, or a server started
from another run dir, is never mistaken for ours.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from string import Template
from typing import Any

from gridhub.core.settings import REPO_ROOT, Settings

#: Config templates shipped in the repository (deploy/<service>/).
DEPLOY_DIR = REPO_ROOT / "deploy"


class InfraError(Exception):
    """A failure an operator can act on, rendered as one ``error: ...`` line."""

    def __init__(self, service: str, message: str, detail: str = "") -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.message = message
        #: Extra lines (e.g. the tail of a log) printed after the one-line error.
        self.detail = detail


def display_path(path: Path) -> str:
    """A path relative to the working directory when it is below it (shorter error lines)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on ``host:port``.

    Binding (with SO_REUSEADDR, so TIME_WAIT leftovers of our own earlier
    run do not count) is the check the server itself will do at start.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a TCP connection to ``host:port`` is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ('' when there is none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            # 64 KiB is plenty for 20 log lines, even Kafka's long ones.
            handle.seek(max(0, size - 65536))
            data = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def render_template(template: Path, target: Path, values: dict[str, Any]) -> None:
    """Fill ``${name}`` placeholders of a deploy/ template and write the result."""
    text = Template(template.read_text(encoding="utf-8")).substitute({k: str(v) for k, v in values.items()})
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def _pid_alive(pid: int) -> bool:
    """True for a live, non-zombie process (a dead child of ours is reaped on the way)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: the normal case for a server started by an earlier command
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Field 3 (after the parenthesised command name) is the state; Z = zombie, X = dead.
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


class LocalServer:
    """One server process under ``<run_dir>/<name>/``."""

    #: Directory and pid/log file name; also the name in error lines.
    name: str = "server"
    #: Key of this service in ``gridhub infra status --json`` (the contract's name).
    status_key: str = "server"
    #: Seconds ``up`` waits for the first successful health check after a start.
    start_timeout: float = 60.0
    #: Seconds ``down`` waits after SIGTERM before SIGKILL.
    stop_timeout: float = 30.0

    def __init__(self, settings: Settings, name: str | None = None) -> None:
        self.settings = settings
        if name is not None:
            self.name = name
        self.run_dir = Path(settings.run_dir).resolve()
        self.home = self.run_dir / self.name
        self.pid_file = self.home / f"{self.name}.pid"
        self.log_file = self.home / f"{self.name}.log"
        self.data_dir = self.home / "data"
        #: The child handle when this object started the server (see :meth:`exited`).
        self._proc: subprocess.Popen[bytes] | None = None

    # --- what a subclass defines ------------------------------------------------
    @property
    def host(self) -> str:
        raise NotImplementedError

    def ports(self) -> list[int]:
        """Every port the process binds on :attr:`host` (all are checked before a start)."""
        raise NotImplementedError

    @property
    def config_file(self) -> Path:
        """The generated config; its path in the command line identifies our process."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Create directories and write the config (idempotent; runs before every start)."""
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def check(self) -> None:
        """A real round trip through the server; raises when it does not work."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """The connection facts for ``status`` (without health)."""
        raise NotImplementedError

    def version(self) -> str | None:
        """The version the running server reports (None when it cannot be asked)."""
        return None

    def env(self) -> dict[str, str]:
        """Environment of the server process."""
        return dict(os.environ)

    # --- lifecycle --------------------------------------------------------------
    def pid(self) -> int | None:
        """The pid of our running server, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not _pid_alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
        return pid if str(self.config_file) in cmdline else None

    def running(self) -> bool:
        return self.pid() is not None

    def healthy(self) -> bool:
        """True when the health round trip succeeds right now."""
        if not port_open(self.host, self.ports()[0]):
            return False
        try:
            self.check()
        except Exception:  # any failure of the round trip means "not healthy"
            return False
        return True

    def check_ports_free(self) -> None:
        for port in self.ports():
            if port_in_use(self.host, port):
                raise InfraError(
                    self.name,
                    f"port {port} on {self.host} is already in use by another process "
                    f"(log: {display_path(self.log_file)})",
                )

    def start(self) -> int:
        """Start the process in the background (its own session, so a terminal's Ctrl-C spares it)."""
        self.prepare()
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                self.command(), cwd=self.home, env=self.env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        self._proc = proc
        return proc.pid

    def exited(self) -> bool:
        """True when the process this object started has exited (reaping it).

        Uses the child handle, not :meth:`pid`: between fork and exec the
        child's command line is still ours, and would look like a dead server.
        """
        return self._proc is not None and self._proc.poll() is not None

    def died(self, pid: int) -> InfraError:
        """The error for a process that exited during its start."""
        return InfraError(self.name, f"the process exited during start (log: {display_path(self.log_file)})",
                          detail=tail(self.log_file))

    def stop(self) -> bool:
        """SIGTERM, wait, SIGKILL; True when a process was stopped."""
        pid = self.pid()
        if pid is None and self._proc is not None and self._proc.poll() is None:
            pid = self._proc.pid  # started by us a moment ago, possibly not yet exec'd
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.2)
        if _pid_alive(pid):
            self._signal(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        """Signal the server's whole process group (it leads its own session)."""
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)

    def status(self, probe: bool = True) -> dict[str, Any]:
        data = self.info()
        pid = self.pid()
        healthy = self.healthy() if probe else False
        data.update({
            "running": pid is not None,
            "pid": pid,
            "healthy": healthy,
            "log": str(self.log_file),
        })
        if healthy:
            data["version"] = self.version()
        else:
            data.setdefault("version", None)
        return data
