"""Routing rules: data in ``deploy/routing.yaml``, validated, matched, reloaded.

A rule matches a case on category (list), area (county / township code
prefixes), source (list; any of the case's sources) and a minimum severity,
and names a lead agency, assisting agencies and the 签收 / 办结 deadlines.
The first matching rule wins.  No rule matching means triage at the county
centre (``zzzx``), never nowhere; a major case (severity 3) also goes to
``zzzx``.  A 退单 (return) moves the case to the *next* matching rule whose
lead has not returned it, then to ``zzzx``, then to the city centre.

Everything wrong with the file is a :class:`ConfigError` that names the
file and line (start-up fails; a live reload keeps the last good rules):
unknown keys, agencies, categories, sources or areas, bad durations, and
unreachable rules.  A rule is unreachable when an earlier rule matches every
case it matches (the earlier one *covers* it: each of its conditions is
absent or wider), because the first match always wins; such a rule is a
mistake in ordering, so it is refused instead of silently ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from gridhub.core.logging import get_logger
from gridhub.core.topics import SOURCES
from gridhub.core.agencies import CENTRE, AgencyCatalog, load_catalog
from gridhub.core.yamlconf import ConfigError, LineDict, format_duration_ms, line_of, load_yaml, parse_duration_ms
from streams.routing.businesstime import CLOCKS, DEFAULT_HOURS, NATURAL, WorkingHours

log = get_logger(__name__)

TOWN = "town"  # rule shorthand for the case's own township platform, town-<streetCode>
MAJOR_SEVERITY = 3  # Report.severity: 1 一般, 2 紧急, 3 特急 (schemas/avro/Report.avsc)
_TOP_KEYS = {"agencies", "categories", "defaults", "triage", "major_severity", "escalation", "extension",
             "review", "clock", "retention", "rules"}
_RULE_KEYS = {"id", "match", "lead", "assist", "sign", "resolve", "note", "clock"}
_MATCH_KEYS = {"category", "area", "source", "severity_min"}


# --------------------------------------------------------------------------- model
@dataclass(frozen=True)
class Match:
    """Conditions of one rule; ``None`` means "any"."""

    categories: frozenset[str] | None = None
    areas: tuple[str, ...] | None = None
    sources: frozenset[str] | None = None
    severity_min: int = 1

    def matches(self, case: Mapping[str, Any]) -> bool:
        if self.categories is not None and case.get("category") not in self.categories:
            return False
        if self.sources is not None and not self.sources.intersection(case.get("sources") or ()):
            return False
        if int(case.get("severity") or 1) < self.severity_min:
            return False
        if self.areas is not None:
            code = case.get("street_code") or case.get("county_code") or ""
            if not any(code.startswith(p) for p in self.areas):
                return False
        return True

    def covers(self, other: Match) -> bool:
        """True when every case ``other`` matches is matched by ``self`` too."""
        if self.categories is not None and (other.categories is None or not other.categories <= self.categories):
            return False
        if self.sources is not None and (other.sources is None or not other.sources <= self.sources):
            return False
        if self.severity_min > other.severity_min:
            return False
        if self.areas is not None:
            if other.areas is None or not all(any(o.startswith(p) for p in self.areas) for o in other.areas):
                return False
        return True


@dataclass(frozen=True)
class Rule:
    id: str
    line: int
    match: Match
    lead: str
    assist: tuple[str, ...]
    sign_ms: int
    resolve_ms: int
    clock: str = NATURAL  # natural | working: how this rule's deadlines count (issue 15)


@dataclass(frozen=True)
class Assignment:
    """One agency's part in a case: who, in which role, why, with which deadlines."""

    agency: str
    role: str  # lead | assist
    reason: str  # rule:<id> | triage | severity
    rule: str | None
    sign_ms: int
    resolve_ms: int
    clock: str = NATURAL  # natural | working: how sign_ms / resolve_ms count (streams/routing/businesstime.py)


@dataclass(frozen=True)
class Plan:
    rule_index: int  # index of the matched rule, -1 for triage
    assignments: tuple[Assignment, ...]  # lead first

    @property
    def lead(self) -> Assignment:
        return self.assignments[0]


