"""The unified incident taxonomy (``deploy/categories.yaml``): validated model and source lookups.

Three sources, three vocabularies: a four-platforms ``categoryCode`` / ``categoryName`` (the
code from a per-deployment catalogue), a 12345 path such as ``城乡建设/市政设施/窨井盖``, a sensor
``deviceType``.  Fusion compares categories across sources and routing matches on them, so every
report carries one code of one table.

This module answers "which categories does the SOURCE say?" (:class:`SourceCategory`, possibly
several candidates when a name is shared, e.g. 噪声扰民); :mod:`streams.ingest.classify` then
weighs that against the free text.  The file is validated by a pydantic model and every error
names ``file:line`` (like ``deploy/routing.yaml``), so a typo never reaches a worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gridhub.core.settings import REPO_ROOT
from gridhub.core.yamlconf import ConfigError, LineDict, LineList, load_yaml

CATEGORIES_FILE = REPO_ROOT / "deploy" / "categories.yaml"
OTHER = "other"
CONSULTATION = "consultation"

#: Points per keyword tier (docs/ingest.md "Categories"): a `critical` word names the category by
#: itself, a `strong` one nearly so, a `weak` one is context that only counts in numbers.
TIER_WEIGHTS = {"critical": 5.0, "strong": 3.0, "weak": 1.0}

_CODE_PATTERN = r"^[a-z][a-z0-9_]*$"
Targets = Union[str, list[str]]


# --------------------------------------------------------------------------- file model
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeywordsModel(_Strict):
    critical: list[str] = Field(default_factory=list)
    strong: list[str] = Field(default_factory=list)
    weak: list[str] = Field(default_factory=list)

    @field_validator("critical", "strong", "weak")
    @classmethod
    def _words(cls, words: list[str]) -> list[str]:
        for word in words:
            if not str(word).strip():
                raise ValueError("empty keyword")
        return [str(w).strip() for w in words]


class CategoryModel(_Strict):
    code: str = Field(pattern=_CODE_PATTERN)
    name: str = Field(min_length=1)
    lead: str = Field(default="zzzx", min_length=1)
    names: list[str] = Field(default_factory=list)
    keywords: KeywordsModel = Field(default_factory=KeywordsModel)


class ClassifierModel(_Strict):
    prior: float = Field(default=4.0, ge=0)
    min_score: float = Field(default=3.0, gt=0)
    tokenizer: Literal["jieba", "chars", "off"] = "jieba"


class CodeTableModel(_Strict):
    id: str = Field(min_length=1)
    note: str | None = None
    areas: list[str] = Field(min_length=1)
    codes: dict[str, str]

    @field_validator("areas")
    @classmethod
    def _areas(cls, areas: list[str]) -> list[str]:
        for area in areas:
            if not str(area).isdigit() or len(str(area)) not in (2, 4, 6):
                raise ValueError(f"area {area!r} is not a province/city/county code prefix (2, 4 or 6 digits)")
        return [str(a) for a in areas]


class FourPlatformsModel(_Strict):
    tables: list[CodeTableModel] = Field(default_factory=list)


class HotlineModel(_Strict):
    paths: dict[str, Targets] = Field(default_factory=dict)


class SensorsModel(_Strict):
    device_types: dict[str, Targets] = Field(default_factory=dict)


class CategoriesFile(_Strict):
    """The whole ``deploy/categories.yaml``."""

    version: Literal[2]
    classifier: ClassifierModel = Field(default_factory=ClassifierModel)
    categories: list[CategoryModel] = Field(min_length=1)
    four_platforms: FourPlatformsModel = Field(default_factory=FourPlatformsModel)
    hotline_12345: HotlineModel = Field(default_factory=HotlineModel)
    sensors: SensorsModel = Field(default_factory=SensorsModel)


def _line_at(doc: Any, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest node of ``loc`` the YAML loader recorded."""
    line: int | None = getattr(doc, "line", None)
    node = doc
    for key in loc:
        if isinstance(node, LineDict) and key in node:
            line = node.line_of(key)
            node = node[key]
        elif isinstance(node, LineList) and isinstance(key, int) and 0 <= key < len(node):
            line = node.line_of(key)
            node = node[key]
        else:
            break
    return line


