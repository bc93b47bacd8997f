"""``gridhub report``: the county analysts' report, as text tables or one Chinese HTML page.

Who reads it: analysts of a county social-governance centre (县级社会治理中心), in
Chinese, on a closed network.  So the page speaks their names, not the hub's
codes (categories from the taxonomy, agencies from ``deploy/agencies.yaml``,
townships and counties from the reference data), and it is one self-contained
file (inline CSS and SVG, no script, no font or tile download), so it still
shows its charts when mailed around.

The charts answer the 晾晒 questions: which township ranks where in its county
and why (the index's four parts side by side), what each township is dealing
with (a heat table of categories), how volume and satisfaction moved (time
series with labelled axes), where the cases are and which are overdue (an SVG
map drawn from the cases' WGS-84 coordinates), and which agencies sign and
resolve slowly.

``--county`` and ``--from`` / ``--to`` filter every section (default: the 30
days up to ``--as-of``).  ``deploy/analyst.sql`` stays the plain-SQL kit for
clickhouse-client; ``--kit`` prints its answers as before.
"""

from __future__ import annotations

import html
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

import click

from connectors.clickhouse.backend import Backend
from gridhub.clickhouse.queries import (
    SOURCE_NAMES, NamedQuery, Period, agency_name, category_names, division_names, load_queries, pin_now,
    report_queries,
)
from gridhub.core.settings import get_settings
from gridhub.core.timeutil import BEIJING

_DATETIME_TEXT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
#: Default period: the 30 days up to the report's moment (a month of 晾晒).
DEFAULT_DAYS = 30
#: Columns of the category heat table: the most frequent categories; the rest are summed in 其他类别.
HEAT_COLUMNS = 10

# ---------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Answer:
    query: NamedQuery
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


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
    """Add a Chinese name column after each code column (reference data, taxonomy, agency catalogue)."""
    names = division_names()
    extra = {"street_code": ("township", lambda v: names.get(v, v)), "county_code": ("county", lambda v: names.get(v, v)),
             "category": ("category_name", lambda v: category_names().get(v, v)),
             "agency": ("agency_name", agency_name), "source": ("source_name", lambda v: SOURCE_NAMES.get(v, v))}
    out_cols: list[str] = []
    for c in columns:
        out_cols.append(c)
        if c in extra:
            out_cols.append(extra[c][0])
    out_rows = []
    for row in rows:
        values: list[Any] = []
        for c, v in zip(columns, row):
            values.append(display(v))
            if c in extra:
                values.append(extra[c][1](str(v)))
        out_rows.append(tuple(values))
    return out_cols, out_rows


def run_queries(backend: Backend, as_of: int | None = None) -> list[Answer]:
    """Every query of the plain-SQL kit (deploy/analyst.sql), in file order (``gridhub report --kit``)."""
    answers = []
    for query in load_queries():
        result = backend.query(pin_now(query.sql, as_of))
        columns, rows = _with_names(result.columns, result.rows)
        answers.append(Answer(query, columns, rows))
    return answers


#: Chinese section titles of the report, in page order (also the OCR test's headings).
TITLES: dict[str, str] = {
    "overview": "总体情况",
    "township_index": "乡镇（街道）晾晒指数排名",
    "categories_by_township": "各乡镇事件类别分布",
    "reports_hourly": "事件上报趋势",
    "satisfaction_hourly": "回访满意度趋势",
    "map": "案件分布图",
    "agencies": "部门签收与办结时效",
    "overdue_open": "超期未办结案件（按部门）",
    "dedupe_by_source": "多渠道合并情况",
    "loop_events": "闭环处置事件",
}


def run_report(backend: Backend, period: Period) -> dict[str, Answer]:
    """The report's questions for ``period`` (name -> answer with Chinese name columns)."""
    out: dict[str, Answer] = {}
    for name, sql in report_queries(period).items():
        result = backend.query(sql)
        columns, rows = _with_names(result.columns, result.rows)
        out[name] = Answer(NamedQuery(name, TITLES.get(name, name), sql), columns, rows)
    return out


