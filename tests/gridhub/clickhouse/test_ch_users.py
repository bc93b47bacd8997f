"""Read-only analysts per county (``gridhub ch users``): county copies on the real 18.16 server,
row policies on current ClickHouse (chdb).  Full id sets are compared, never counts."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from connectors.clickhouse.backend import ChdbBackend, DriverBackend
from connectors.clickhouse.migrate import migrate
from gridhub.clickhouse.synthetic import generate, rows
from gridhub.clickhouse.users import county_access, install, user_name
from gridhub.core.settings import Settings

NOW = int(time.time())
FACTS = ("reports", "cases", "case_events", "dispatches")
#: Every table with a county_code: the facts above and the device events (schemas/migrations/0015).
FILTERED = (*FACTS, "device_events")
IDS = {"reports": "report_id", "cases": "case_id", "case_events": "event_id", "dispatches": "dispatch_id"}


@pytest.fixture(scope="module")
def facts() -> dict[str, list[dict[str, Any]]]:
    return rows(generate(120, NOW * 1000, seed=23, townships=6), Settings())


def _counties(facts: dict[str, list[dict[str, Any]]]) -> list[str]:
    counties = sorted({r["county_code"] for r in facts["reports"]})
    assert len(counties) >= 2, "the facts must span two counties to show a filter"
    return counties[:2]


def _ids(facts: dict[str, list[dict[str, Any]]], table: str, county: str | None = None) -> set[str]:
    return {r[IDS[table]] for r in facts[table] if county is None or r["county_code"] == county}


@pytest.fixture
def server_db(infra: Any) -> Iterator[tuple[DriverBackend, str]]:
    settings = Settings()
    backend = DriverBackend.from_settings(settings)
    database = f"tusers_{uuid.uuid4().hex[:8]}"
    try:
        yield backend, database
    finally:
        for name in [r[0] for r in backend.query("SHOW DATABASES").rows if str(r[0]).startswith(database)]:
            backend.execute(f"DROP DATABASE IF EXISTS {name}")
        backend.close()


@pytest.mark.integration
def test_county_copies_on_clickhouse_18(server_db: tuple[DriverBackend, str], facts: dict[str, list[dict[str, Any]]],
                                        tmp_path: Path) -> None:
    from clickhouse_driver import Client
    from clickhouse_driver.errors import ServerException

    backend, database = server_db
    settings = Settings()
    migrate(backend, database)
    for table in FACTS:
        backend.insert(f"{database}.{table}", facts[table])
    mine, other = _counties(facts)
    access = county_access(backend, database, [mine, other], tmp_path / "credentials")
    assert backend.server_version() < (20, 4) and access.mode == "county_copies"
    assert sorted(access.filtered_tables) == sorted(FILTERED) and "dead_letters" in access.hidden_tables
    # The shared local server merges users.d beside its users.xml and reloads it by itself.
    users_dir = Path(settings.run_dir) / "clickhouse" / "users.d"
    path = install(access, users_dir)
    analyst = next(a for a in access.analysts if a.county == mine)
    try:
        client = Client(settings.clickhouse_host, port=settings.clickhouse_port, user=analyst.user,
                        password=analyst.password, database=analyst.database)
        deadline = time.monotonic() + 60
        while True:  # the server's users-config reloader polls every few seconds
            try:
                client.execute("SELECT 1")
                break
            except ServerException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        for table in FACTS:
            got = {r[0] for r in client.execute(f"SELECT {IDS[table]} FROM {analyst.database}.{table} FINAL")}
            assert got == _ids(facts, table, mine), table
        mapped = {r[0] for r in client.execute(f"SELECT case_id FROM {analyst.database}.report_case_map")}
        assert mapped and mapped <= _ids(facts, "cases", mine)  # the analysts' views, over the copies
        with pytest.raises(ServerException) as denied:
            client.execute(f"SELECT count() FROM {database}.reports")
        assert denied.value.code == 291  # DATABASE_ACCESS_DENIED: not the hub's database
        with pytest.raises(ServerException) as readonly:
            client.execute(f"INSERT INTO {analyst.database}.reports (report_id) VALUES", [{"report_id": "x"}])
        assert readonly.value.code == 164  # READONLY
        # New facts of both counties: only this county's reach its copy.
        fresh = [dict(r, report_id=f"new-{r['county_code']}") for r in
                 (next(r for r in facts["reports"] if r["county_code"] == c) for c in (mine, other))]
        backend.insert(f"{database}.reports", fresh)
        got = {r[0] for r in client.execute(f"SELECT report_id FROM {analyst.database}.reports FINAL")}
        assert got == _ids(facts, "reports", mine) | {f"new-{mine}"}
        client.disconnect()
    finally:
        path.unlink()


def test_row_policies_on_current_clickhouse(facts: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    """chdb 4.4 (ClickHouse 26.9) with the generated users file: the policies exist with the county
    filter on every fact table and nothing on the others, and each filter selects exactly its county."""
    import chdb

    database = "gridhub_t"
    plan = chdb.connect(f"file:{tmp_path / 'plan'}")
    try:
        backend = ChdbBackend(plan)
        migrate(backend, database)
        for table in FACTS:
            backend.insert(f"{database}.{table}", facts[table])
        counties = _counties(facts)
        access = county_access(backend, database, counties, tmp_path / "credentials")
        assert backend.server_version() >= (20, 4) and access.mode == "row_policies"
    finally:
        plan.close()

    # A server whose users config is the default user plus the generated file (as users.d merges it).
    users = access.xml.replace("<users>", "<users>\n        <default><password></password><networks><ip>::/0</ip>"
                               "</networks><profile>default</profile><quota>default</quota>"
                               "<access_management>1</access_management></default>", 1)
    users = users.replace("<profiles>", "<profiles>\n        <default/>", 1).replace(
        "</users>", "</users>\n    <quotas><default/></quotas>", 1)
    (tmp_path / "users.xml").write_text(users, encoding="utf-8")
    (tmp_path / "config.xml").write_text(
        f"<clickhouse><user_directories><users_xml><path>{tmp_path / 'users.xml'}</path></users_xml>"
        "</user_directories></clickhouse>", encoding="utf-8")
    con = chdb.connect(f"file:{tmp_path / 'db'}?config-file={tmp_path / 'config.xml'}")
    try:
        backend = ChdbBackend(con)
        migrate(backend, database)
        for table in FACTS:
            backend.insert(f"{database}.{table}", facts[table])
        policies = {(str(r[0]), str(r[1])): str(r[2]) for r in backend.query(
            "SELECT short_name, table, select_filter FROM system.row_policies "
            f"WHERE database = '{database}'").rows}
        for county in counties:
            user = user_name(database, county)
            for table in FACTS:
                condition = policies[(user, table)]
                assert condition == f"county_code = '{county}'"
                got = {r[0] for r in backend.query(
                    f"SELECT {IDS[table]} FROM {database}.{table} WHERE {condition}").rows}
                assert got == _ids(facts, table, county), (county, table)
            assert policies[(user, "dead_letters")] == "0"  # no county column: nothing
        assert {r[0] for r in backend.query(f"SELECT report_id FROM {database}.reports").rows} == \
            _ids(facts, "reports")  # the hub's own user still reads every county
    finally:
        con.close()


@pytest.mark.integration
def test_ch_users_command_prints_the_users_file(server_db: tuple[DriverBackend, str], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from gridhub.cli import main

    backend, database = server_db
    migrate(backend, database)
    result = CliRunner().invoke(main, ["ch", "users", "--county", "330502", "--database", database,
                                       "--credentials", str(tmp_path / "creds"), "--print"])
    assert result.exit_code == 0, result.output
    user = user_name(database, "330502")
    assert f"<{user}>" in result.output and "<readonly>1</readonly>" in result.output
    password = (tmp_path / "creds" / user).read_text()
    assert password and password not in result.output  # only its sha256 is in the file
    refused = CliRunner().invoke(main, ["ch", "users", "--county", "33050", "--database", database, "--print"])
    assert refused.exit_code == 2 and "6 digits" in refused.output
