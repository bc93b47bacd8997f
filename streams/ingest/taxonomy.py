"""The unified incident taxonomy (``deploy/categories.yaml``), loaded once.

Three sources, three vocabularies: a four-platforms ``categoryCode`` such as
``0302``, a 12345 path such as ``市容环卫/占道经营``, a sensor ``deviceType``.
Fusion compares categories across sources and routing matches on them, so
every report carries one code of one table.  Unknown source categories map to
``other`` (never dropped: the county centre triages them) and the caller
counts them so the table can be extended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from gridhub.core.settings import REPO_ROOT

CATEGORIES_FILE = REPO_ROOT / "deploy" / "categories.yaml"
OTHER = "other"


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    lead: str
    names: tuple[str, ...]


@dataclass
class Taxonomy:
    categories: dict[str, Category]
    four_platform_codes: dict[str, str] = field(default_factory=dict)
    hotline_paths: dict[str, str] = field(default_factory=dict)
    device_types: dict[str, str] = field(default_factory=dict)
    by_name: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = CATEGORIES_FILE) -> "Taxonomy":
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        categories: dict[str, Category] = {}
        by_name: dict[str, str] = {}
        for item in raw["categories"]:
            cat = Category(str(item["code"]), str(item["name"]), str(item.get("lead", "zzzx")),
                           tuple(str(n) for n in item.get("names", [])))
            if cat.code in categories:
                raise ValueError(f"{path}: category {cat.code!r} defined twice")
            categories[cat.code] = cat
            for name in (cat.name, *cat.names):
                if by_name.setdefault(name, cat.code) != cat.code:
                    raise ValueError(f"{path}: name {name!r} maps to {by_name[name]!r} and {cat.code!r}")
        if OTHER not in categories:
            raise ValueError(f"{path}: the taxonomy must define {OTHER!r}")
        tax = cls(
            categories=categories,
            four_platform_codes={str(k): str(v) for k, v in raw.get("four_platforms", {}).get("codes", {}).items()},
            hotline_paths={str(k): str(v) for k, v in raw.get("hotline_12345", {}).get("paths", {}).items()},
            device_types={str(k): str(v) for k, v in raw.get("sensors", {}).get("device_types", {}).items()},
            by_name=by_name,
        )
        for table in (tax.four_platform_codes, tax.hotline_paths, tax.device_types):
            unknown = sorted(set(table.values()) - set(categories))
            if unknown:
                raise ValueError(f"{path}: mapping to undefined categories {unknown}")
        return tax

    def four_platforms(self, code: str | None, name: str | None) -> str:
        if code and code in self.four_platform_codes:
            return self.four_platform_codes[code]
        if name:
            return self.by_name.get(name.strip(), OTHER)
        return OTHER

    def hotline(self, code: str | None, name: str | None) -> str:
        if not name:
            return OTHER
        path = "/".join(seg.strip() for seg in name.split("/") if seg.strip())
        if path in self.hotline_paths:
            return self.hotline_paths[path]
        for segment in reversed(path.split("/")):
            if segment in self.by_name:
                return self.by_name[segment]
        return OTHER

    def sensor(self, device_type: str) -> str:
        return self.device_types.get(device_type, OTHER)


@lru_cache(maxsize=1)
def taxonomy() -> Taxonomy:
    """The process-wide taxonomy (read once; a change needs a worker restart)."""
    return Taxonomy.load()
