"""One ledger for every fault test (issue 14 item 7): where did each ``source_ref`` go, hop by hop?

A fault test (a SIGKILLed worker, a dead broker, ClickHouse or Mosquitto down, a webhook receiver
away) produces documents to the raw topics and, afterwards, asks the ledger what came out of each
hop of the pipeline:

    raw.*  ->  reports  ->  reports.linked  ->  cases  ->  dispatches / dispatch.<agency>
                                 |                 |          |
                            ch.reports         ch.cases   ch.dispatches      (ClickHouse, FINAL-free)

Per hop, every record is reduced to a *key* (what must arrive: a document, an incident, a
(case, agency) pair) and an *id* (what the hub called it: report id, case id, dispatch id).  Then:

* **lost**: an expected key with no record at all;
* **duplicated under a new id**: a key seen with an id the reference never had (the same
  source_ref with two report ids, the same incident with two case ids, the same (case, agency)
  with two dispatch ids).  Without a crash-free reference run, "more than one id per key";
* **redelivered**: the same id more than once (allowed: the hub is at-least-once, every
  consumer deduplicates on the id);
* **unexpected**: a key nobody asked for (shown, not failed: a test's own extra inputs).

What is *expected* at a hop is, by default, what the hop feeding it holds (what reached
``reports.linked`` must land in ClickHouse's ``reports``), so a record lost between any two hops
shows up exactly where it went missing.  With a ``reference`` (a :class:`Ledger` of the same inputs
processed by a crash-free run), the expectation of each hop is the reference's keys and ids, and
cases are keyed by the *incident*: the reference case of their reports (a second case for one
incident is then visible even when each record was seen once).

The collection (:func:`collect`) reads the namespace's topics to their current end and, on
request, its ClickHouse tables; everything else (:class:`Hop`, :class:`Ledger`,
:func:`assert_no_loss`) is pure and unit-tested on hand-made hop contents
(tests/scale/test_ledger.py).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from gridhub.core.settings import Settings

#: Hops in pipeline order, each with the hop its expectation comes from (None: given by the test).
#: "dispatch.<agency>" and "dispatches" are checked against each other (routing writes both in one
#: step: a record missing from either one is a loss).
HOPS: tuple[tuple[str, str | None], ...] = (
    ("raw", None),
    ("reports", None),
    ("reports.linked", "reports"),
    ("cases", "reports.linked"),
    ("dispatches", "dispatch.<agency>"),
    ("dispatch.<agency>", "dispatches"),
    ("ch.reports", "reports.linked"),
    ("ch.cases", "cases"),
    ("ch.dispatches", "dispatches"),
    ("webhook", "dispatch.<agency>"),
)

#: Report kinds fusion links to a case (Report.avsc: ``incident`` opens or joins one; ``recover``
#: only closes a device's alarm case when one is open, so it is not expected on ``reports.linked``).
LINKED_KINDS = frozenset({"incident"})


def ref_key(source: str, source_ref: str) -> str:
    """The ledger's key of one document: its source and its reference in that source."""
    return f"{source}|{source_ref}"


def raw_source_ref(source: str, value: bytes) -> str | None:
    """The source_ref of a raw document, as ingest derives it (streams/ingest/normalize.py: the
    four platforms' ``eventId``, the 12345 ``orderNo``, a sensor's ``deviceId@eventTime``); None for
    bytes that are not a JSON object with those fields (a bad input: the dead-letter topic's)."""
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    if source == "four-platforms":
        ref = doc.get("eventId")
    elif source == "hotline-12345":
        ref = doc.get("orderNo")
    elif source == "sensors":
        device, at = doc.get("deviceId"), doc.get("eventTime")
        ref = f"{device}@{at}" if isinstance(device, str) and isinstance(at, str) else None
    else:
        return None
    return ref if isinstance(ref, str) and ref else None


