"""``gridhub report``: the analysts' kit answered, as text tables or one HTML page.

The HTML is self-contained (inline CSS and SVG, no script, no CDN): the
county centre's network is closed, and a file mailed around must still show
its charts.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import click

from connectors.clickhouse.backend import Backend
from gridhub.clickhouse.queries import NamedQuery, division_names, load_queries, pin_now
from gridhub.core.settings import get_settings
from gridhub.core.timeutil import BEIJING

_DATETIME_TEXT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
#: Bars per chart: beyond ~30 labels a bar chart is unreadable; the table below it has every row.
MAX_BARS = 30


@dataclass(frozen=True)
class Answer:
    query: NamedQuery
    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True)
class Chart:
    kind: str            # "bar" (horizontal bars) | "line"
    labels: tuple[str, ...]
    value: str
    unit: str = ""


#: One chart per query of deploy/analyst.sql.
CHARTS: dict[str, Chart] = {
    "top_categories_week": Chart("bar", ("township", "category"), "reports", "reports"),
    "overdue_open_by_agency": Chart("bar", ("agency",), "open_overdue", "cases"),
    "sign_time_month": Chart("bar", ("agency",), "sign_hours_p50", "h to 签收 (median)"),
    "dedupe_by_source": Chart("bar", ("source",), "reports_per_case", "reports per case"),
    "satisfaction_trend": Chart("line", ("week",), "satisfaction_rate", "满意率"),
    "township_index": Chart("bar", ("township",), "township_index", "晾晒指数"),
    "reports_last_24h": Chart("line", ("hour",), "report_count", "reports"),
}


def display(value: Any) -> Any:
    """One display form for both engines: ISO dates, rounded floats, '' for NULL."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else round(value, 4)
    if isinstance(value, str) and _DATETIME_TEXT.match(value):  # chdb's JSON renders times as text
        return value[:16]
    return value


