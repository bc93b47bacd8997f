"""ClickHouse from Debian's ``clickhouse-server`` package (18.16) as a user process.

Its config.xml / users.xml are rendered from ``deploy/clickhouse/*.template``
into ``<run_dir>/clickhouse/``; data, tmp and logs live beside them, so the
system's ``/var/lib/clickhouse`` is never touched and no root is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridhub.infra.base import DEPLOY_DIR, LocalServer, render_template
from gridhub.infra.install import clickhouse_binary
from gridhub.core.settings import Settings


class ClickHouseServer(LocalServer):
    name = "clickhouse"
    status_key = "clickhouse"
    # 18.16 starts in ~2 s; 60 s covers a loaded machine.
    start_timeout = 60.0
    stop_timeout = 30.0

    def __init__(self, settings: Settings, name: str | None = None, tcp_port: int | None = None,
                 http_port: int | None = None, interserver_http_port: int | None = None) -> None:
        super().__init__(settings, name)
        self.tcp_port = tcp_port or settings.clickhouse_port
        self.http_port = http_port or settings.clickhouse_http_port
        # 9009 + 10000, like the other ports: the interserver (replication) port
        # must not collide with a system ClickHouse's 9009.
        self.interserver_http_port = interserver_http_port or self.tcp_port + 9
        self.tmp_dir = self.home / "tmp"

    @property
    def host(self) -> str:
        return self.settings.clickhouse_host

    def ports(self) -> list[int]:
        return [self.tcp_port, self.http_port, self.interserver_http_port]

    @property
    def config_file(self) -> Path:
        return self.home / "config.xml"

    def prepare(self) -> None:
        for directory in (self.home, self.data_dir, self.tmp_dir, self.data_dir / "user_files"):
            directory.mkdir(parents=True, exist_ok=True)
        users = self.home / "users.xml"
        values = {
            "listen_host": self.host,
            "tcp_port": self.tcp_port,
            "http_port": self.http_port,
            "interserver_http_port": self.interserver_http_port,
            "data_dir": self.data_dir,
            "tmp_dir": self.tmp_dir,
            # The server's own log is the file its stdout goes to, so a start failure's reason is in one place.
            "log_file": self.log_file,
            "err_log_file": self.home / "clickhouse.err.log",
            "users_config": users,
        }
        render_template(DEPLOY_DIR / "clickhouse" / "config.xml.template", self.config_file, values)
        render_template(DEPLOY_DIR / "clickhouse" / "users.xml.template", users, values)

    def command(self) -> list[str]:
        return [*clickhouse_binary(), f"--config-file={self.config_file}"]

    def client(self, database: str = "default") -> Any:
        from clickhouse_driver import Client

        return Client(host=self.host, port=self.tcp_port, user=self.settings.clickhouse_user,
                      password=self.settings.secret("clickhouse_password"), database=database,
                      connect_timeout=3, send_receive_timeout=10)

    def check(self) -> None:
        client = self.client()
        try:
            if client.execute("SELECT 1") != [(1,)]:
                raise RuntimeError("SELECT 1 did not return 1")
        finally:
            client.disconnect()

    def version(self) -> str | None:
        client = self.client()
        try:
            return str(client.execute("SELECT version()")[0][0])
        except Exception:
            return None
        finally:
            client.disconnect()

    def info(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.tcp_port, "http_port": self.http_port}
