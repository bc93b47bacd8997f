"""Every migration and every analyst query, on ClickHouse 18.16 (the Debian server) and current ClickHouse (chdb).

Also the idempotence contract of CONTRACTS.md section 3: loading the same
facts twice changes no analyst answer.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors.clickhouse.backend import Backend, ChdbBackend, DriverBackend
from connectors.clickhouse.migrate import MIGRATIONS_DIR, MigrationError, load_migrations, migrate, render
from gridhub.clickhouse.queries import Period, load_queries
from gridhub.clickhouse.report import Answer, run_queries, run_report
from gridhub.clickhouse.synthetic import generate, rows
from gridhub.core.settings import Settings

NOW = int(time.time())
VIEWS = ["report_case_map", "reports_hourly", "cases_hourly", "dispatch_facts", "agency_monthly", "overdue_open",
         "case_facts", "dedupe_by_source", "satisfaction_weekly", "township_index_monthly", "case_resolutions",
         "case_recurrence", "case_index_parts"]


@pytest.fixture(scope="module")
def chdb_session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from chdb import session

    # One chdb session per process at a time: share it across this module's tests.
    s = session.Session(str(tmp_path_factory.mktemp("chdb")))
    yield s
    s.close()


@pytest.fixture(scope="module")
def facts_rows() -> dict[str, list[dict[str, Any]]]:
    return rows(generate(240, NOW * 1000, seed=11), Settings())


def load(backend: Backend, database: str, data: dict[str, list[dict[str, Any]]], times: int) -> None:
    for _ in range(times):
        for table, table_rows in data.items():
            backend.insert(f"{database}.{table}", table_rows)


def fresh_db(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_placeholders_follow_the_server_version() -> None:
    text = "CREATE TABLE {db}.t (a {lcstring}) ENGINE = Memory;\n-- a comment; with a semicolon\nSELECT 1;"
    assert render(text, "gridhub", (18, 16, 1)) == ["CREATE TABLE gridhub.t (a String) ENGINE = Memory", "SELECT 1"]
    assert render(text, "x", (26, 9))[0] == "CREATE TABLE x.t (a LowCardinality(String)) ENGINE = Memory"
    with pytest.raises(MigrationError):
        render(text, "gridhub; DROP DATABASE default", (26, 9))


def test_migration_files_are_numbered_once() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(set(versions)) and versions[0] == 1


def test_chdb_migrate_is_idempotent_and_refuses_edited_files(chdb_session: Any, tmp_path: Path) -> None:
    backend = ChdbBackend(chdb_session)
    db = fresh_db("mig")
    first = migrate(backend, db)
    assert first.applied == [f"{m.version:04d}_{m.name}" for m in load_migrations()]
    assert first.server_version.startswith("26.")
    again = migrate(backend, db)
    assert again.applied == [] and again.already == first.applied
    for view in VIEWS:
        assert backend.query(f"SELECT * FROM {db}.{view}").rows == []
    edited = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, edited)
    first_file = sorted(edited.glob("*.sql"))[0]
    first_file.write_text(first_file.read_text() + "\n-- edited after release\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(backend, db, edited)


def check_answers(answers: list[Answer]) -> None:
    assert [a.query.name for a in answers] == [q.name for q in load_queries()]
    for answer in answers:
        assert answer.rows, f"{answer.query.name} answered nothing on the synthetic facts"


def sorted_rows(answers: list[Answer]) -> list[Answer]:
    """Rows in one order whatever the engine's order of equal keys (the map's points have none)."""
    return [Answer(a.query, a.columns, sorted(a.rows, key=repr)) for a in answers]


def same_within_rounding(a: list[Answer], b: list[Answer]) -> None:
    """Engines may round an exact half differently in round(x, n): numbers may differ by one last digit."""
    for x, y in zip(a, b, strict=True):
        assert x.columns == y.columns, x.query.name
        assert len(x.rows) == len(y.rows), x.query.name
        for rx, ry in zip(x.rows, y.rows):
            for vx, vy in zip(rx, ry, strict=True):
                if isinstance(vx, float) or isinstance(vy, float):
                    assert abs(float(vx) - float(vy)) <= 0.1 + 1e-9, (x.query.name, rx, ry)
                else:
                    assert vx == vy, (x.query.name, rx, ry)


@pytest.mark.integration
def test_once_twice_and_both_engines_give_the_same_answers(
        settings: Settings, chdb_session: Any, facts_rows: dict[str, list[dict[str, Any]]]) -> None:
    server = DriverBackend.from_settings(settings)
    twice_db = fresh_db(settings.ch_database + "_twice")
    try:
        assert migrate(server, settings.ch_database).server_version.startswith("18.16")
        migrate(server, twice_db)
        load(server, settings.ch_database, facts_rows, 1)
        load(server, twice_db, facts_rows, 2)
        once = run_queries(DriverBackend.from_settings(settings, database=settings.ch_database), NOW)
        twice = run_queries(DriverBackend.from_settings(settings, database=twice_db), NOW)
        raw = server.query(f"SELECT count() FROM {twice_db}.case_events").rows[0][0]
        final = server.query(f"SELECT count() FROM {twice_db}.case_events FINAL").rows[0][0]
    finally:
        server.execute(f"DROP DATABASE IF EXISTS {twice_db}")
        server.close()
    assert raw == 2 * final == 2 * len(facts_rows["case_events"])  # the duplicates really are in the table
    check_answers(once)
    assert once == twice

    local = ChdbBackend(chdb_session)
    dbs = fresh_db("once"), fresh_db("twice")
    for db, times in zip(dbs, (1, 2)):
        migrate(local, db)
        load(local, db, facts_rows, times)
    local.execute(f"USE {dbs[0]}")
    current_once = run_queries(local, NOW)
    local.execute(f"USE {dbs[1]}")
    current_twice = run_queries(local, NOW)
    assert current_once == current_twice
    same_within_rounding(once, current_once)

    # the analysts' report (any period, any county) on both engines, once and twice loaded alike
    period = Period(NOW - 7 * 86400, NOW + 60)
    local.execute(f"USE {dbs[0]}")
    report_current = list(run_report(local, period).values())
    local.execute(f"USE {dbs[1]}")
    assert list(run_report(local, period).values()) == report_current
    server_report = DriverBackend.from_settings(settings, database=settings.ch_database)
    try:
        report_server = list(run_report(server_report, period).values())
    finally:
        server_report.close()
    assert all(a.rows for a in report_server if a.query.name != "overdue_open"), \
        [a.query.name for a in report_server if not a.rows]
    same_within_rounding(sorted_rows(report_server), sorted_rows(report_current))


@pytest.mark.integration
def test_gridhub_ch_migrate_command(settings: Settings, ch_client: Any) -> None:
    import subprocess

    from gridhub.supervisor import GRIDHUB

    env = {**settings.as_env(), "PATH": "/usr/bin:/bin"}
    for expected in ("2 applied, 0 already", "0 applied, 2 already"):
        out = subprocess.run([GRIDHUB, "ch", "migrate"], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert expected.replace("2", str(len(load_migrations()))) in out.stdout
    recorded = ch_client.execute("SELECT version, checksum, server_version FROM schema_migrations FINAL ORDER BY version")
    assert [(v, c) for v, c, _ in recorded] == [(m.version, m.checksum) for m in load_migrations()]
    assert all(sv.startswith("18.16") for _, _, sv in recorded)