def _with_names(columns: list[str], rows: list[tuple[Any, ...]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Add a township / county name column after each code column (reference data)."""
    names = division_names()
    extra = {"street_code": "township", "county_code": "county"}
    out_cols: list[str] = []
    for c in columns:
        out_cols.append(c)
        if c in extra:
            out_cols.append(extra[c])
    out_rows = []
    for row in rows:
        values: list[Any] = []
        for c, v in zip(columns, row):
            values.append(display(v))
            if c in extra:
                values.append(names.get(str(v), str(v)))
        out_rows.append(tuple(values))
    return out_cols, out_rows


def run_queries(backend: Backend, as_of: int | None = None) -> list[Answer]:
    """Every query of the kit, in file order, against the backend's current database."""
    answers = []
    for query in load_queries():
        result = backend.query(pin_now(query.sql, as_of))
        columns, rows = _with_names(result.columns, result.rows)
        answers.append(Answer(query, columns, rows))
    return answers


def render_text(answers: Sequence[Answer]) -> str:
    from gridhub.ops.common import render_table

    parts = []
    for a in answers:
        parts.append(f"== {a.query.title}")
        parts.append(render_table([[str(v) for v in row] for row in a.rows], a.columns) if a.rows else "(no rows)")
        parts.append("")
    return "\n".join(parts)


# --- HTML ---------------------------------------------------------------------------------------

_CSS = """
body{font-family:"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:24px;color:#222}
h1{font-size:20px} h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left} th{background:#f0f0f0}
svg.chart{display:block;margin:8px 0} .bar{fill:#3b78c4} .line{fill:none;stroke:#c43b3b;stroke-width:2}
.dot{fill:#c43b3b} text{font-size:11px;fill:#333} .empty{color:#888}
"""


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _points(answer: Answer, chart: Chart) -> list[tuple[str, float]]:
    index = {c: i for i, c in enumerate(answer.columns)}
    points = []
    for row in answer.rows:
        value = _number(row[index[chart.value]]) if chart.value in index else None
        if value is None:
            continue
        label = " · ".join(str(row[index[c]]) for c in chart.labels if c in index)
        points.append((label, value))
    return points


def svg_chart(answer: Answer, chart: Chart) -> str:
    points = _points(answer, chart)
    if chart.kind == "bar":
        points = points[:MAX_BARS]
    name = html.escape(answer.query.name)
    if not points:
        return f'<p class="empty" data-chart="{name}">no data for a chart</p>'
    top = max(max(v for _, v in points), 0.0) or 1.0
    if chart.kind == "bar":
        label_w, bar_w, row_h = 260, 360, 20
        height = row_h * len(points) + 24
        parts = [f'<svg class="chart" data-chart="{name}" xmlns="http://www.w3.org/2000/svg" '
                 f'width="{label_w + bar_w + 80}" height="{height}" role="img">']
        for i, (label, value) in enumerate(points):
            y = 4 + i * row_h
            bar = max(1.0, bar_w * max(value, 0.0) / top)
            parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{html.escape(label[:40])}</text>')
            parts.append(f'<rect class="bar" x="{label_w}" y="{y}" width="{bar:.1f}" height="{row_h - 5}">'
                         f'<title>{html.escape(label)}: {value:g}</title></rect>')
            parts.append(f'<text x="{label_w + bar + 4:.1f}" y="{y + 13}">{value:g}</text>')
        parts.append(f'<text x="{label_w}" y="{height - 4}">{html.escape(chart.unit)}</text></svg>')
        return "".join(parts)
    width, height, pad = 640, 220, 40
    step = (width - 2 * pad) / max(1, len(points) - 1)
    coords = [(pad + i * step, height - pad - (height - 2 * pad) * max(v, 0.0) / top) for i, (_, v) in enumerate(points)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    parts = [f'<svg class="chart" data-chart="{name}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" role="img">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>',
             f'<polyline class="line" points="{path}"/>']
    for (cx, cy), (label, value) in zip(coords, points):
        parts.append(f'<circle class="dot" cx="{cx:.1f}" cy="{cy:.1f}" r="3"><title>{html.escape(label)}: '
                     f'{value:g}</title></circle>')
    parts.append(f'<text x="{pad}" y="{height - pad + 16}">{html.escape(points[0][0])}</text>')
    parts.append(f'<text x="{width - pad}" y="{height - pad + 16}" text-anchor="end">'
                 f'{html.escape(points[-1][0])}</text>')
    parts.append(f'<text x="{pad}" y="{pad - 10}">{html.escape(chart.unit)} (max {top:g})</text></svg>')
    return "".join(parts)


def render_html(answers: Sequence[Answer], database: str, as_of: int | None) -> str:
    moment = datetime.fromtimestamp(as_of, timezone.utc) if as_of is not None else datetime.now(timezone.utc)
    body = [f"<h1>gridhub report: {html.escape(database)}</h1>",
            f"<p>as of {moment.astimezone(BEIJING).strftime('%Y-%m-%d %H:%M')} Beijing time</p>"]
    for a in answers:
        body.append(f'<section id="{html.escape(a.query.name)}"><h2>{html.escape(a.query.title)}</h2>')
        chart = CHARTS.get(a.query.name)
        if chart:
            body.append(svg_chart(a, chart))
        if a.rows:
            head = "".join(f"<th>{html.escape(c)}</th>" for c in a.columns)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in a.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            body.append('<p class="empty">(no rows)</p>')
        body.append("</section>")
    return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>gridhub report</title>'
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")


def parse_as_of(text: str | None) -> int | None:
    """ISO-8601 (a naive time is Beijing time) or epoch seconds -> epoch seconds."""
    if not text:
        return None
    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=BEIJING)
    return int(moment.timestamp())


@click.command("report")
@click.option("--database", default=None, help="ClickHouse database (default: settings.ch_database)")
@click.option("--as-of", "as_of", default=None, help="answer as of this time (ISO-8601, Beijing time if naive)")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write a self-contained HTML page with charts to this file")
def report(database: str | None, as_of: str | None, html_file: Path | None) -> None:
    """Answer the analysts' kit (deploy/analyst.sql) from ClickHouse: tables, optionally an HTML page."""
    from connectors.clickhouse.backend import DriverBackend

    settings = get_settings()
    db = database or settings.ch_database
    moment = parse_as_of(as_of)
    backend = DriverBackend.from_settings(settings, database=db)
    try:
        answers = run_queries(backend, moment)
    finally:
        backend.close()
    click.echo(render_text(answers))
    if html_file is not None:
        html_file.write_text(render_html(answers, db, moment), encoding="utf-8")
        click.echo(f"wrote {html_file}")
