"""Read-only ClickHouse analysts per county: ``gridhub ch users``.

Why: one shared ClickHouse user read every county (issue 16); a county's
analysts must see their county's reports, cases, events and dispatches only.

Both supported servers get a users file (``users.d/gridhub-analysts-<db>.xml``,
which ClickHouse merges into its users config and reloads without a restart),
with one user ``<db>_analyst_<county>`` per county, read-only (``readonly=1``),
loopback networks, a sha256 password hash:

* **current ClickHouse** (20.4 and later, where a users file's ``<databases>``
  filters are row policies): the user may read the hub's database, with a
  row filter on every table: ``county_code = '<county>'`` on the tables that
  have the column, ``0`` (nothing) on the others (``dead_letters``, the
  migrations ledger).  The views read through the filtered tables.
* **ClickHouse 18.16** (the Debian package) has no row filters at all (its
  users file knows ``allow_databases`` only), and a plain view in another
  database is refused to a user who may not read the database the view reads
  (code 291).  The fallback: a database ``<db>_c<county>`` per county holding
  *materialized* copies of the county's rows of every table with a
  ``county_code`` (filled with ``POPULATE`` from what exists, then by every
  insert of the sink), and the analyst views of ``schemas/migrations/0002``
  rendered over those copies; the user may read that database only.  Costs:
  each county's rows are stored twice, and a row inserted while a copy is
  being created may be missed by ``POPULATE`` (run it before the sink starts,
  or re-run after dropping the county database).

Passwords are generated once into ``<credentials>/<user>`` (mode 0600) and
re-used; only their sha256 reaches the users file.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from connectors.clickhouse.backend import Backend
from connectors.clickhouse.migrate import MIGRATIONS_DIR, check_database_name, load_migrations, render
from gridhub.core.logging import get_logger

log = get_logger(__name__)

#: Users-file ``<databases>`` filters became row policies with ClickHouse's access control (20.4).
ROW_POLICIES_SINCE = (20, 4)
#: The migration whose views analysts read (rendered again over a county's copies on 18.16).
VIEWS_MIGRATION = "views"
_COUNTY = re.compile(r"^\d{6}$")


@dataclass(frozen=True)
class Analyst:
    county: str
    user: str
    database: str   # what the analyst queries: the hub's database, or the county copy (18.16)
    password: str = field(repr=False)


@dataclass
class CountyAccess:
    mode: str                      # "row_policies" | "county_copies"
    database: str
    analysts: list[Analyst]
    filtered_tables: list[str]     # tables with county_code
    hidden_tables: list[str]       # tables an analyst never reads (no county column)
    xml: str = field(repr=False, default="")


def user_name(database: str, county: str) -> str:
    return f"{database}_analyst_{county}"


def county_database(database: str, county: str) -> str:
    return f"{database}_c{county}"


def password_for(credentials: Path, user: str) -> str:
    """The user's password, generated on first use (192 random bits, url-safe) into a 0600 file."""
    path = credentials / user
    if not path.exists():
        credentials.mkdir(parents=True, exist_ok=True)
        os.chmod(credentials, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def _tables(backend: Backend, database: str) -> tuple[list[str], list[str]]:
    """(tables with a county_code column, other tables), views and materialized copies excluded."""
    rows = backend.query(f"SELECT name, engine FROM system.tables WHERE database = '{database}'").rows
    tables = sorted(str(name) for name, engine in rows
                    if not str(engine).endswith("View") and not str(name).startswith(".inner"))
    with_county = {str(r[0]) for r in backend.query(
        f"SELECT table FROM system.columns WHERE database = '{database}' AND name = 'county_code'").rows}
    return [t for t in tables if t in with_county], [t for t in tables if t not in with_county]


def users_xml(analysts: list[Analyst], *, root: str, filters: dict[str, dict[str, str]] | None) -> str:
    """The users file: a read-only profile and one user per analyst (filters: db -> table -> condition)."""
    lines = [f'<?xml version="1.0"?>', f"<!-- written by `gridhub ch users`; do not edit by hand -->", f"<{root}>",
             "    <profiles>", "        <gridhub_analyst>", "            <readonly>1</readonly>",
             "        </gridhub_analyst>", "    </profiles>", "    <users>"]
    for a in analysts:
        digest = hashlib.sha256(a.password.encode()).hexdigest()
        lines += [f"        <{a.user}>", f"            <password_sha256_hex>{digest}</password_sha256_hex>",
                  "            <networks><ip>::1</ip><ip>127.0.0.1</ip></networks>",
                  "            <profile>gridhub_analyst</profile>", "            <quota>default</quota>",
                  f"            <allow_databases><database>{a.database}</database></allow_databases>"]
        if filters is not None:
            lines.append("            <databases>")
            lines.append(f"                <{a.database}>")
            for table, condition in filters[a.county].items():
                lines.append(f"                    <{table}><filter>{escape(condition)}</filter></{table}>")
            lines.append(f"                </{a.database}>")
            lines.append("            </databases>")
        lines.append(f"        </{a.user}>")
    lines += ["    </users>", f"</{root}>", ""]
    return "\n".join(lines)


def _engine_clause(backend: Backend, database: str, table: str) -> str:
    text = str(backend.query(f"SHOW CREATE TABLE {database}.{table}").rows[0][0])
    match = re.search(r"\bENGINE\s*=\s*(.*)$", text, re.S)
    if not match:
        raise RuntimeError(f"cannot read the engine of {database}.{table}")
    return match.group(1).strip()


def _county_copies(backend: Backend, database: str, county: str, tables: list[str],
                   version: tuple[int, ...]) -> None:
    """18.16: ``<db>_c<county>`` with a materialized copy of the county's rows of each table + the views."""
    target = county_database(database, county)
    backend.execute(f"CREATE DATABASE IF NOT EXISTS {target}")
    existing = {str(r[0]) for r in backend.query(f"SELECT name FROM system.tables WHERE database = '{target}'").rows}
    for table in tables:
        if table in existing:
            continue
        engine = _engine_clause(backend, database, table)
        backend.execute(f"CREATE MATERIALIZED VIEW {target}.{table} ENGINE = {engine} POPULATE AS "
                        f"SELECT * FROM {database}.{table} WHERE county_code = '{county}'")
    views = [m for m in load_migrations(MIGRATIONS_DIR) if m.name == VIEWS_MIGRATION]
    for migration in views:
        for statement in render(migration.text, target, version):
            try:
                backend.execute(statement)
            except Exception as exc:  # a view over a table without county_code: not for analysts
                log.warning("county_view_skipped", database=target, error=str(exc).splitlines()[0][:200])


def county_access(backend: Backend, database: str, counties: list[str], credentials: Path) -> CountyAccess:
    """Create what the server needs (18.16: the county copies) and return the users file to install."""
    check_database_name(database)
    bad = [c for c in counties if not _COUNTY.match(c)]
    if bad or not counties:
        raise ValueError(f"county codes are 6 digits (got {', '.join(bad) or 'none'})")
    version = backend.server_version()
    with_county, other = _tables(backend, database)
    if not with_county:
        raise ValueError(f"database {database} has no table with county_code: run `gridhub ch migrate` first")
    if version >= ROW_POLICIES_SINCE:
        analysts = [Analyst(c, user_name(database, c), database, password_for(credentials, user_name(database, c)))
                    for c in counties]
        filters = {c: {**{t: f"county_code = '{c}'" for t in with_county}, **{t: "0" for t in other}}
                   for c in counties}
        xml = users_xml(analysts, root="clickhouse", filters=filters)
        return CountyAccess("row_policies", database, analysts, with_county, other, xml)
    analysts = []
    for c in counties:
        _county_copies(backend, database, c, with_county, version)
        analysts.append(Analyst(c, user_name(database, c), county_database(database, c),
                                password_for(credentials, user_name(database, c))))
    xml = users_xml(analysts, root="yandex", filters=None)
    return CountyAccess("county_copies", database, analysts, with_county, other, xml)


def install(access: CountyAccess, users_dir: Path) -> Path:
    """Write the users file where the server merges it (``users.d`` beside its users.xml)."""
    users_dir.mkdir(parents=True, exist_ok=True)
    path = users_dir / f"gridhub-analysts-{access.database}.xml"
    tmp = path.with_suffix(".xml.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(access.xml)
    os.replace(tmp, path)  # the server's reloader never sees half a file
    log.info("clickhouse_analysts_installed", path=str(path), mode=access.mode, users=len(access.analysts))
    return path
