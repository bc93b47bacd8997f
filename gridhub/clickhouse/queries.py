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


@lru_cache(maxsize=1)
def city_names() -> dict[str, str]:
    """City codes (4 digits) -> Chinese names, from the packaged reference data."""
    with (_REFERENCE / "cities.csv").open(encoding="utf-8", newline="") as fh:
        return {row["code"]: row["name"] for row in csv.DictReader(fh)}


@lru_cache(maxsize=1)
def category_names() -> dict[str, str]:
    """Taxonomy codes -> Chinese names, from ``deploy/categories.yaml`` (the hub's own taxonomy)."""
    import yaml

    doc = yaml.safe_load((REPO_ROOT / "deploy" / "categories.yaml").read_text(encoding="utf-8")) or {}
    return {str(c["code"]): str(c["name"]) for c in doc.get("categories", []) if "code" in c and "name" in c}


@lru_cache(maxsize=1)
def _agency_short_names() -> dict[str, str]:
    import yaml

    doc = yaml.safe_load((REPO_ROOT / "deploy" / "agencies.yaml").read_text(encoding="utf-8")) or {}
    return {str(k): str(v) for k, v in (doc.get("county_agencies") or {}).items()}


def agency_name(agency: str) -> str:
    """``330502.zhzf`` -> 吴兴区综合行政执法: the county's name and the agency's from deploy/agencies.yaml.

    ``<county>.town-<streetCode>`` is the township's 四平台; ``<city>00.zzzx`` the city's centre.
    """
    code, _, short = agency.partition(".")
    names = division_names()
    if short.startswith("town-"):
        street = short.removeprefix("town-")
        return f"{names.get(street, street)}四平台"
    base = _agency_short_names().get(short, short)
    if code.endswith("00") and code[:4] in city_names():
        return f"{city_names()[code[:4]]}{base.removeprefix('县级')}"
    return f"{names.get(code, code)}{base}"


SOURCE_NAMES = {"four-platforms": "基层治理四平台", "hotline-12345": "12345热线", "sensors": "物联感知设备"}


@dataclass(frozen=True)
class Period:
    """The report's filters: ``[start, end)`` in epoch seconds and optional county codes."""

    start: int
    end: int
    counties: tuple[str, ...] = ()

    def where(self, time_column: str, county_column: str = "county_code") -> str:
        clause = f"{time_column} >= toDateTime({int(self.start)}) AND {time_column} < toDateTime({int(self.end)})"
        if self.counties:
            codes = ", ".join(f"'{c}'" for c in self.counties if c.isdigit())
            clause += f" AND {county_column} IN ({codes})"
        return clause


#: The township index over any period, from the per-case parts (schemas/migrations/0019): the same
#: formula as the view township_index_monthly, for the report's --from/--to instead of a month.
TOWNSHIP_INDEX_SQL = """
SELECT county_code, street_code, cases, closed, closure_rate, resolved, on_time, on_time_rate,
       reviews, satisfied, satisfaction_rate, recurring, recurrence_rate,
       round(100 * (0.3 * closure_rate + 0.25 * ifNull(on_time_rate, 0) + 0.25 * ifNull(satisfaction_rate, 0)
                    + 0.2 * (1 - recurrence_rate))
             / (0.3 + 0.25 * (resolved > 0) + 0.25 * (reviews > 0) + 0.2), 1) AS township_index
FROM
(
    SELECT county_code, street_code,
           count() AS cases,
           countIf(is_closed) AS closed,
           round(closed / cases, 4) AS closure_rate,
           countIf(ev_resolved) AS resolved,
           countIf(ev_resolved AND NOT ev_resolve_overdue) AS on_time,
           if(resolved = 0, NULL, round(on_time / resolved, 4)) AS on_time_rate,
           countIf(ev_satisfaction != '') AS reviews,
           countIf(ev_satisfaction IN ('满意', '基本满意')) AS satisfied,
           if(reviews = 0, NULL, round(satisfied / reviews, 4)) AS satisfaction_rate,
           countIf(recurs = 1) AS recurring,
           round(recurring / cases, 4) AS recurrence_rate
    FROM case_index_parts
    WHERE {where}
    GROUP BY county_code, street_code
)
ORDER BY county_code, township_index DESC, street_code
"""


