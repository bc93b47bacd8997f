"""A report's category from what the source says AND what the document says.

Real feeds disagree with any one code table: four-platforms codes are a per-deployment
catalogue, 12345 call-takers pick different paths for one kind of problem, some orders carry no
category or ``其他/其他``, and some carry one the content contradicts (a burst main filed under
道路破损, a signal failure under 路灯).  A wrong category both blocks fusion with the other reports
of the incident and sends the case to the wrong agency, so the category is decided here from:

1. the source's own category (:mod:`streams.ingest.taxonomy`: candidates, name over code);
2. the free text (title + description) scored against each category's keywords in
   ``deploy/categories.yaml``: a vocabulary of how people describe each kind of problem
   (窨井盖 / 下水道盖子 / 铁盖子 / 雨水篦子), matched on jieba word boundaries so that 停车场 is not
   停车 and 雨水篦子 is not 雨水.

The source's candidates get ``classifier.prior`` points on top of their text score; the best
total wins.  So the text fills what the source left empty and overrides a source category only
when it clearly says something else; sensor texts are generated from readings, so for a sensor
the text only chooses among its device type's candidates (a water-level gauge at an underpass is
waterlogging, one on a river is a river level).

Pure and deterministic (no clock, no I/O except jieba's one-off dictionary load on first use);
:func:`resolve` also counts every conflict in ``gridhub_category_conflicts_total{source,kind}``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from prometheus_client import Counter

from streams.ingest.taxonomy import CONSULTATION, OTHER, SourceCategory, Taxonomy, taxonomy

#: kind: code_vs_name (the county's code table says another category than the name; the name won),
#: unknown_code (a name was used; the code is in no table of that county), text_overrode (the
#: content contradicted the source category and won), text_filled (no usable source category; the
#: content gave one).
CATEGORY_CONFLICTS = Counter("gridhub_category_conflicts_total",
                             "Reports whose category sources disagreed, by how it was settled",
                             ["source", "kind"])

#: Grammatical particles that jieba's dictionary glues to a word (熏黑了, 堵住的): not a new word.
PARTICLES = frozenset("了着过的得地")


@dataclass(frozen=True)
class Decision:
    """The resolved category and why."""

    category: str
    via: str  # source | text | none
    source: SourceCategory
    conflicts: tuple[str, ...] = ()
    top: tuple[tuple[str, float], ...] = ()  # best text scores, for explanations


class Classifier:
    """Keyword scoring of free text over the taxonomy; ``tokenizer`` ``jieba`` or ``chars``."""

    def __init__(self, tax: Taxonomy, tokenizer: str | None = None) -> None:
        self.tax = tax
        self.tokenizer = tokenizer or tax.tokenizer
        self._index: dict[str, list[tuple[str, float]]] = {}
        for cat in tax.categories.values():
            for word, weight in cat.keywords:
                self._index.setdefault(word, []).append((cat.code, weight))
        self._order = {code: i for i, code in enumerate(tax.categories)}
        self._cut: Callable[[str], list[str]] | None = None

    # ------------------------------------------------------------------ tokenisation
    def _jieba(self) -> Callable[[str], list[str]]:
        if self._cut is None:
            import jieba  # imported on first use: importing this module does no work

            jieba.setLogLevel(logging.WARNING)
            tk = jieba.Tokenizer()
            # Keywords only (not category names: 油烟扰民 as one word would hide 油烟 in the text).
            for word in self._index:
                if len(word) >= 2:
                    tk.add_word(word)  # frequency suggested by jieba: cut out unless inside a longer word
            # HMM off: its new-word discovery glues a keyword to its neighbours (井盖没 -> one word)
            self._cut = lambda text: tk.lcut(text, HMM=False)
        return self._cut

    def words(self, text: str) -> set[str]:
        """Every keyword of the taxonomy found in ``text``.

        ``chars``: every substring occurrence.  ``jieba``: an occurrence counts unless it lies
        inside one longer word of the segmentation (停车 inside 停车场, 雨水 inside 雨水篦子, 坑 inside
        坑道; a trailing particle is no new word: 熏黑了).  It may span words, because segmentation is
        ambiguous (油烟熏 cuts as 油 / 烟熏 and 油烟 is still there), but then it must start or end
        where a word does (南路 / 面馆 has no 路面).
        """
        if not text or self.tokenizer == "off":
            return set()
        if self.tokenizer == "chars":
            return self._substrings(text)
        hits = self._substrings(text)
        if not hits:
            return hits  # word boundaries only ever remove substring hits
        owner: list[tuple[int, int]] = []  # per character: (start, end) of the word it belongs to
        ends: set[int] = set()
        pos = 0
        for token in self._jieba()(text):
            owner.extend([(pos, pos + len(token))] * len(token))
            pos += len(token)
            ends.add(pos)
        found: set[str] = set()
        for word in hits:
            n = len(word)
            at = text.find(word)
            while at >= 0 and word not in found:
                start, end = owner[at]
                if at + n <= end and end - start > n:
                    # inside one longer word: another word (停车场), unless only a particle follows (熏黑了)
                    if at == start and end - at == n + 1 and text[end - 1] in PARTICLES:
                        found.add(word)
                elif at == start or at + n in ends:
                    found.add(word)  # across words, aligned with one end (油/烟熏 has 油烟; 南路/面馆 no 路面)
                at = text.find(word, at + 1)
        return found

    def _substrings(self, text: str) -> set[str]:
        return {w for w in self._index if w in text}

    def _score(self, words: set[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for word in words:
            for code, weight in self._index[word]:
                out[code] = out.get(code, 0.0) + weight
        return out

    def scores(self, text: str) -> dict[str, float]:
        """Text score per category (each keyword counted once)."""
        return self._score(self.words(text))

    # ------------------------------------------------------------------ decision
    def decide(self, source: SourceCategory, text: str, *, text_decides: bool = True) -> Decision:
        cands = tuple(c for c in source.candidates if c != OTHER)
        if CONSULTATION in cands:
            return Decision(CONSULTATION, "source", source)  # not an incident: the text must not make it one
        if text and text_decides and len(cands) == 1 and self.tokenizer == "jieba":
            # Word boundaries only ever remove substring hits, so when no other category reaches the
            # prior even on substrings, the source's category wins whatever jieba says: skip it (the
            # common case, and jieba is most of the classifier's cost).
            rough = self._score(self._substrings(text))
            if max((v for c, v in rough.items() if c not in cands), default=0.0) <= self.tax.prior:
                top = tuple(sorted(rough.items(), key=lambda kv: (-kv[1], self._order.get(kv[0], 0)))[:3])
                return Decision(cands[0], "source", source, (), top)
        scores = self.scores(text) if text else {}
        top = tuple(sorted(scores.items(), key=lambda kv: (-kv[1], self._order.get(kv[0], 0)))[:3])
        if not text_decides:
            if len(cands) <= 1:
                return Decision(cands[0] if cands else OTHER, "source" if cands else "none", source, (), top)
            best = max(cands, key=lambda c: (scores.get(c, 0.0), -cands.index(c)))
            return Decision(best, "source", source, (), top)
        if not cands:
            if top and top[0][1] >= self.tax.min_score:
                return Decision(top[0][0], "text", source, ("text_filled",), top)
            return Decision(OTHER, "none", source, (), top)
        prior = self.tax.prior

        def total(code: str) -> tuple[float, int, int]:
            own = code in cands
            return (scores.get(code, 0.0) + (prior if own else 0.0), 1 if own else 0,
                    -(cands.index(code) if own else self._order.get(code, 0)))

        best = max((*cands, *scores), key=total)
        if best in cands:
            return Decision(best, "source", source, (), top)
        return Decision(best, "text", source, ("text_overrode",), top)


_tokenizer: str | None = None  # None: the file's `classifier.tokenizer`


@lru_cache(maxsize=1)
def classifier() -> Classifier:
    """The process-wide classifier over :func:`taxonomy` (jieba loads on the first text)."""
    return Classifier(taxonomy(), _tokenizer)


def use_tokenizer(name: str | None) -> None:
    """Override the file's tokenizer in this process (``gridhub eval routing --tokenizer``): jieba,
    chars (substrings) or off (the text is not read; the source's category alone)."""
    global _tokenizer
    if name not in (None, "jieba", "chars", "off"):
        raise ValueError(f"unknown tokenizer {name!r} (jieba, chars or off)")
    _tokenizer = name
    classifier.cache_clear()


def resolve(source: str, *, code: str | None = None, name: str | None = None, county: str | None = None,
            title: str | None = None, text: str | None = None, device_type: str | None = None,
            clf: Classifier | None = None) -> Decision:
    """The category of one report of ``source``; counts every conflict."""
    clf = clf or classifier()
    tax = clf.tax
    if source == "four-platforms":
        src = tax.four_platforms_source(code, name, county)
    elif source == "hotline-12345":
        src = tax.hotline_source(code, name)
    elif source == "sensors":
        src = tax.sensor_source(device_type or "")
    else:
        raise ValueError(f"unknown source {source!r}")
    body = "\n".join(t for t in (title, text) if t)
    decision = clf.decide(src, body, text_decides=source != "sensors")
    for kind in (*((src.conflict,) if src.conflict else ()), *decision.conflicts):
        CATEGORY_CONFLICTS.labels(source=source, kind=kind).inc()
    return decision


def explain(decision: Decision) -> dict[str, Any]:
    """A log-friendly summary of a decision."""
    return {"category": decision.category, "via": decision.via, "source_candidates": list(decision.source.candidates),
            "source_via": decision.source.via, "conflicts": list(decision.conflicts),
            "text_top": [f"{c}:{s:g}" for c, s in decision.top]}
