"""``up`` / ``down`` / ``status`` over the set of local servers.

One lock file per run dir serialises ``up`` and ``down``: several test
sessions (or developers' shells) may call ``up`` at the same moment, and
only one of them must start the servers; the others then find them healthy.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gridhub.infra.base import InfraError, LocalServer
from gridhub.infra.clickhouse import ClickHouseServer
from gridhub.infra.install import install
from gridhub.infra.kafka import KafkaServer
from gridhub.infra.mosquitto import MosquittoServer
from gridhub.core.settings import Settings

#: Progress callback: (service name, state, details).
Progress = Callable[[str, str, dict[str, Any]], None]


def _quiet(_name: str, _state: str, _details: dict[str, Any]) -> None:
    return None


class Infra:
    """The local Kafka, ClickHouse and Mosquitto of one run dir."""

    def __init__(self, settings: Settings, servers: list[LocalServer] | None = None) -> None:
        self.settings = settings
        self.run_dir = Path(settings.run_dir).resolve()
        self.servers: list[LocalServer] = servers if servers is not None else [
            KafkaServer(settings), ClickHouseServer(settings), MosquittoServer(settings)]

    @contextmanager
    def lock(self) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def up(self, progress: Progress = _quiet) -> dict[str, float]:
        """Start what is not running and wait until every server passes its health check.

        Returns the seconds each server took to become healthy.  Raises
        :class:`InfraError` for a taken port or a server that died or never
        became healthy.
        """
        with self.lock():
            install(self.settings, progress=lambda what: progress("install", what, {}))
            # Faust workers keep their table state in <run_dir>/faust/<app id> and create only the last part.
            (self.run_dir / "faust").mkdir(parents=True, exist_ok=True)
            began = time.monotonic()
            # Every port is checked before anything starts, so a taken port starts nothing.
            to_start = [server for server in self.servers if not server.running()]
            for server in to_start:
                server.check_ports_free()
            started: dict[str, int] = {}
            try:
                for server in self.servers:
                    if server in to_start:
                        try:
                            started[server.name] = server.start()
                        except OSError as exc:
                            raise InfraError(server.name, f"cannot start: {exc}") from exc
                        progress(server.name, "starting", {"pid": started[server.name]})
                    else:
                        progress(server.name, "running", {})
                return self._wait_healthy(self.servers, started, began, progress)
            except InfraError:
                # A failed `up` leaves nothing behind: stop what this call started.
                for server in to_start:
                    if server.name in started:
                        server.stop()
                raise

    def _wait_healthy(self, waiting: list[LocalServer], started: dict[str, int], began: float,
                      progress: Progress) -> dict[str, float]:
        took: dict[str, float] = {}
        deadlines = {s.name: began + s.start_timeout for s in waiting}
        pending = list(waiting)
        while pending:
            for server in list(pending):
                if server.name in started and server.exited():
                    raise server.died(started[server.name])
                if server.healthy():
                    took[server.name] = round(time.monotonic() - began, 1)
                    progress(server.name, "healthy", {"seconds": took[server.name]})
                    pending.remove(server)
                elif time.monotonic() > deadlines[server.name]:
                    error = server.died(started.get(server.name, 0))
                    raise InfraError(server.name, f"not healthy after {server.start_timeout:.0f} s "
                                     f"(log: {error.message.rsplit('(log: ', 1)[-1]}", detail=error.detail)
            if pending:
                time.sleep(0.5)
        return took

    def down(self, progress: Progress = _quiet) -> list[str]:
        """Stop every server of this run dir (SIGTERM, wait, SIGKILL); returns the ones stopped."""
        stopped = []
        with self.lock():
            for server in reversed(self.servers):
                if server.stop():
                    stopped.append(server.name)
                    progress(server.name, "stopped", {})
                else:
                    progress(server.name, "not running", {})
        return stopped

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = {"run_dir": str(self.run_dir)}
        for server in self.servers:
            data[server.status_key] = server.status()
        data["healthy"] = all(data[s.status_key]["healthy"] for s in self.servers)
        return data
