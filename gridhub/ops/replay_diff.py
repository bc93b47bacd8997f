"""``gridhub replay diff``: what a shadow namespace decided differently from the live one.

A shadow namespace is fed by ``gridhub replay --namespace NS`` and processed
by a worker started with ``GRIDHUB_SHADOW=1 GRIDHUB_NAMESPACE=NS`` (no
webhooks, no live MQTT, no status replies: :mod:`gridhub.core.shadow`), typically
with a changed ``deploy/routing.yaml`` or ``deploy/fusion.yaml``.  Both land
their facts in ClickHouse; this command reads both databases (``FINAL``, so
redelivered rows count once) and compares, per case:

* ``lead`` and ``assist``: the agencies holding the case (active dispatches:
  the latest action per dispatch id is not a withdrawal);
* ``category`` (the case row);
* ``deadline``: the lead's 办结 deadline;
* ``escalations``: how many 督办 the case received;
* ``fusion``: the reports behind the case, when a report joined a different
  set of reports (case ids are derived from the opening report, so the same
  grouping gives the same id on both sides).

Only reports received in ``--from/--to`` (and the cases they belong to)
are compared, so a replayed day is compared with the same day live.
:func:`diff` is pure (unit-tested on dicts); :func:`load_summaries` reads
ClickHouse.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

FIELDS = ("lead", "assist", "category", "deadline", "escalations", "fusion")


@dataclass
class CaseSummary:
    case_id: str
    category: str | None = None
    lead: str | None = None
    assist: list[str] = field(default_factory=list)
    deadline: int | None = None
    escalations: int = 0
    reports: list[str] = field(default_factory=list)  # "source:source_ref", sorted


@dataclass
class CaseDiff:
    case_id: str
    only_in: str | None  # "live" | "shadow" | None (in both)
    changes: dict[str, dict[str, Any]]  # field -> {"live": ..., "shadow": ...}


def _value(summary: CaseSummary, name: str) -> Any:
    return summary.reports if name == "fusion" else getattr(summary, name)


def diff(live: dict[str, CaseSummary], shadow: dict[str, CaseSummary]) -> tuple[list[CaseDiff], dict[str, int]]:
    """Per-case differences (sorted by case id) and totals per field."""
    out: list[CaseDiff] = []
    totals = {name: 0 for name in FIELDS}
    totals.update(cases_live=len(live), cases_shadow=len(shadow), only_live=0, only_shadow=0, cases_changed=0)
    for case_id in sorted(set(live) | set(shadow)):
        a, b = live.get(case_id), shadow.get(case_id)
        if a is None or b is None:
            side = "shadow" if a is None else "live"
            totals[f"only_{side}"] += 1
            present = b if a is None else a
            assert present is not None
            out.append(CaseDiff(case_id, side, {name: {"live": _value(a, name) if a else None,
                                                       "shadow": _value(b, name) if b else None}
                                                for name in FIELDS if _value(present, name) not in (None, [], 0)}))
            if present.reports:
                totals["fusion"] += 1
            continue
        changes = {name: {"live": _value(a, name), "shadow": _value(b, name)} for name in FIELDS
                   if _value(a, name) != _value(b, name)}
        if changes:
            totals["cases_changed"] += 1
            for name in changes:
                totals[name] += 1
            out.append(CaseDiff(case_id, None, changes))
    return out, totals


def load_summaries(client: Any, database: str, since_ms: int | None, until_ms: int | None) -> dict[str, CaseSummary]:
    """The case summaries of ``database`` for reports received in ``[since_ms, until_ms)``."""
    where, params = ["case_id != ''"], {}
    if since_ms is not None:
        where.append("received_at >= toDateTime(%(since)s)")
        params["since"] = since_ms // 1000
    if until_ms is not None:
        where.append("received_at < toDateTime(%(until)s)")
        params["until"] = until_ms // 1000
    out: dict[str, CaseSummary] = {}
    rows = client.execute(f"SELECT case_id, source, source_ref FROM {database}.reports FINAL "
                          f"WHERE {' AND '.join(where)}", params)
    for case_id, source, ref in rows:
        out.setdefault(str(case_id), CaseSummary(str(case_id))).reports.append(f"{source}:{ref}")
    if not out:
        return out
    ids = {"ids": tuple(out)}  # a tuple: clickhouse-driver renders it as (a, b), which IN wants
    for case_id, category in client.execute(f"SELECT case_id, category FROM {database}.cases FINAL "
                                            "WHERE case_id IN %(ids)s", ids):
        out[str(case_id)].category = str(category)
    for case_id, agency, role, deadline in client.execute(
            f"SELECT case_id, agency, role, toUnixTimestamp(deadline) FROM {database}.dispatches FINAL "
            "WHERE case_id IN %(ids)s AND action != 'withdraw' AND reason != 'escalation' "
            "ORDER BY dispatched_at, dispatch_id", ids):
        s = out[str(case_id)]
        if role == "lead":
            s.lead, s.deadline = str(agency), int(deadline) * 1000 if deadline is not None else None
        elif str(agency) not in s.assist:
            s.assist.append(str(agency))
    for case_id, n in client.execute(f"SELECT case_id, count() FROM {database}.case_events FINAL "
                                     "WHERE case_id IN %(ids)s AND event = 'escalated' GROUP BY case_id", ids):
        out[str(case_id)].escalations = int(n)
    for s in out.values():
        s.reports.sort()
        s.assist.sort()
    return out


def render(diffs: list[CaseDiff], totals: dict[str, int], live_db: str, shadow_db: str) -> str:
    from gridhub.ops.common import fmt_ms, render_table

    def cell(name: str, value: Any) -> str:
        if value is None or value == []:
            return "-"
        if name == "deadline":
            return fmt_ms(int(value))
        if isinstance(value, list):
            return ",".join(str(v) for v in value)
        return str(value)

    rows = []
    for d in diffs:
        for name, change in d.changes.items():
            rows.append([d.case_id, d.only_in and f"only {d.only_in}" or name, cell(name, change["live"]),
                         cell(name, change["shadow"])])
    lines = [f"live {live_db} vs shadow {shadow_db}"]
    if rows:
        lines.append(render_table(rows, ["case", "what", "live", "shadow"]))
    lines.append(f"cases: live {totals['cases_live']}, shadow {totals['cases_shadow']}, changed {totals['cases_changed']}"
                 f", only live {totals['only_live']}, only shadow {totals['only_shadow']}")
    lines.append("differences: " + ", ".join(f"{name} {totals[name]}" for name in FIELDS))
    return "\n".join(lines)


def as_json(diffs: list[CaseDiff], totals: dict[str, int], live_db: str, shadow_db: str) -> str:
    return json.dumps({"live": live_db, "shadow": shadow_db, "cases": [asdict(d) for d in diffs], "totals": totals},
                      ensure_ascii=False, sort_keys=True)