def render_text(answers: Sequence[Answer]) -> str:
    from gridhub.ops.common import render_table

    parts = []
    for a in answers:
        parts.append(f"== {a.query.title}")
        parts.append(render_table([[str(v) for v in row] for row in a.rows], a.columns) if a.rows else "(无数据)")
        parts.append("")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:"Noto Sans CJK SC","Source Han Sans SC","Microsoft YaHei","PingFang SC","WenQuanYi Micro Hei",
"WenQuanYi Zen Hei","Hiragino Sans GB",sans-serif;margin:24px;color:#222;max-width:1180px}
h1{font-size:26px;margin-bottom:4px} h2{font-size:21px;margin-top:34px;border-bottom:2px solid #3b78c4;padding-bottom:4px}
h3{font-size:16px;margin:16px 0 4px} p.meta{color:#555;font-size:14px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left} th{background:#f0f0f0}
td.n{text-align:right} .kpis{display:flex;flex-wrap:wrap;gap:10px}
.kpi{border:1px solid #ccd;border-radius:6px;padding:8px 14px;min-width:110px}
.kpi b{display:block;font-size:22px;color:#1d4f91} .kpi span{font-size:13px;color:#555}
svg.chart{display:block;margin:8px 0} text{font-size:12px;fill:#333} .axis{stroke:#888} .grid{stroke:#e3e3e3}
.empty{color:#888} .legend rect{stroke:none} details{margin:6px 0}
text.town{font-size:15px;fill:#111} text.rank{fill:#888}
"""

#: Colours of the index's parts (closure, on time, satisfaction, no recurrence) and of case states.
PART_COLOURS = ("#3b78c4", "#2e9e6a", "#e0a526", "#8a63c7")
STATE_COLOURS = {"open": "#3b78c4", "overdue": "#d64541", "closed": "#7bb662"}
#: The index's weights (schemas/migrations/0019_township_index_recurrence.sql).
WEIGHTS = (0.3, 0.25, 0.25, 0.2)
PART_NAMES = ("结案率", "按期办结率", "满意率", "未重复发生率")


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _e(text: Any) -> str:
    return html.escape(str(text))


def _pct(value: Any) -> str:
    number = _num(value)
    return "—" if number is None else f"{number * 100:.1f}%"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round axis ticks from 0 to at least ``top`` (1-2-5 steps)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(math.ceil(top / step)) + 1)]


def _table(answer: Answer, columns: Sequence[tuple[str, str]]) -> str:
    """A table of chosen (column, Chinese header) pairs; rates shown as percentages."""
    if not answer.rows:
        return '<p class="empty">无数据</p>'
    head = "".join(f"<th>{_e(h)}</th>" for _, h in columns)
    body = []
    for row in answer.dicts():
        cells = []
        for c, _ in columns:
            v = row.get(c, "")
            text = _pct(v) if c.endswith("_rate") or c.endswith("share") else v
            cells.append(f'<td class="n">{_e(text)}</td>' if isinstance(v, (int, float)) else f"<td>{_e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def overview_html(overview: Answer, events: Answer) -> str:
    row = overview.dicts()[0] if overview.rows else {}
    ev = {r["event"]: r["events"] for r in events.dicts()}
    cases = _num(row.get("cases")) or 0
    resolved = _num(row.get("resolved")) or 0
    reviews = _num(row.get("reviews")) or 0
    kpis = [
        ("案件数", row.get("cases", 0)), ("已签收", ev.get("signed", 0)), ("已办结", row.get("resolved", 0)),
        ("结案率", _pct(row.get("closed", 0) / cases) if cases else "—"),
        ("按期办结率", _pct((_num(row.get("on_time")) or 0) / resolved) if resolved else "—"),
        ("超期", ev.get("overdue", 0)), ("督办", ev.get("escalated", 0)), ("退单", ev.get("returned", 0)),
        ("延期", ev.get("extended", 0)),
        ("满意率", _pct((_num(row.get("satisfied")) or 0) / reviews) if reviews else "—"),
        ("重复发生", row.get("recurring", 0)),
    ]
    return '<div class="kpis">' + "".join(f'<div class="kpi"><b>{_e(v)}</b><span>{_e(k)}</span></div>'
                                          for k, v in kpis) + "</div>"


def township_index_svg(answer: Answer) -> str:
    """Ranked stacked bars per county: each segment is one part's weighted share of the index."""
    rows = answer.dicts()
    if not rows:
        return '<p class="empty" data-chart="township_index">无数据</p>'
    by_county: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_county[str(r["county"])].append(r)
    label_w, bar_w, row_h, head_h = 220, 600, 24, 30
    height = 40 + sum(head_h + row_h * len(v) for v in by_county.values())
    parts = [f'<svg class="chart" data-chart="township_index" xmlns="http://www.w3.org/2000/svg" '
             f'width="{label_w + bar_w + 70}" height="{height}" role="img">']
    x = label_w
    for i, name in enumerate(PART_NAMES):  # legend
        parts.append(f'<g class="legend"><rect x="{x}" y="4" width="12" height="12" fill="{PART_COLOURS[i]}"/>'
                     f'<text x="{x + 16}" y="15">{name}（权重{WEIGHTS[i]:g}）</text></g>')
        x += 150
    y = 30
    for county, items in by_county.items():
        parts.append(f'<text x="4" y="{y + 18}" style="font-size:15px;font-weight:bold">{_e(county)}</text>')
        y += head_h
        for rank, r in enumerate(sorted(items, key=lambda r: -(_num(r["township_index"]) or 0)), start=1):
            values = [_num(r.get("closure_rate")), _num(r.get("on_time_rate")), _num(r.get("satisfaction_rate")),
                      None if _num(r.get("recurrence_rate")) is None else 1 - (_num(r.get("recurrence_rate")) or 0)]
            present = [w for w, v in zip(WEIGHTS, values) if v is not None]
            norm = sum(present) or 1.0
            parts.append(f'<text x="30" y="{y + 15}" text-anchor="end" class="rank">{rank}</text>'
                         f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end" class="town">{_e(r["township"])}</text>')
            bx = float(label_w)
            for i, (w, v) in enumerate(zip(WEIGHTS, values)):
                if v is None:
                    continue
                seg = bar_w * w * v / norm
                parts.append(f'<rect class="bar" x="{bx:.1f}" y="{y + 2}" width="{max(seg, 0.0):.1f}" height="{row_h - 6}" '
                             f'fill="{PART_COLOURS[i]}"><title>{_e(r["township"])} {PART_NAMES[i]} {_pct(v)}</title></rect>')
                bx += seg
            parts.append(f'<text x="{bx + 4:.1f}" y="{y + 15}">{_e(r["township_index"])}</text>')
            y += row_h
    parts.append("</svg>")
    return "".join(parts)


def heat_table(answer: Answer) -> str:
    """Townships x categories, cells shaded by case count (a heat table, not one long list).

    Cases, not reports: one smoke-alarm storm is a dozen reports and one incident."""
    rows = answer.dicts()
    if not rows:
        return '<p class="empty" data-chart="categories_by_township">无数据</p>'
    totals: dict[str, int] = defaultdict(int)
    for r in rows:
        totals[str(r["category_name"])] += int(r["cases"])
    columns = [c for c, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))][:HEAT_COLUMNS]
    cells: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    towns: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        key = (str(r["county"]), str(r["township"]))
        col = str(r["category_name"]) if str(r["category_name"]) in columns else "其他类别"
        cells[key][col] += int(r["cases"])
        towns[key] += int(r["cases"])
    all_columns = columns + (["其他类别"] if any("其他类别" in v for v in cells.values()) else [])
    top = max(n for v in cells.values() for n in v.values()) or 1
    head = "<th>县（市、区）</th><th>乡镇（街道）</th>" + "".join(f"<th>{_e(c)}</th>" for c in all_columns) + "<th>合计</th>"
    body = []
    for key in sorted(towns, key=lambda k: (k[0], -towns[k], k[1])):
        tds = []
        for c in all_columns:
            n = cells[key].get(c, 0)
            alpha = 0.08 + 0.85 * n / top if n else 0
            style = f' style="background:rgba(214,69,65,{alpha:.2f})"' if n else ""
            tds.append(f'<td class="n heat"{style}>{n or ""}</td>')
        body.append(f"<tr><td>{_e(key[0])}</td><td>{_e(key[1])}</td>{''.join(tds)}<td class='n'>{towns[key]}</td></tr>")
    return (f'<table data-chart="categories_by_township"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _bucket(points: list[tuple[datetime, float, float]]) -> tuple[list[tuple[datetime, float, float]], str]:
    """Hourly points summed into 1 h / 6 h / 1 day buckets, so a chart has tens of points, not hundreds."""
    if not points:
        return [], "小时"
    span = points[-1][0] - points[0][0]
    hours = 1 if span <= timedelta(days=2) else 6 if span <= timedelta(days=8) else 24
    out: dict[datetime, list[float]] = {}
    for t, a, b in points:
        key = t.replace(hour=t.hour - t.hour % hours) if hours < 24 else t.replace(hour=0)
        acc = out.setdefault(key, [0.0, 0.0])
        acc[0] += a
        acc[1] += b
    return [(k, v[0], v[1]) for k, v in sorted(out.items())], {1: "小时", 6: "6小时", 24: "日"}[hours]


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value[:19])
        except ValueError:
            return None
    return None


def line_chart(name: str, series: list[tuple[str, str, list[tuple[datetime, float]]]], y_title: str,
               x_title: str, percent: bool = False) -> str:
    """A time-series line chart with both axes labelled, y ticks and several x ticks."""
    all_points = [p for _, _, pts in series for p in pts]
    if not all_points:
        return f'<p class="empty" data-chart="{_e(name)}">无数据</p>'
    width, height, left, right, top_pad, bottom = 900, 300, 70, 50, 30, 60
    t0 = min(t for t, _ in all_points)
    t1 = max(t for t, _ in all_points)
    span = max((t1 - t0).total_seconds(), 3600.0)
    ymax = 1.0 if percent else max(v for _, v in all_points)
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0] if percent else nice_ticks(ymax)
    ytop = ticks[-1] or 1.0
    plot_w, plot_h = width - left - right, height - top_pad - bottom

    def xy(t: datetime, v: float) -> tuple[float, float]:
        return left + plot_w * (t - t0).total_seconds() / span, top_pad + plot_h * (1 - v / ytop)

    parts = [f'<svg class="chart" data-chart="{_e(name)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" role="img">']
    for tick in ticks:
        _, y = xy(t0, tick)
        label = f"{tick * 100:.0f}%" if percent else f"{tick:g}"
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    parts.append(f'<line class="axis" x1="{left}" y1="{top_pad}" x2="{left}" y2="{top_pad + plot_h}"/>'
                 f'<line class="axis" x1="{left}" y1="{top_pad + plot_h}" x2="{width - right}" y2="{top_pad + plot_h}"/>')
    n_x = 6
    for i in range(n_x + 1):
        t = t0 + timedelta(seconds=span * i / n_x)
        x, _ = xy(t, 0)
        parts.append(f'<line class="axis" x1="{x:.1f}" y1="{top_pad + plot_h}" x2="{x:.1f}" y2="{top_pad + plot_h + 5}"/>'
                     f'<text x="{x:.1f}" y="{top_pad + plot_h + 18}" text-anchor="middle">{t.strftime("%m-%d %H:%M")}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 12}" text-anchor="middle">{_e(x_title)}</text>')
    parts.append(f'<text x="16" y="{top_pad + plot_h / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 16 {top_pad + plot_h / 2})">{_e(y_title)}</text>')
    lx = left + 10
    for label, colour, pts in series:
        coords = [xy(t, v) for t, v in pts]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in coords)}"/>')
        for (x, y), (t, v) in zip(coords, pts):
            shown = f"{v * 100:.1f}%" if percent else f"{v:g}"
            parts.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}">'
                         f'<title>{t.strftime("%Y-%m-%d %H:%M")} {_e(label)} {shown}</title></circle>')
        parts.append(f'<g class="legend"><rect x="{lx}" y="8" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{lx + 16}" y="19">{_e(label)}</text></g>')
        lx += 140
    parts.append("</svg>")
    return "".join(parts)


def convex_hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Andrew's monotone chain: the smallest convex polygon around the points (counter-clockwise)."""
    pts = sorted(set(points))
    if len(pts) <= 2:
        return pts

    def cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, float]] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def map_svg(answer: Answer) -> str:
    """Cases as points (equirectangular projection of WGS-84) on the area their county's cases cover
    (convex hull), township centres labelled, no tiles: the hub has no boundary data, and a tile
    server is not reachable from the centre's network."""
    rows = [r for r in answer.dicts() if _num(r.get("lng")) is not None and _num(r.get("lat")) is not None]
    if not rows:
        return '<p class="empty" data-chart="map">无数据</p>'
    lngs = [float(r["lng"]) for r in rows]
    lats = [float(r["lat"]) for r in rows]
    mid_lat = math.radians((min(lats) + max(lats)) / 2)
    width, height, pad = 900, 640, 30
    span_x = max((max(lngs) - min(lngs)) * math.cos(mid_lat), 1e-3)
    span_y = max(max(lats) - min(lats), 1e-3)
    scale = min((width - 2 * pad) / span_x, (height - 2 * pad - 30) / span_y)

    def xy(lng: float, lat: float) -> tuple[float, float]:
        return pad + (lng - min(lngs)) * math.cos(mid_lat) * scale, height - pad - (lat - min(lats)) * scale

    parts = [f'<svg class="chart" data-chart="map" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" role="img" style="background:#f7f9fb;border:1px solid #dde">']
    towns: dict[str, list[tuple[float, float]]] = defaultdict(list)
    counties: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        counties[str(r["county"])].append(xy(float(r["lng"]), float(r["lat"])))
    for county, pts in sorted(counties.items()):  # the area each county's cases cover, named
        hull = convex_hull(pts)
        if len(hull) >= 3:
            parts.append(f'<polygon class="area" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in hull)}" '
                         f'fill="#e3ebf5" stroke="#9db4d3" stroke-width="1.5" stroke-linejoin="round"/>')
        top = min(pts, key=lambda p: p[1])
        parts.append(f'<text x="{top[0]:.1f}" y="{max(14.0, top[1] - 14):.1f}" style="font-size:16px;'
                     f'font-weight:bold;fill:#1d4f91">{_e(county)}</text>')
    counts = {"open": 0, "overdue": 0, "closed": 0}
    for r in rows:
        state = "closed" if int(r.get("is_closed") or 0) else "overdue" if int(r.get("ev_overdue") or 0) else "open"
        counts[state] += 1
        x, y = xy(float(r["lng"]), float(r["lat"]))
        towns[str(r["township"])].append((x, y))
        parts.append(f'<circle class="dot case-{state}" cx="{x:.1f}" cy="{y:.1f}" r="3.2" fill="{STATE_COLOURS[state]}" '
                     f'fill-opacity="0.75"><title>{_e(r["township"])} {_e(r["category_name"])}</title></circle>')
    placed: list[tuple[float, float, float, float]] = []
    for town, pts in sorted(towns.items(), key=lambda kv: -len(kv[1])):  # busiest townships labelled first
        cx = sorted(p[0] for p in pts)[len(pts) // 2]  # the centre (median) of a township's cases
        cy = sorted(p[1] for p in pts)[len(pts) // 2]
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="none" stroke="#333">'
                     f'<title>{_e(town)}</title></circle>')
        w, h = 13.0 * len(town) + 4, 16.0  # 13 px per CJK character at 13 px
        for dx, dy in ((6, -6), (6, 16), (-w - 6, -6), (-w - 6, 16)):  # right-above, right-below, left...
            box = (cx + dx, cy + dy - 13, cx + dx + w, cy + dy - 13 + h)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                placed.append(box)
                parts.append(f'<text x="{box[0]:.1f}" y="{cy + dy:.1f}" style="font-size:13px;font-weight:bold;'
                             f'paint-order:stroke;stroke:#fff;stroke-width:3px">{_e(town)}</text>')
                break  # no free spot: the circle keeps its name as a tooltip
    km = 1000 / 111_320 * scale  # pixels per km: one degree of latitude is 111.32 km
    bar_km = next((k for k in (1, 2, 5, 10, 20, 50) if k * km >= 60), 50)
    parts.append(f'<line x1="{pad}" y1="{height - 12}" x2="{pad + bar_km * km:.1f}" y2="{height - 12}" '
                 f'stroke="#333" stroke-width="3"/><text x="{pad + bar_km * km + 6:.1f}" y="{height - 8}">{bar_km} 公里</text>')
    lx = width - 330
    for state, label in (("open", "办理中"), ("overdue", "超期"), ("closed", "已办结")):
        parts.append(f'<g class="legend"><circle cx="{lx}" cy="16" r="6" fill="{STATE_COLOURS[state]}"/>'
                     f'<text x="{lx + 10}" y="21">{label} {counts[state]}</text></g>')
        lx += 105
    parts.append("</svg>")
    return "".join(parts)


def agency_svg(answer: Answer) -> str:
    """Median hours to 签收 and to 办结 per agency, side by side (the 15 busiest)."""
    rows = [r for r in answer.dicts() if _num(r.get("resolve_hours_p50")) is not None
            or _num(r.get("sign_hours_p50")) is not None][:15]
    if not rows:
        return '<p class="empty" data-chart="agencies">无数据</p>'
    label_w, bar_w, row_h = 230, 520, 26
    top = max(max(_num(r.get("resolve_hours_p50")) or 0, _num(r.get("sign_hours_p50")) or 0) for r in rows) or 1.0
    ticks = nice_ticks(top)
    height = 50 + row_h * len(rows) + 30
    parts = [f'<svg class="chart" data-chart="agencies" xmlns="http://www.w3.org/2000/svg" '
             f'width="{label_w + bar_w + 80}" height="{height}" role="img">',
             f'<g class="legend"><rect x="{label_w}" y="4" width="12" height="12" fill="{PART_COLOURS[0]}"/>'
             f'<text x="{label_w + 16}" y="15">签收用时中位数（小时）</text>'
             f'<rect x="{label_w + 200}" y="4" width="12" height="12" fill="{PART_COLOURS[1]}"/>'
             f'<text x="{label_w + 216}" y="15">办结用时中位数（小时）</text></g>']
    y0 = 30
    for tick in ticks:
        x = label_w + bar_w * tick / ticks[-1]
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + row_h * len(rows)}"/>'
                     f'<text x="{x:.1f}" y="{y0 + row_h * len(rows) + 14}" text-anchor="middle">{tick:g}</text>')
    parts.append(f'<text x="{label_w + bar_w / 2}" y="{height - 4}" text-anchor="middle">小时</text>')
    for i, r in enumerate(rows):
        y = y0 + i * row_h
        parts.append(f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">{_e(r["agency_name"])}</text>')
        for j, col in enumerate(("sign_hours_p50", "resolve_hours_p50")):
            v = _num(r.get(col)) or 0.0
            parts.append(f'<rect class="bar" x="{label_w}" y="{y + 3 + j * 10}" width="{max(1.0, bar_w * v / ticks[-1]):.1f}" '
                         f'height="9" fill="{PART_COLOURS[j]}"><title>{_e(r["agency_name"])} {v:g} 小时</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def overdue_svg(answer: Answer) -> str:
    rows = answer.dicts()[:15]
    if not rows:
        return '<p class="empty" data-chart="overdue_open">无超期未办结案件</p>'
    label_w, bar_w, row_h = 230, 420, 22
    top = max(int(r["open_overdue"]) for r in rows)
    parts = [f'<svg class="chart" data-chart="overdue_open" xmlns="http://www.w3.org/2000/svg" '
             f'width="{label_w + bar_w + 60}" height="{row_h * len(rows) + 10}" role="img">']
    for i, r in enumerate(rows):
        y = 4 + i * row_h
        w = max(1.0, bar_w * int(r["open_overdue"]) / top)
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{_e(r["agency_name"])}</text>'
                     f'<rect class="bar" x="{label_w}" y="{y}" width="{w:.1f}" height="{row_h - 6}" fill="#d64541"/>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 14}">{r["open_overdue"]} 件</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(answers: dict[str, Answer], period: Period, title_area: str) -> str:
    """The whole page: Chinese title, period and filters, one section per question."""
    start = datetime.fromtimestamp(period.start, BEIJING).strftime("%Y-%m-%d %H:%M")
    end = datetime.fromtimestamp(period.end, BEIJING).strftime("%Y-%m-%d %H:%M")
    a = answers

    def section(name: str, *content: str) -> str:
        return f'<section id="{name}"><h2>{_e(TITLES[name])}</h2>{"".join(content)}</section>'

    hourly = [(t, float(r["reports"]), float(r["cases"])) for r in a["reports_hourly"].dicts()
              if (t := _as_datetime(r["hour"])) is not None]
    volume, unit = _bucket(hourly)
    reviews = [(t, float(r["reviews"]), float(r["satisfied"])) for r in a["satisfaction_hourly"].dicts()
               if (t := _as_datetime(r["hour"])) is not None]
    satisfaction, s_unit = _bucket(reviews)
    body = [
        f"<h1>{_e(title_area)}基层治理“晾晒”分析报告</h1>",
        f'<p class="meta">统计区间：{start} 至 {end}（北京时间）。数据来源：基层治理四平台、12345热线、物联感知设备，'
        f"经 gridhub 融合与闭环处置后写入 ClickHouse。</p>",
        section("overview", overview_html(a["overview"], a["loop_events"])),
        section("township_index",
                "<p>晾晒指数 = 100 ×（0.3×结案率 + 0.25×按期办结率 + 0.25×满意率 + 0.2×（1 − 重复发生率））÷ 有数据的权重之和。"
                "按县（市、区）分组，组内按指数排名；色段为各项得分。</p>",
                township_index_svg(a["township_index"]),
                "<details><summary>明细表</summary>",
                _table(a["township_index"], [("county", "县（市、区）"), ("township", "乡镇（街道）"), ("cases", "案件数"),
                                             ("closure_rate", "结案率"), ("on_time_rate", "按期办结率"),
                                             ("satisfaction_rate", "满意率"), ("recurrence_rate", "重复发生率"),
                                             ("township_index", "晾晒指数")]), "</details>"),
        section("categories_by_township", "<p>各乡镇（街道）案件数，按类别（前十类，其余合并为“其他类别”）；颜色越深件数越多。</p>",
                heat_table(a["categories_by_township"])),
        section("reports_hourly",
                line_chart("reports_hourly", [("上报数", "#3b78c4", [(t, v) for t, v, _ in volume]),
                                              ("案件数", "#d64541", [(t, c) for t, _, c in volume])],
                           f"件数（每{unit}）", "时间（北京时间）")),
        section("satisfaction_hourly",
                line_chart("satisfaction_hourly", [("满意率", "#2e9e6a", [(t, s / n) for t, n, s in satisfaction if n])],
                           f"满意率（每{s_unit}，满意+基本满意）", "时间（北京时间）", percent=True)),
        section("map", "<p>案件位置（WGS-84 坐标），圆圈为各乡镇（街道）案件中心。</p>", map_svg(a["map"])),
        section("agencies", agency_svg(a["agencies"]),
                _table(a["agencies"], [("agency_name", "部门"), ("dispatched", "派发"), ("signed", "签收"),
                                       ("resolved", "办结"), ("sign_hours_p50", "签收用时中位数(小时)"),
                                       ("sign_hours_p90", "签收用时P90"), ("resolve_hours_p50", "办结用时中位数(小时)"),
                                       ("resolve_hours_p90", "办结用时P90"), ("on_time_rate", "按期办结率"),
                                       ("overdue", "超期"), ("returned", "退单")])),
        # None overdue is an answer ("无超期未办结案件", said by the chart), not missing data: no empty table.
        section("overdue_open", overdue_svg(a["overdue_open"]),
                _table(a["overdue_open"], [("agency_name", "部门"), ("open_overdue", "超期未办结"),
                                           ("resolve_clock", "办结超期"), ("sign_clock_only", "仅签收超期"),
                                           ("oldest_dispatch", "最早派发时间")]) if a["overdue_open"].rows else ""),
        section("dedupe_by_source", _table(a["dedupe_by_source"], [("source_name", "渠道"), ("reports", "上报数"),
                                                                   ("linked_cases", "对应案件数"),
                                                                   ("per_case", "每案件上报数")])),
    ]
    return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>{_e(title_area)}晾晒分析报告</title>'
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


def make_period(as_of: int | None, start: str | None, end: str | None, counties: str) -> Period:
    """``--from`` / ``--to`` (dates or times, Beijing) and ``--county``; default the 30 days before as-of."""
    end_s = parse_as_of(end) if end else (as_of if as_of is not None else int(datetime.now(timezone.utc).timestamp()))
    assert end_s is not None
    if end and len(end) == 10:  # a bare date: the whole day is included
        end_s += 86400
    start_s = parse_as_of(start) if start else end_s - DEFAULT_DAYS * 86400
    assert start_s is not None
    if start_s >= end_s:
        raise click.BadParameter(f"--from must be before --to")
    codes = tuple(c.strip() for c in counties.split(",") if c.strip())
    bad = [c for c in codes if not (c.isdigit() and len(c) == 6)]
    if bad:
        raise click.BadParameter(f"--county takes 6-digit county codes, got {', '.join(bad)}")
    return Period(start_s, end_s, codes)


def area_title(period: Period) -> str:
    names = division_names()
    if period.counties:
        return "、".join(names.get(c, c) for c in period.counties)
    return "全域"


@click.command("report")
@click.option("--database", default=None, help="ClickHouse database (default: settings.ch_database)")
@click.option("--as-of", "as_of", default=None, help="answer as of this time (ISO-8601, Beijing time if naive)")
@click.option("--from", "start", default=None, help="period start, date or time (Beijing); default 30 days before --to")
@click.option("--to", "end", default=None, help="period end (a bare date includes that day); default --as-of / now")
@click.option("--county", "county", default="", help="comma-separated county codes (default: all)")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write a self-contained HTML page with charts to this file")
@click.option("--kit", is_flag=True, help="print the answers of deploy/analyst.sql (the plain-SQL kit) instead")
def report(database: str | None, as_of: str | None, start: str | None, end: str | None, county: str,
           html_file: Path | None, kit: bool) -> None:
    """The county analysts' report from ClickHouse: tables, optionally a Chinese HTML page with charts."""
    from connectors.clickhouse.backend import DriverBackend

    settings = get_settings()
    db = database or settings.ch_database
    moment = parse_as_of(as_of)
    period = make_period(moment, start, end, county)
    backend = DriverBackend.from_settings(settings, database=db)
    try:
        if kit:
            click.echo(render_text(run_queries(backend, moment)))
            return
        answers = run_report(backend, period)
    finally:
        backend.close()
    click.echo(render_text(list(answers.values())))
    if html_file is not None:
        html_file.write_text(render_html(answers, period, area_title(period)), encoding="utf-8")
        click.echo(f"wrote {html_file}")
