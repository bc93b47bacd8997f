"""``gridhub report``: text tables and the self-contained HTML page, checked in headless Chromium."""

from __future__ import annotations

import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from connectors.clickhouse.backend import DriverBackend
from connectors.clickhouse.migrate import migrate
from gridhub.clickhouse.queries import load_queries, pin_now
from gridhub.clickhouse.report import CHARTS, Answer, parse_as_of, render_html
from gridhub.clickhouse.synthetic import generate, rows
from gridhub.core.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class ChartCollector(HTMLParser):
    """Per ``data-chart`` svg: how many drawn marks (bars, points) it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: dict[str, int] = {}
        self.external: list[str] = []
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        chart = a.get("data-chart")
        if tag == "svg" and chart:
            self._current = chart
            self.marks[chart] = 0
        elif self._current and tag in ("rect", "circle") and a.get("class") in ("bar", "dot"):
            self.marks[self._current] += 1
        for attr in ("src", "href"):
            if a.get(attr) and str(a[attr]).startswith(("http:", "https:", "//")):
                self.external.append(str(a[attr]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._current = None


def test_now_is_pinned_only_as_a_function_call() -> None:
    sql = "SELECT now(), nowhere() FROM t WHERE x = now()"
    assert pin_now(sql, 100) == "SELECT toDateTime(100), nowhere() FROM t WHERE x = toDateTime(100)"
    assert pin_now(sql, None) == sql
    assert parse_as_of("2026-11-02T08:00:00") == parse_as_of("2026-11-02T00:00:00+00:00") == 1793577600


def test_every_kit_query_has_a_chart_and_empty_answers_say_so() -> None:
    queries = load_queries()
    assert {q.name for q in queries} == set(CHARTS)
    page = render_html([Answer(q, ["x"], []) for q in queries], "gridhub", 0)
    assert page.count("no data for a chart") == len(queries) and "<script" not in page


@pytest.mark.integration
def test_report_text_and_html_in_headless_chromium(settings: Settings, tmp_path: Path) -> None:
    from gridhub.supervisor import GRIDHUB

    now = int(time.time())
    server = DriverBackend.from_settings(settings)
    try:
        migrate(server, settings.ch_database)
        for table, table_rows in rows(generate(200, now * 1000, seed=3), settings).items():
            server.insert(f"{settings.ch_database}.{table}", table_rows)
    finally:
        server.close()
    page = tmp_path / "report.html"
    env = {**settings.as_env(), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([GRIDHUB, "report", "--as-of", str(now), "--html", str(page)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for query in load_queries():
        assert f"== {query.title}" in out.stdout
    assert "(no rows)" not in out.stdout

    common = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1200,3000"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    collector = ChartCollector()
    collector.feed(dom.stdout)
    assert set(collector.marks) == set(CHARTS), collector.marks
    assert all(n > 0 for n in collector.marks.values()), collector.marks
    assert collector.external == []  # self-contained: nothing to fetch on a closed network
    shot = tmp_path / "report.png"
    subprocess.run([*common, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000