@dataclass(frozen=True)
class RuleSet:
    """A validated rules file and the catalog it was checked against."""

    path: Path
    rules: tuple[Rule, ...]
    catalog: AgencyCatalog
    categories: frozenset[str]
    categories_path: Path
    default_sign_ms: int
    default_resolve_ms: int
    triage_sign_ms: int
    triage_resolve_ms: int
    major_severity: int = MAJOR_SEVERITY
    escalation_grace_ms: int = 24 * 3600 * 1000
    max_extensions: int = 2
    max_extension_ms: int = 7 * 24 * 3600 * 1000
    review_window_ms: int = 3 * 24 * 3600 * 1000
    scan_interval_ms: int = 5000
    mtime_ns: int = 0
    rule_index: dict[str, int] = field(default_factory=dict)
    working_hours: WorkingHours = DEFAULT_HOURS  # clock.working_hours: the periods of a working day
    retention_closed_ms: int = 30 * 24 * 3600 * 1000  # retention.closed: a closed case's routing state is dropped then
    reopen_unsatisfied: bool = False  # review.reopen_unsatisfied: a 不满意 回访 reopens (重办) the case (issue 15)

    # ------------------------------------------------------------------ routing
    def _resolve(self, case: Mapping[str, Any], code: str) -> str:
        county = str(case["county_code"])
        if code == TOWN:
            street = case.get("street_code")
            if street and self.catalog.exists(self.catalog.town(street)):
                return self.catalog.town(street)
            return self.catalog.centre(county)  # township unknown: the county centre decides
        return self.catalog.county_agency(county, code)

    def plan(self, case: Mapping[str, Any], skip: Iterable[str] = (), after: int = -1) -> Plan | None:
        """Who gets ``case``: the first rule after index ``after`` whose lead is not in ``skip``.

        ``None`` only when every level up to the city centre is in ``skip``
        (all of them returned the case).
        """
        skipped = set(skip)
        county = str(case["county_code"])
        assignments: list[Assignment] = []
        index = -1
        for i, rule in enumerate(self.rules):
            if i <= after or not rule.match.matches(case):
                continue
            lead = self._resolve(case, rule.lead)
            if lead in skipped:
                continue
            index = i
            reason = f"rule:{rule.id}"
            assignments.append(Assignment(lead, "lead", reason, rule.id, rule.sign_ms, rule.resolve_ms, rule.clock))
            for code in rule.assist:
                agency = self._resolve(case, code)
                if agency != lead and agency not in {a.agency for a in assignments}:
                    assignments.append(Assignment(agency, "assist", reason, rule.id, rule.sign_ms, rule.resolve_ms,
                                                  rule.clock))
            break
        if not assignments:
            for agency in (self.catalog.centre(county), self.catalog.city_centre(county)):
                if agency not in skipped:
                    assignments.append(Assignment(agency, "lead", "triage", None,
                                                  self.triage_sign_ms, self.triage_resolve_ms))
                    break
            else:
                return None
        centre = self.catalog.centre(county)
        lead_agency = assignments[0].agency
        if (int(case.get("severity") or 1) >= self.major_severity and lead_agency != centre
                and not self.catalog.is_city_centre(lead_agency)
                and centre not in {a.agency for a in assignments}):
            first = assignments[0]
            assignments.append(Assignment(centre, "assist", "severity", first.rule, first.sign_ms, first.resolve_ms,
                                          first.clock))
        return Plan(index, tuple(assignments))

    def escalation_chain(self, case: Mapping[str, Any]) -> list[str]:
        """督办 levels, lowest first: township platform, county centre, city centre."""
        county = str(case["county_code"])
        chain = []
        street = case.get("street_code")
        if street and self.catalog.exists(self.catalog.town(street)):
            chain.append(self.catalog.town(street))
        chain += [self.catalog.centre(county), self.catalog.city_centre(county)]
        return chain

    def describe(self) -> str:
        return f"{len(self.rules)} rules from {self.path}"


# --------------------------------------------------------------------------- loading
def _duration(path: Path, where: Any, key: Any, default: int) -> int:
    if not isinstance(where, dict) or key not in where:
        return default
    try:
        value = parse_duration_ms(where[key])
    except ValueError as exc:
        raise ConfigError(path, line_of(where, key), f"{key}: {exc}") from exc
    if value <= 0:
        raise ConfigError(path, line_of(where, key), f"{key}: must be longer than 0s")
    return value