# --------------------------------------------------------------------------- runtime model
@dataclass(frozen=True)
class Category:
    code: str
    name: str
    lead: str
    names: tuple[str, ...]
    keywords: tuple[tuple[str, float], ...] = ()  # (word, points)


@dataclass(frozen=True)
class CodeTable:
    id: str
    areas: tuple[str, ...]
    codes: dict[str, str]


@dataclass(frozen=True)
class SourceCategory:
    """What a source's own category says: candidate codes (best first) and how they were found.

    ``via``: path | segment | name | code | device | none.  ``conflict``: ``code_vs_name`` when
    the county's code table says another category than the name (the name won),
    ``unknown_code`` when a name was used and the code is in no table for that county.
    """

    candidates: tuple[str, ...]
    via: str
    conflict: str | None = None

    @property
    def first(self) -> str:
        return self.candidates[0] if self.candidates else OTHER


@dataclass
class Taxonomy:
    categories: dict[str, Category]
    four_platform_tables: tuple[CodeTable, ...] = ()
    hotline_paths: dict[str, tuple[str, ...]] = field(default_factory=dict)
    device_types: dict[str, tuple[str, ...]] = field(default_factory=dict)
    by_name: dict[str, tuple[str, ...]] = field(default_factory=dict)
    prior: float = 4.0
    min_score: float = 3.0
    tokenizer: str = "jieba"
    path: Path = CATEGORIES_FILE

    @classmethod
    def load(cls, path: Path = CATEGORIES_FILE, text: str | None = None) -> "Taxonomy":
        """Load and validate; raises :class:`ConfigError` (a ``ValueError``) naming ``file:line``."""
        path = Path(path)
        doc = load_yaml(path, text)
        try:
            model = CategoriesFile.model_validate(doc)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "(top)"
            raise ConfigError(path, _line_at(doc, tuple(err["loc"])),
                              f"{where}: {err['msg']}" + (f" ({len(exc.errors())} errors)" if len(exc.errors()) > 1
                                                          else "")) from None
        return cls.from_model(model, path, doc)

    @classmethod
    def from_model(cls, model: CategoriesFile, path: Path = CATEGORIES_FILE, doc: Any = None) -> "Taxonomy":
        def fail(loc: tuple[Any, ...], message: str) -> ConfigError:
            return ConfigError(path, _line_at(doc, loc), message)

        categories: dict[str, Category] = {}
        by_name: dict[str, list[str]] = {}
        for i, item in enumerate(model.categories):
            if item.code in categories:
                raise fail(("categories", i, "code"), f"category {item.code!r} defined twice")
            words: dict[str, float] = {}
            for tier, weight in TIER_WEIGHTS.items():
                for word in getattr(item.keywords, tier):
                    if word in words:
                        raise fail(("categories", i, "keywords", tier),
                                   f"category {item.code!r}: keyword {word!r} listed twice")
                    words[word] = weight
            categories[item.code] = Category(item.code, item.name, item.lead, tuple(item.names),
                                             tuple(words.items()))
            for name in dict.fromkeys((item.name, *item.names)):
                # A name shared by several categories is ambiguous on purpose (噪声扰民): all of
                # them are candidates and the text decides, in file order.
                by_name.setdefault(name.strip(), []).append(item.code)
        for required in (OTHER, CONSULTATION):
            if required not in categories:
                raise fail(("categories",), f"the taxonomy must define {required!r}")

        def targets(section: str, key: str, value: Targets, loc: tuple[Any, ...]) -> tuple[str, ...]:
            codes = (value,) if isinstance(value, str) else tuple(value)
            if not codes:
                raise fail(loc, f"{section} {key!r}: no category")
            for code in codes:
                if code not in categories:
                    raise fail(loc, f"{section} {key!r}: mapping to undefined category {code!r}")
            return codes

        tables = []
        seen_ids: set[str] = set()
        for i, table in enumerate(model.four_platforms.tables):
            if table.id in seen_ids:
                raise fail(("four_platforms", "tables", i, "id"), f"code table {table.id!r} defined twice")
            seen_ids.add(table.id)
            for code, cat in table.codes.items():
                targets("four_platforms code", code, cat, ("four_platforms", "tables", i, "codes", code))
            tables.append(CodeTable(table.id, tuple(table.areas), dict(table.codes)))
        return cls(
            categories=categories,
            four_platform_tables=tuple(tables),
            hotline_paths={_path(k): targets("hotline_12345 path", k, v, ("hotline_12345", "paths", k))
                           for k, v in model.hotline_12345.paths.items()},
            device_types={k: targets("sensors device_type", k, v, ("sensors", "device_types", k))
                          for k, v in model.sensors.device_types.items()},
            by_name={k: tuple(v) for k, v in by_name.items()},
            prior=model.classifier.prior, min_score=model.classifier.min_score,
            tokenizer=model.classifier.tokenizer, path=path,
        )

    # ------------------------------------------------------------------ source lookups
    def _names_in(self, text: str) -> tuple[str, ...]:
        """Categories a source's category text names: exactly, else its longest known name inside it."""
        text = text.strip()
        if not text:
            return ()
        if text in self.by_name:
            return self.by_name[text]
        best, best_key = "", (0, 0)
        for name in self.by_name:
            # two characters at least: a one-character name inside a longer text is noise
            at = text.rfind(name) if len(name) >= 2 else -1
            # the longest name; of equal ones the last: a Chinese compound's head comes last
            # (社保咨询 is a 咨询 about 社保)
            if at >= 0 and (len(name), at + len(name)) > best_key:
                best, best_key = name, (len(name), at + len(name))
        return self.by_name[best] if best else ()

    def code_table(self, county: str | None) -> CodeTable | None:
        """The four-platforms code table of ``county``: the one with the longest matching area prefix."""
        best: CodeTable | None = None
        best_len = -1
        for table in self.four_platform_tables:
            for area in table.areas:
                if county and county.startswith(area) and len(area) > best_len:
                    best, best_len = table, len(area)
        return best

    def four_platforms_source(self, code: str | None, name: str | None, county: str | None = None) -> SourceCategory:
        table = self.code_table(county)
        by_code = table.codes.get(code) if (table is not None and code) else None
        by_name = self._names_in(name) if name else ()
        if by_name:
            conflict = None
            if code and by_code is None:
                conflict = "unknown_code"
            elif by_code is not None and by_code not in by_name:
                conflict = "code_vs_name"  # the name is what operators read: it wins
            return SourceCategory(by_name, "name", conflict)
        if by_code is not None:
            return SourceCategory((by_code,), "code")
        return SourceCategory((), "none")

    def hotline_source(self, code: str | None, name: str | None) -> SourceCategory:
        if not name:
            return SourceCategory((), "none")
        path = _path(name)
        if path in self.hotline_paths:
            return SourceCategory(self.hotline_paths[path], "path")
        segments = path.split("/")
        # the longest listed prefix of the path (城乡建设/路灯照明 for 城乡建设/路灯照明/路灯不亮)
        for n in range(len(segments) - 1, 1, -1):
            prefix = "/".join(segments[:n])
            if prefix in self.hotline_paths and not any(self._names_in(s) for s in segments[n:]):
                return SourceCategory(self.hotline_paths[prefix], "path")
        for segment in reversed(segments):
            found = self._names_in(segment)
            if found:
                return SourceCategory(found, "segment")
        return SourceCategory((), "none")

    def sensor_source(self, device_type: str) -> SourceCategory:
        found = self.device_types.get(device_type)
        return SourceCategory(found, "device") if found else SourceCategory((), "none")

    # ------------------------------------------------------------------ simple lookups (one code)
    def four_platforms(self, code: str | None, name: str | None, county: str | None = "33") -> str:
        """The category the source's own fields say, without reading the text."""
        return self.four_platforms_source(code, name, county).first

    def hotline(self, code: str | None, name: str | None) -> str:
        return self.hotline_source(code, name).first

    def sensor(self, device_type: str) -> str:
        return self.sensor_source(device_type).first


def _path(name: str) -> str:
    return "/".join(seg.strip() for seg in name.split("/") if seg.strip())


@lru_cache(maxsize=1)
def taxonomy() -> Taxonomy:
    """The process-wide taxonomy (read once; a change needs a worker restart)."""
    return Taxonomy.load()
