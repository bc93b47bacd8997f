"""The analysts' kit (``deploy/analyst.sql``) as named queries.

The SQL file is the product: analysts run it as is with clickhouse-client.
This module only splits it at its ``-- name:`` / ``-- title:`` markers and,
for ``gridhub report --as-of``, pins ``now()`` to a given instant so a report
(or a test) can answer for a fixed moment.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from gridhub.core.settings import REPO_ROOT
from gridhub.core.reference import DATA_DIR

ANALYST_SQL = REPO_ROOT / "deploy" / "analyst.sql"
_REFERENCE = DATA_DIR


@dataclass(frozen=True)
class NamedQuery:
    name: str
    title: str
    sql: str


def load_queries(path: Path = ANALYST_SQL) -> list[NamedQuery]:
    queries: list[NamedQuery] = []
    name = title = ""
    body: list[str] = []

    def close() -> None:
        sql = "\n".join(body).strip().rstrip(";").strip()
        if name and sql:
            queries.append(NamedQuery(name, title or name, sql))

    for line in path.read_text(encoding="utf-8").splitlines():
        marker = re.match(r"^--\s*(name|title):\s*(.+?)\s*$", line)
        if marker and marker.group(1) == "name":
            close()
            name, title, body = marker.group(2), "", []
        elif marker:
            title = marker.group(2)
        elif name and not line.lstrip().startswith("--"):
            body.append(line)
    close()
    return queries


def pin_now(sql: str, epoch_seconds: int | None) -> str:
    """Replace ``now()`` by a fixed instant (``toDateTime(<epoch>)``), or leave the SQL alone."""
    if epoch_seconds is None:
        return sql
    return re.sub(r"\bnow\(\)", f"toDateTime({int(epoch_seconds)})", sql)


@lru_cache(maxsize=1)
def division_names() -> dict[str, str]:
    """County and township codes -> Chinese names, from the packaged reference data."""
    names: dict[str, str] = {}
    for file in ("counties.csv", "townships.csv"):
        with (_REFERENCE / file).open(encoding="utf-8", newline="") as fh:
            names.update({row["code"]: row["name"] for row in csv.DictReader(fh)})
    return names