def _str_list(path: Path, parent: Any, key: str, what: str) -> list[str]:
    value = parent[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, (str, int)) for v in value):
        raise ConfigError(path, line_of(parent, key), f"{what}: expected a non-empty list of strings")
    return [str(v) for v in value]


def _load_categories(path: Path) -> frozenset[str]:
    """The category codes of the taxonomy file, validated in full (its errors name file:line too)."""
    from streams.ingest.taxonomy import Taxonomy

    return frozenset(Taxonomy.load(path).categories)


def _sibling(path: Path, doc: Mapping[str, Any], key: str, default: str) -> Path:
    name = doc.get(key, default)
    if not isinstance(name, str):
        raise ConfigError(path, line_of(doc, key), f"{key}: expected a file name")
    target = Path(name)
    return target if target.is_absolute() else path.parent / target


def _area_known(catalog: AgencyCatalog, prefix: str) -> bool:
    if len(prefix) <= 6:
        return any(code.startswith(prefix) for code in catalog.counties)
    return any(code.startswith(prefix) for code in catalog.townships)


def _agency_code(path: Path, catalog: AgencyCatalog, code: Any, line: int | None, rule_id: str) -> str:
    if code == TOWN or (isinstance(code, str) and code in catalog.codes):
        return str(code)
    raise ConfigError(path, line, f"rule {rule_id!r}: unknown agency {code!r} "
                                  f"(one of {', '.join(sorted(catalog.codes))} or 'town')")


def _flag(path: Path, where: Any, key: str, default: bool = False) -> bool:
    if not isinstance(where, dict) or key not in where:
        return default
    if not isinstance(where[key], bool):
        raise ConfigError(path, line_of(where, key), f"{key}: expected true or false")
    return bool(where[key])


def _clock(path: Path, where: Any, key: str, default: str) -> str:
    """``clock: natural | working`` (issue 15, business time)."""
    if not isinstance(where, dict) or key not in where:
        return default
    value = where[key]
    if value not in CLOCKS:
        raise ConfigError(path, line_of(where, key), f"{key}: expected one of {', '.join(CLOCKS)}, got {value!r}")
    return str(value)


def _parse_rule(path: Path, raw: Any, line: int, catalog: AgencyCatalog, categories: frozenset[str],
                default_sign: int, default_resolve: int, index: int, default_clock: str = NATURAL) -> Rule:
    if not isinstance(raw, dict):
        raise ConfigError(path, line, f"rule #{index + 1}: expected a mapping")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        raise ConfigError(path, line, f"rule #{index + 1}: 'id' (a string) is required")
    for key in raw:
        if key not in _RULE_KEYS:
            raise ConfigError(path, line_of(raw, key), f"rule {rule_id!r}: unknown key {key!r} "
                                                       f"(allowed: {', '.join(sorted(_RULE_KEYS))})")
    match_raw = raw.get("match") if raw.get("match") is not None else LineDict()
    if not isinstance(match_raw, dict):
        raise ConfigError(path, line_of(raw, "match"), f"rule {rule_id!r}: 'match' must be a mapping")
    for key in match_raw:
        if key not in _MATCH_KEYS:
            raise ConfigError(path, line_of(match_raw, key), f"rule {rule_id!r}: unknown match key {key!r} "
                                                             f"(allowed: {', '.join(sorted(_MATCH_KEYS))})")
    cats = srcs = None
    areas: tuple[str, ...] | None = None
    if "category" in match_raw:
        cats = frozenset(_str_list(path, match_raw, "category", f"rule {rule_id!r} category"))
        for cat in sorted(cats):
            if cat not in categories:
                raise ConfigError(path, line_of(match_raw, "category"),
                                  f"rule {rule_id!r}: unknown category {cat!r} (see the categories file)")
    if "source" in match_raw:
        srcs = frozenset(_str_list(path, match_raw, "source", f"rule {rule_id!r} source"))
        for src in sorted(srcs):
            if src not in SOURCES:
                raise ConfigError(path, line_of(match_raw, "source"),
                                  f"rule {rule_id!r}: unknown source {src!r} (one of {', '.join(SOURCES)})")
    if "area" in match_raw:
        areas = tuple(_str_list(path, match_raw, "area", f"rule {rule_id!r} area"))
        for prefix in areas:
            if not prefix.isdigit() or len(prefix) not in (2, 4, 6, 9) or not _area_known(catalog, prefix):
                raise ConfigError(path, line_of(match_raw, "area"),
                                  f"rule {rule_id!r}: area {prefix!r} is not a known province/city/county/township "
                                  "code prefix (2, 4, 6 or 9 digits)")
    severity_min = 1
    if "severity_min" in match_raw:
        severity_min = match_raw["severity_min"]
        if not isinstance(severity_min, int) or isinstance(severity_min, bool) or not 1 <= severity_min <= 3:
            raise ConfigError(path, line_of(match_raw, "severity_min"),
                              f"rule {rule_id!r}: severity_min must be 1, 2 or 3")
    if "lead" not in raw:
        raise ConfigError(path, line, f"rule {rule_id!r}: 'lead' is required")
    lead = _agency_code(path, catalog, raw["lead"], line_of(raw, "lead"), rule_id)
    assist: list[str] = []
    if raw.get("assist") is not None:
        for code in _str_list(path, raw, "assist", f"rule {rule_id!r} assist"):
            code = _agency_code(path, catalog, code, line_of(raw, "assist"), rule_id)
            if code == lead:
                raise ConfigError(path, line_of(raw, "assist"), f"rule {rule_id!r}: {code!r} is both lead and assist")
            assist.append(code)
    sign = _duration(path, raw, "sign", default_sign)
    resolve = _duration(path, raw, "resolve", default_resolve)
    clock = _clock(path, raw, "clock", default_clock)
    return Rule(rule_id, line, Match(cats, areas, srcs, severity_min), lead, tuple(assist), sign, resolve, clock)