def report_queries(period: Period) -> dict[str, str]:
    """The HTML / text report's questions for one period and set of counties (name -> SQL)."""
    p = period
    return {
        "overview": f"""
SELECT count() AS cases, countIf(is_closed) AS closed, countIf(ev_resolved) AS resolved,
       countIf(ev_resolved AND NOT ev_resolve_overdue) AS on_time, countIf(ev_overdue) AS overdue,
       countIf(ev_satisfaction != '') AS reviews, countIf(ev_satisfaction IN ('满意', '基本满意')) AS satisfied,
       countIf(recurs = 1) AS recurring
FROM case_index_parts WHERE {p.where('first_seen')}""",
        "loop_events": f"""
SELECT event, count() AS events FROM case_events FINAL
WHERE {p.where('at')} GROUP BY event ORDER BY event""",
        "township_index": TOWNSHIP_INDEX_SQL.format(where=p.where("first_seen")),
        "categories_by_township": f"""
SELECT county_code, street_code, category, count() AS reports, uniqExact(case_id) AS cases
FROM reports FINAL
WHERE kind != 'recover' AND street_code != '' AND {p.where('reported_at')}
GROUP BY county_code, street_code, category
ORDER BY county_code, street_code, category""",
        "reports_hourly": f"""
SELECT toStartOfHour(reported_at) AS hour, count() AS reports, uniqExact(case_id) AS cases
FROM reports FINAL WHERE kind != 'recover' AND {p.where('reported_at')}
GROUP BY hour ORDER BY hour""",
        "satisfaction_hourly": f"""
SELECT toStartOfHour(at) AS hour, count() AS reviews, countIf(satisfaction IN ('满意', '基本满意')) AS satisfied
FROM case_events FINAL WHERE event = 'reviewed' AND satisfaction != '' AND {p.where('at')}
GROUP BY hour ORDER BY hour""",
        "agencies": f"""
SELECT agency, count() AS dispatched, countIf(is_signed) AS signed, countIf(is_resolved) AS resolved,
       round(quantileExact(0.5)(sign_hours), 2) AS sign_hours_p50,
       round(quantileExact(0.9)(sign_hours), 2) AS sign_hours_p90,
       round(quantileExact(0.5)(resolve_hours), 2) AS resolve_hours_p50,
       round(quantileExact(0.9)(resolve_hours), 2) AS resolve_hours_p90,
       countIf(is_resolved AND NOT resolve_overdue) AS on_time,
       if(resolved = 0, NULL, round(on_time / resolved, 4)) AS on_time_rate,
       countIf(sign_overdue OR resolve_overdue) AS overdue, countIf(handed_back) AS returned
FROM dispatch_facts
WHERE dispatch_role = 'lead' AND {p.where('dispatched_time', 'substring(agency, 1, 6)')}
GROUP BY agency ORDER BY dispatched DESC, agency""",
        "overdue_open": f"""
SELECT agency, count() AS open_overdue, countIf(resolve_overdue) AS resolve_clock,
       countIf(sign_overdue AND NOT resolve_overdue) AS sign_clock_only, min(dispatched_time) AS oldest_dispatch
FROM overdue_open WHERE {p.where('dispatched_time', 'substring(agency, 1, 6)')}
GROUP BY agency ORDER BY open_overdue DESC, agency""",
        "dedupe_by_source": f"""
SELECT source, count() AS reports, uniqExact(case_id) AS linked_cases, round(reports / linked_cases, 3) AS per_case
FROM reports FINAL WHERE kind != 'recover' AND case_id != '' AND {p.where('reported_at')}
GROUP BY source ORDER BY source""",
        "map": f"""
SELECT case_id, county_code, street_code, category, lng, lat, is_closed, ev_overdue
FROM case_index_parts WHERE lng IS NOT NULL AND lat IS NOT NULL AND {p.where('first_seen')}""",
    }