@dataclass
class Hop:
    """What one hop holds: for every key the ids it was seen under, and how often each id was seen."""

    name: str
    ids: dict[str, set[str]] = field(default_factory=dict)
    #: (key, id) -> records seen: the same id twice under one key is a redelivery.
    records: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: None: nothing to compare with (the hop was not collected, or nothing feeds it).
    expected: set[str] | None = None
    #: Per key, the ids a crash-free run gave it (None: "one id per key" is the rule).
    reference_ids: dict[str, set[str]] | None = None

    def add(self, key: str, record_id: str) -> None:
        self.ids.setdefault(key, set()).add(record_id)
        self.records[(key, record_id)] += 1

    @property
    def lost(self) -> set[str]:
        return set() if self.expected is None else self.expected - set(self.ids)

    @property
    def duplicated(self) -> dict[str, set[str]]:
        """Keys seen under an id the reference never gave them (without a reference: several ids)."""
        if self.reference_ids is None:
            return {k: v for k, v in self.ids.items() if len(v) > 1}
        out = {}
        for key, ids in self.ids.items():
            known = self.reference_ids.get(key)
            if known is not None and ids - known:
                out[key] = ids
            elif known is None and len(ids) > 1:
                out[key] = ids
        return out

    @property
    def redelivered(self) -> int:
        """Records beyond the first of each (key, id): at-least-once, allowed."""
        return sum(n - 1 for n in self.records.values())

    @property
    def unexpected(self) -> set[str]:
        return set() if self.expected is None else set(self.ids) - self.expected

    def row(self) -> tuple[str, str, int, int, int, int, int, int]:
        expected = "-" if self.expected is None else str(len(self.expected))
        return (self.name, expected, len(self.ids), sum(self.records.values()), len(self.lost),
                len(self.duplicated), self.redelivered, len(self.unexpected))


@dataclass
class Ledger:
    """Every hop of one run, filled by :func:`collect` (or by hand in the ledger's own tests)."""

    hops: dict[str, Hop] = field(default_factory=dict)
    #: report key -> case ids it was linked to (from ``reports.linked``), for incidents.
    links: dict[str, set[str]] = field(default_factory=dict)
    #: case id -> the keys of its reports.
    case_reports: dict[str, set[str]] = field(default_factory=dict)
    title: str = ""

    def hop(self, name: str) -> Hop:
        if name not in self.hops:
            self.hops[name] = Hop(name)
        return self.hops[name]

    def link(self, report_key: str, case_id: str) -> None:
        self.links.setdefault(report_key, set()).add(case_id)
        self.case_reports.setdefault(case_id, set()).add(report_key)

    # --- the verdict ------------------------------------------------------------------------

    def table(self) -> str:
        head = ("hop", "expected", "keys", "records", "lost", "dup-new-id", "redelivered", "unexpected")
        rows = [head] + [tuple(str(c) for c in self.hops[n].row()) for n, _ in HOPS if n in self.hops]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
                 for r in rows]
        return "\n".join(([f"ledger {self.title}"] if self.title else []) + lines)

    def problems(self, limit: int = 5) -> list[str]:
        out = []
        for name, _ in HOPS:
            hop = self.hops.get(name)
            if hop is None:
                continue
            if hop.lost:
                out.append(f"{name}: {len(hop.lost)} lost, e.g. {sorted(hop.lost)[:limit]}")
            dup = hop.duplicated
            if dup:
                sample = {k: sorted(dup[k]) for k in sorted(dup)[:limit]}
                out.append(f"{name}: {len(dup)} duplicated under a new id, e.g. {sample}")
        return out

    def ok(self) -> bool:
        return not self.problems()

    def summary(self) -> dict[str, dict[str, int]]:
        return {n: {"expected": -1 if h.expected is None else len(h.expected), "keys": len(h.ids),
                    "lost": len(h.lost), "duplicated": len(h.duplicated), "redelivered": h.redelivered}
                for n, h in self.hops.items()}


def assert_no_loss(ledger: Ledger) -> None:
    """0 lost and 0 duplicated-under-a-new-id at every hop; the per-hop table in the message otherwise.

    The table is printed either way (pytest shows it with ``-s`` or on failure): the fault tests'
    figures come from it."""
    print(ledger.table())
    problems = ledger.problems()
    assert not problems, "\n".join([ledger.table(), *problems])