def load_rules(path: Path, text: str | None = None, env: Mapping[str, str] | None = None) -> RuleSet:
    """Load and validate a rules file; raises :class:`ConfigError` (``file:line: why``)."""
    path = Path(path)
    mtime = path.stat().st_mtime_ns if text is None and path.exists() else 0
    doc = load_yaml(path, text)
    if not isinstance(doc, dict):
        raise ConfigError(path, None, "the rules file must be a YAML mapping")
    for key in doc:
        if key not in _TOP_KEYS:
            raise ConfigError(path, line_of(doc, key), f"unknown key {key!r} (allowed: {', '.join(sorted(_TOP_KEYS))})")
    catalog = load_catalog(_sibling(path, doc, "agencies", "agencies.yaml"), env)
    categories_path = _sibling(path, doc, "categories", "categories.yaml")
    categories = _load_categories(categories_path)

    defaults = doc.get("defaults") or {}
    # 2 h to sign and 5 days to resolve: the common 12345 办理时限 for an
    # ordinary (一般) work order; every rule may override them.
    default_sign = _duration(path, defaults, "sign", 2 * 3600 * 1000)
    default_resolve = _duration(path, defaults, "resolve", 5 * 24 * 3600 * 1000)
    triage = doc.get("triage") or {}
    escalation = doc.get("escalation") or {}
    extension = doc.get("extension") or {}
    review = doc.get("review") or {}
    clock = doc.get("clock") or {}
    retention = doc.get("retention") or {}
    for name, section in (("defaults", defaults), ("triage", triage), ("escalation", escalation),
                          ("extension", extension), ("review", review), ("clock", clock),
                          ("retention", retention)):
        if not isinstance(section, dict):
            raise ConfigError(path, line_of(doc, name), f"{name}: expected a mapping")
    # Natural time unless the file says otherwise: deadlines of existing files keep their meaning.
    default_clock = _clock(path, defaults, "clock", NATURAL)
    working_hours = DEFAULT_HOURS
    if "working_hours" in clock:
        try:
            working_hours = WorkingHours.parse(clock["working_hours"])
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(path, line_of(clock, "working_hours"),
                              f"clock.working_hours: expected a list like ['08:30-12:00', '14:00-17:30'] ({exc})") from exc
    max_ext = extension.get("max_count", 2)
    if not isinstance(max_ext, int) or isinstance(max_ext, bool) or max_ext < 0:
        raise ConfigError(path, line_of(extension, "max_count"), "extension.max_count: expected an integer >= 0")
    major = doc.get("major_severity", MAJOR_SEVERITY)
    if major not in (1, 2, 3):
        raise ConfigError(path, line_of(doc, "major_severity"), "major_severity must be 1, 2 or 3")

    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list):
        raise ConfigError(path, line_of(doc, "rules"), "'rules' must be a list")
    rules: list[Rule] = []
    seen: dict[str, Rule] = {}
    for i, raw in enumerate(raw_rules):
        rule = _parse_rule(path, raw, raw_rules.line_of(i) if hasattr(raw_rules, "line_of") else 0, catalog,
                           categories, default_sign, default_resolve, i, default_clock)
        if rule.id in seen:
            raise ConfigError(path, rule.line, f"duplicate rule id {rule.id!r} (first at line {seen[rule.id].line})")
        for earlier in rules:
            if earlier.match.covers(rule.match):
                raise ConfigError(path, rule.line, f"rule {rule.id!r} is unreachable: rule {earlier.id!r} "
                                                   f"(line {earlier.line}) comes first and matches every case it matches")
        seen[rule.id] = rule
        rules.append(rule)
    return RuleSet(
        path=path, rules=tuple(rules), catalog=catalog, categories=categories, categories_path=categories_path,
        default_sign_ms=default_sign, default_resolve_ms=default_resolve,
        # Triage at the county centre: 1 h to sign, 3 days to hand on or resolve.
        triage_sign_ms=_duration(path, triage, "sign", 3600 * 1000),
        triage_resolve_ms=_duration(path, triage, "resolve", 3 * 24 * 3600 * 1000),
        major_severity=int(major),
        # 24 h: the new deadline a 督办 grants the overdue agency.
        escalation_grace_ms=_duration(path, escalation, "grace", 24 * 3600 * 1000),
        max_extensions=max_ext,
        # 7 days: the most one 延期 may add to the current 办结 deadline.
        max_extension_ms=_duration(path, extension, "max_each", 7 * 24 * 3600 * 1000),
        # 3 days: a resolved case nobody reviews (no 12345 回访) closes by itself.
        review_window_ms=_duration(path, review, "auto_close", 3 * 24 * 3600 * 1000),
        # 5 s: deadline granularity; tests set 200ms.
        scan_interval_ms=_duration(path, clock, "scan_interval", 5000),
        mtime_ns=mtime,
        rule_index={r.id: i for i, r in enumerate(rules)},
        working_hours=working_hours,
        reopen_unsatisfied=_flag(path, review, "reopen_unsatisfied"),
        # 30 days: how long a closed case stays in the routing table (a late 回访, the centre's 重办);
        # its history stays in case-events / ClickHouse for good.  Issue 14: bounded state.
        retention_closed_ms=_duration(path, retention, "closed", 30 * 24 * 3600 * 1000),
    )


