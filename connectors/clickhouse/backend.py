"""One small query interface over the two ClickHouse engines the hub supports.

Production talks to a server with clickhouse-driver (native protocol); tests
also run every migration and analyst query on a current ClickHouse through
chdb, in process.  Both are wrapped as a :class:`Backend` so the migration tool
and the report do not care which one they drive.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from gridhub.core.settings import Settings


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]


class Backend(Protocol):
    def query(self, sql: str) -> Result: ...

    def execute(self, sql: str) -> None: ...

    def server_version(self) -> tuple[int, ...]: ...

    def insert(self, table: str, rows: Sequence[dict[str, Any]]) -> None: ...


def parse_version(text: str) -> tuple[int, ...]:
    """``"18.16.1"`` -> ``(18, 16, 1)``; ignores any non-numeric tail."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:4])


class DriverBackend:
    """A ClickHouse server over the native protocol (clickhouse-driver)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings, database: str = "default", **kwargs: Any) -> "DriverBackend":
        from clickhouse_driver import Client

        return cls(Client(settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                          password=settings.secret("clickhouse_password"), database=database, **kwargs))

    def query(self, sql: str) -> Result:
        rows, types = self.client.execute(sql, with_column_types=True)
        return Result([name for name, _ in types], [tuple(r) for r in rows])

    def execute(self, sql: str) -> None:
        self.client.execute(sql)

    def server_version(self) -> tuple[int, ...]:
        return parse_version(str(self.client.execute("SELECT version()")[0][0]))

    def insert(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            columns = ", ".join(rows[0])
            self.client.execute(f"INSERT INTO {table} ({columns}) VALUES", list(rows))

    def close(self) -> None:
        self.client.disconnect()


class ChdbBackend:
    """A current ClickHouse engine in process (chdb ``Session``)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        # Numbers as JSON numbers (not quoted 64-bit strings), like clickhouse-driver returns them.
        self.session.query("SET output_format_json_quote_64bit_integers = 0")

    def query(self, sql: str) -> Result:
        out = self.session.query(sql, "JSONCompact")
        text = out.bytes().decode("utf-8") if hasattr(out, "bytes") else str(out)
        if not text.strip():
            return Result([], [])
        doc = json.loads(text)
        return Result([m["name"] for m in doc.get("meta", [])], [tuple(r) for r in doc.get("data", [])])

    def execute(self, sql: str) -> None:
        self.session.query(sql)

    def server_version(self) -> tuple[int, ...]:
        return parse_version(str(self.query("SELECT version()").rows[0][0]))

    def insert(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.session.query(insert_rows_sql(table, rows))


def insert_rows_sql(table: str, rows: Sequence[dict[str, Any]]) -> str:
    """``INSERT ... FORMAT JSONEachRow`` text for engines without a row API (chdb, tests)."""
    body = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    return f"INSERT INTO {table} FORMAT JSONEachRow\n{body}"