# --- expectations -----------------------------------------------------------------------------


def expect(ledger: Ledger, *, source_refs: Iterable[str] | None = None, report_refs: Iterable[str] | None = None,
           reference: Ledger | None = None, given: Mapping[str, Iterable[str]] | None = None,
           linked_kinds: Mapping[str, str] | None = None) -> Ledger:
    """Set each collected hop's expectation (see the module docstring); returns ``ledger``.

    ``source_refs``: the keys (:func:`ref_key`) the test produced to the raw topics.
    ``report_refs``: those that must become reports (heartbeats and bad inputs do not); default:
    ``source_refs``.  ``linked_kinds``: report key -> kind, to expect on ``reports.linked`` only the
    reports fusion links (:data:`LINKED_KINDS`).  ``given``: hop name -> expected keys, overrides.
    """
    given = dict(given or {})
    if source_refs is not None:
        given.setdefault("raw", set(source_refs))
        given.setdefault("reports", set(report_refs if report_refs is not None else source_refs))
    for name, upstream in HOPS:
        if name not in ledger.hops:
            continue
        hop = ledger.hops[name]
        if name in given:
            hop.expected = set(given[name])
        elif reference is not None and name in reference.hops and reference.hops[name].ids:
            hop.expected = set(reference.hops[name].ids)
        elif upstream is not None and upstream in ledger.hops:
            keys = set(ledger.hops[upstream].ids)
            if name == "reports.linked" and linked_kinds is not None:
                keys = {k for k in keys if linked_kinds.get(k, "incident") in LINKED_KINDS}
            if name == "cases":  # every case a report was linked to must be on `cases`
                keys = set(ledger.case_reports)
            hop.expected = keys
        if reference is not None and name in reference.hops:
            hop.reference_ids = {k: set(v) for k, v in reference.hops[name].ids.items()}
    return ledger


def incidents(ledger: Ledger, reference: Ledger) -> Ledger:
    """Re-key ``ledger``'s case and dispatch hops by *incident*: the case the crash-free
    ``reference`` gave the same reports.  A run that opened two cases for one incident then shows
    one key with two case ids; a (case, agency) dispatch follows its case."""
    incident_of: dict[str, set[str]] = {}
    for case_id, reports in ledger.case_reports.items():
        incident_of[case_id] = {c for r in reports for c in reference.links.get(r, ())} or {case_id}
    for name in ("cases", "ch.cases"):
        hop = ledger.hops.get(name)
        if hop is None:
            continue
        rekeyed = Hop(name, records=hop.records)
        for key, ids in hop.ids.items():
            for incident in incident_of.get(key, {key}):
                for case_id in ids:
                    rekeyed.ids.setdefault(incident, set()).add(case_id)
        ledger.hops[name] = rekeyed
    for name in ("dispatches", "dispatch.<agency>", "ch.dispatches"):
        hop = ledger.hops.get(name)
        if hop is None:
            continue
        rekeyed = Hop(name, records=hop.records)
        for key, ids in hop.ids.items():
            case_id, _, agency = key.partition("|")
            for incident in incident_of.get(case_id, {case_id}):
                rekeyed.ids.setdefault(f"{incident}|{agency}", set()).update(ids)
        ledger.hops[name] = rekeyed
    return ledger


# --- collection from the real servers ---------------------------------------------------------


def _decode(schema: str, value: bytes | None) -> dict[str, Any] | None:
    from gridhub.core.codec import DecodeError, codec

    if not value:
        return None
    try:
        out: dict[str, Any] = codec(schema).decode(value)
        return out
    except DecodeError:
        return None


def _dispatch_topics(settings: Settings) -> list[str]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        prefix = settings.topic("dispatch.")
        return sorted(t for t in admin.list_topics() if t.startswith(prefix))
    finally:
        admin.close()