class RulesHolder:
    """The live rule set; :meth:`maybe_reload` picks up edits by mtime.

    A broken edit is logged with its ``file:line`` reason and the last good
    rules stay in force, so a typo never stops routing.
    """

    def __init__(self, path: Path, env: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self._env = env
        self.current = load_rules(self.path, env=env)
        self._seen = self._stamp()
        self.last_error: str | None = None

    def _stamp(self) -> tuple[int, ...]:
        stamps = []
        cur = self.current
        for p in (self.path, cur.catalog.path, cur.categories_path):
            try:
                stamps.append(os.stat(p).st_mtime_ns)
            except OSError:
                stamps.append(-1)
        return tuple(stamps)

    def maybe_reload(self) -> bool:
        """Reload when a file changed; True when new rules are in force."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        try:
            new = load_rules(self.path, env=self._env)
        except (ConfigError, OSError, ValueError) as exc:  # anything wrong with the files: keep the last good rules
            self.last_error = str(exc)
            log.error("routing_rules_reload_failed", reason=str(exc), kept=self.current.describe())
            return False
        self.current = new
        self._seen = self._stamp()
        self.last_error = None
        log.info("routing_rules_reloaded", rules=len(new.rules), path=str(self.path))
        return True


__all__ = ["Assignment", "ConfigError", "Match", "Plan", "Rule", "RuleSet", "RulesHolder", "load_rules",
           "format_duration_ms", "CENTRE"]
