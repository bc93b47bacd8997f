"""``gridhub report``: text tables and the Chinese HTML page, read back as a person reads it.

The integration test renders the page in headless Chromium, takes a screenshot
and reads it with OCR (tesseract, simplified Chinese): the section headings and
the township names must be in the *picture*, not only in the DOM, so a missing
CJK font (every character a box) fails it.
"""

from __future__ import annotations

import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from connectors.clickhouse.backend import DriverBackend
from connectors.clickhouse.migrate import migrate
from gridhub.clickhouse.queries import NamedQuery, Period, agency_name, division_names, load_queries, pin_now
from gridhub.clickhouse.report import TITLES, Answer, heat_table, make_period, nice_ticks, parse_as_of, render_html
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
        elif self._current and tag in ("rect", "circle") and str(a.get("class", "")).split(" ")[0] in ("bar", "dot"):
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


def test_names_come_from_the_catalogues_and_periods_from_the_options() -> None:
    assert agency_name("330502.zhzf") == "吴兴区综合行政执法"
    assert agency_name("330502.town-330502001") == "月河街道四平台"
    assert agency_name("330500.zzzx") == "湖州市社会治理中心"
    assert division_names()["330503"] == "南浔区"
    period = make_period(None, "2026-11-01", "2026-11-30", "330502,330503")
    assert period.end - period.start == 30 * 86400 and period.counties == ("330502", "330503")
    assert "county_code IN ('330502', '330503')" in period.where("first_seen")
    with pytest.raises(Exception):
        make_period(None, "2026-11-30", "2026-11-01", "")
    with pytest.raises(Exception):
        make_period(None, None, None, "33050")
    assert nice_ticks(37) == [0, 10, 20, 30, 40] and nice_ticks(0.8)[-1] >= 0.8


def test_empty_answers_say_so_in_chinese_and_the_page_has_no_script() -> None:
    answers = {name: Answer(NamedQuery(name, title, ""), [], []) for name, title in TITLES.items()}
    page = render_html(answers, Period(0, 86400), "吴兴区")
    assert "无数据" in page and "<script" not in page and "吴兴区基层治理" in page
    for title in TITLES.values():
        if title != TITLES["loop_events"]:
            assert title in page


def test_no_overdue_case_is_an_answer_not_missing_data() -> None:
    """The demo's page once failed "no 无数据" when every overdue dispatch had been resolved by the time
    of the report: the overdue section said 无超期未办结案件 and then 无数据 under it."""
    answers = {name: Answer(NamedQuery(name, title, ""), [], []) for name, title in TITLES.items()}
    page = render_html(answers, Period(0, 86400), "吴兴区")
    overdue = page[page.index('<section id="overdue_open">'):]
    overdue = overdue[:overdue.index("</section>")]
    assert "无超期未办结案件" in overdue and "无数据" not in overdue
    answers["overdue_open"] = Answer(NamedQuery("overdue_open", TITLES["overdue_open"], ""),
                                     ["agency_name", "open_overdue", "resolve_clock", "sign_clock_only", "oldest_dispatch"],
                                     [("区综合执法局", 3, 2, 1, "2026-12-01 08:00:00")])
    page = render_html(answers, Period(0, 86400), "吴兴区")
    overdue = page[page.index('<section id="overdue_open">'):]
    assert "<table>" in overdue[:overdue.index("</section>")] and "区综合执法局" in overdue


def test_heat_table_is_townships_by_categories() -> None:
    cols = ["county", "township", "category_name", "cases"]
    rows_ = [("吴兴区", "月河街道", "噪声扰民", 3), ("吴兴区", "月河街道", "井盖", 1), ("南浔区", "练市镇", "噪声扰民", 5)]
    table = heat_table(Answer(NamedQuery("x", "x", ""), cols, rows_))
    assert table.count("<tr>") == 3 and "<th>噪声扰民</th><th>井盖</th>" in table


def ocr(picture: Path) -> str:
    """Simplified Chinese OCR of a screenshot (tesseract chi_sim), spaces removed (it splits CJK runs)."""
    out = subprocess.run(["tesseract", str(picture), "stdout", "-l", "chi_sim", "--psm", "3"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return "".join(out.stdout.split())


def _edits_at_most_one(a: str, b: str) -> bool:
    """Levenshtein distance <= 1 (one character misread, dropped or added)."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) <= 1
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


def read_in(name: str, seen: str) -> bool:
    """``name`` is in the OCR text, exactly or with one character misread (tesseract's chi_sim reads
    rare characters of place names as look-alikes: 东塍镇 as 东腾镇); names of 3+ characters only, so a
    two-character name cannot match by accident."""
    if name in seen:
        return True
    if len(name) < 3:
        return False
    return any(_edits_at_most_one(name, seen[i:i + n]) for n in (len(name) - 1, len(name), len(name) + 1)
               for i in range(len(seen) - n + 1))


def test_ocr_tolerance_is_one_character() -> None:
    assert read_in("东塍镇", "临海市东腾镇12") and read_in("仕阳镇", "泰顺县仕阳和镇1")
    assert not read_in("东塍镇", "临海市东腾乡12") and not read_in("江口", "江日")


@pytest.mark.integration
def test_report_html_read_back_from_a_chromium_screenshot_with_ocr(settings: Settings, tmp_path: Path) -> None:
    from gridhub.supervisor import GRIDHUB

    now = int(time.time())
    facts = generate(300, now * 1000, seed=3, span_hours=72, townships=10)
    server = DriverBackend.from_settings(settings)
    try:
        migrate(server, settings.ch_database)
        for table, table_rows in rows(facts, settings).items():
            server.insert(f"{settings.ch_database}.{table}", table_rows)
    finally:
        server.close()
    townships = sorted({division_names()[v["street_code"]] for _, v in facts.records["cases"]})
    page = tmp_path / "report.html"
    env = {**settings.as_env(), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([GRIDHUB, "report", "--as-of", str(now), "--html", str(page)], env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    for name in ("overview", "township_index", "categories_by_township", "agencies"):
        assert f"== {TITLES[name]}" in out.stdout
    text = page.read_text(encoding="utf-8")
    assert all(t in text for t in townships)

    common = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"]
    dom = subprocess.run([*common, "--window-size=1200,3000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    collector = ChartCollector()
    collector.feed(dom.stdout)
    charts = {"township_index", "reports_hourly", "satisfaction_hourly", "map", "agencies", "overdue_open"}
    assert charts <= set(collector.marks), collector.marks
    assert all(collector.marks[c] > 0 for c in charts), collector.marks
    assert collector.external == []  # self-contained: nothing to fetch on a closed network

    # The top of the page, twice the pixels (as on an analyst's high-density screen): the headings
    # and the ranked townships of the index chart must be readable in the picture itself.
    shot = tmp_path / "report.png"
    subprocess.run([*common, "--window-size=1100,1500", "--force-device-scale-factor=2", f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, timeout=180, check=True)
    seen = ocr(shot)
    headings = [t for t in (TITLES["overview"], "晾晒指数排名", "结案率", "满意率") if t in seen]
    assert len(headings) >= 3, seen[:2000]
    found = [t for t in townships if read_in(t, seen)]
    assert len(found) >= 5, (found, townships, seen[:2000])


def test_convex_hull_keeps_the_corners_only() -> None:
    from gridhub.clickhouse.report import convex_hull

    square = [(0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0), (1.0, 1.0), (1.0, 0.0)]
    assert sorted(convex_hull(square)) == [(0.0, 0.0), (0.0, 2.0), (2.0, 0.0), (2.0, 2.0)]