def collect(settings: Settings, *, hops: Sequence[str] = ("raw", "reports", "reports.linked", "cases",
                                                           "dispatches", "dispatch.<agency>"),
            clickhouse: Any = None, title: str = "") -> Ledger:
    """Read the namespace's topics to their current end (and, with a clickhouse-driver ``Client``
    on ``settings.ch_database``, the fact tables) into a :class:`Ledger` of the named ``hops``.

    Expectations are not set here: call :func:`expect` (and :func:`incidents` with a reference)."""
    from gridhub.core.topics import CASES, DISPATCHES, RAW, REPORTS, REPORTS_LINKED
    from gridhub.ops.common import read_to_end

    ledger = Ledger(title=title or settings.namespace)
    wanted = set(hops)
    if "raw" in wanted:
        hop = ledger.hop("raw")
        for source, topic in RAW.items():
            for rec in read_to_end(settings, [settings.topic(topic)]):
                ref = raw_source_ref(source, rec.value or b"")
                if ref is not None:
                    hop.add(ref_key(source, ref), ref_key(source, ref))
    if "reports" in wanted:
        hop = ledger.hop("reports")
        for rec in read_to_end(settings, [settings.topic(REPORTS)]):
            r = _decode("Report", rec.value)
            if r is not None:
                hop.add(ref_key(r["source"], r["source_ref"]), r["report_id"])
    if "reports.linked" in wanted or "cases" in wanted:
        linked = ledger.hop("reports.linked") if "reports.linked" in wanted else Hop("reports.linked")
        for rec in read_to_end(settings, [settings.topic(REPORTS_LINKED)]):
            r = _decode("Report", rec.value)
            if r is not None and r.get("case_id"):
                key = ref_key(r["source"], r["source_ref"])
                # id = the case it was linked to: the same report in two cases is a duplicate
                # (the same incident opened twice), the same link twice a redelivery.
                linked.add(key, r["case_id"])
                ledger.link(key, r["case_id"])
    if "cases" in wanted:
        hop = ledger.hop("cases")
        for rec in read_to_end(settings, [settings.topic(CASES)]):
            c = _decode("Case", rec.value)
            if c is not None:
                hop.add(c["case_id"], c["case_id"])
    if "dispatches" in wanted:
        hop = ledger.hop("dispatches")
        for rec in read_to_end(settings, [settings.topic(DISPATCHES)]):
            d = _decode("Dispatch", rec.value)
            if d is not None:
                hop.add(f"{d['caseId']}|{d['agency']}", d["dispatchId"])
    if "dispatch.<agency>" in wanted:
        hop = ledger.hop("dispatch.<agency>")
        for rec in read_to_end(settings, _dispatch_topics(settings)):
            d = _decode("Dispatch", rec.value)
            if d is not None:
                hop.add(f"{d['caseId']}|{d['agency']}", d["dispatchId"])
    if clickhouse is not None:
        collect_clickhouse(ledger, clickhouse, settings.ch_database)
    return ledger


def collect_clickhouse(ledger: Ledger, client: Any, database: str) -> Ledger:
    """The fact tables as hops ``ch.reports`` / ``ch.cases`` / ``ch.dispatches``: every stored row,
    not ``FINAL`` (a redelivered row is a redelivery here too, until a merge folds it)."""
    queries = {
        "ch.reports": f"SELECT concat(source, '|', source_ref), case_id FROM {database}.reports",
        "ch.cases": f"SELECT case_id, case_id FROM {database}.cases",
        "ch.dispatches": f"SELECT concat(case_id, '|', toString(agency)), dispatch_id FROM {database}.dispatches",
    }
    for name, query in queries.items():
        hop = ledger.hop(name)
        for key, record_id in client.execute(query):
            hop.add(key, record_id)
    for key, case_id in ledger.hops["ch.reports"].ids.items():
        for c in case_id:
            ledger.case_reports.setdefault(c, set()).add(key)
    return ledger


def observe(ledger: Ledger, name: str, pairs: Iterable[tuple[str, str]]) -> Hop:
    """Hand-fill hop ``name`` with (key, id) pairs: a webhook receiver's accepted dispatches, an MQTT
    test's published messages, or the ledger's own tests."""
    hop = ledger.hop(name)
    for key, record_id in pairs:
        hop.add(key, record_id)
    return hop
