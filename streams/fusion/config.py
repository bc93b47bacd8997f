"""Fusion thresholds and windows, read from ``deploy/fusion.yaml``.

One typed object instead of module constants, so the evaluation command can
run the same engine with another config file and a tuning run never edits
code.  The numbers themselves, with their sources, live in the YAML file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gridhub.core.settings import REPO_ROOT
from gridhub.core.yamlconf import ConfigError, line_of, load_yaml

DEFAULT_PATH = REPO_ROOT / "deploy" / "fusion.yaml"


@dataclass(frozen=True)
class CategoryRule:
    window_ms: int
    radius_m: float


@dataclass(frozen=True)
class Weights:
    space: float
    text: float
    time: float


@dataclass(frozen=True)
class FusionConfig:
    cell_m: float
    threshold: float
    human_weights: Weights
    sensor_weights: Weights
    min_text_similarity: float
    related_min_text_similarity: float
    categories: dict[str, CategoryRule]
    groups: dict[str, frozenset[str]]
    group_weight: float
    other_weight: float
    device_window_ms: int
    realarm_after_recover_ms: int
    storm_radius_m: float
    storm_window_ms: int
    same_address: float
    same_place: float
    same_road: float
    same_township: float
    expire_after_last_seen_ms: int
    expire_after_closed_ms: int
    max_report_ids: int
    max_shingles: int
    #: concept -> words (issue 13: what a report is about, whatever its category)
    concepts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: topic evidence of an equal category alone (no shared concept or words): one source's
    #: filing, weaker than what the texts say
    category_only: float = 1.0
    #: concepts that say how a problem shows, not what it is
    generic_concepts: frozenset[str] = frozenset()
    #: status words of a source that say the problem was handled (substring match)
    closing_statuses: tuple[str, ...] = ()
    #: ... and the words that say it was reviewed with the reporter (回访)
    reviewed_statuses: tuple[str, ...] = ()
    #: after a source's 办结, reports this close to it in event time still join, ms
    resolved_grace_ms: int = 0
    #: space evidence of two points within the radius + geocoding tolerance but no shared name
    near_point: float = 0.0
    #: text that says the caller already reported it ("打过电话", "反映过")
    callback_words: tuple[str, ...] = ()
    #: score added when two human reports come from the same reporter (phone hash)
    same_reporter: float = 0.0
    #: coordinates further apart than this never join, whatever the names say, metres
    far_m: float = 1500.0
    #: how far a 12345 geocode (GCJ-02 from the operator's map, landmark / road level) may be
    #: from the true point; a pair beyond the category radius but within radius + this is
    #: "near" and needs a shared name to join, metres
    geocode_tolerance_m: float = 0.0
    _group_of: dict[str, frozenset[str]] = field(default_factory=dict, compare=False, repr=False)

    def rule(self, category: str) -> CategoryRule:
        return self.categories.get(category) or self.categories["default"]

    def max_radius_m(self) -> float:
        return max(r.radius_m for r in self.categories.values())

    def compatibility(self, a: str, b: str) -> float:
        """Weight in [0, 1] that categories ``a`` and ``b`` describe one incident (0: never)."""
        if a == "other" or b == "other":
            return self.other_weight  # "other" = unclassified: no evidence, even against "other"
        if a == b:
            return 1.0
        if self._group_of.get(a, frozenset()) & self._group_of.get(b, frozenset()):
            return self.group_weight
        return 0.0


_H = 3_600_000
_MIN = 60_000


def parse_config(data: dict[str, Any]) -> FusionConfig:
    cats = {name: CategoryRule(window_ms=int(float(v["window_h"]) * _H), radius_m=float(v["radius_m"]))
            for name, v in data["categories"].items()}
    if "default" not in cats:
        raise ValueError("fusion config: categories.default is required")
    groups = {name: frozenset(members) for name, members in (data.get("groups") or {}).items()}
    group_of: dict[str, frozenset[str]] = {}
    for name, members in groups.items():
        for member in members:
            group_of[member] = group_of.get(member, frozenset()) | {name}
    w = data["weights"]
    sensor = data["sensor"]
    addr = data["address"]
    return FusionConfig(
        cell_m=float(data["cell_m"]),
        threshold=float(data["threshold"]),
        human_weights=Weights(**{k: float(v) for k, v in w["human"].items()}),
        sensor_weights=Weights(**{k: float(v) for k, v in w["sensor"].items()}),
        min_text_similarity=float(data["min_text_similarity"]),
        related_min_text_similarity=float(data["related_min_text_similarity"]),
        categories=cats,
        groups=groups,
        group_weight=float(data["group_weight"]),
        other_weight=float(data["other_weight"]),
        device_window_ms=int(float(sensor["device_window_h"]) * _H),
        realarm_after_recover_ms=int(float(sensor["realarm_after_recover_min"]) * _MIN),
        storm_radius_m=float(sensor["storm_radius_m"]),
        storm_window_ms=int(float(sensor["storm_window_min"]) * _MIN),
        same_address=float(addr["same_address"]),
        same_place=float(addr["same_place"]),
        same_road=float(addr["same_road"]),
        same_township=float(addr["same_township"]),
        expire_after_last_seen_ms=int(float(data["expire_after_last_seen_h"]) * _H),
        expire_after_closed_ms=int(float(data["expire_after_closed_h"]) * _H),
        max_report_ids=int(data["max_report_ids"]),
        max_shingles=int(data["max_shingles"]),
        concepts={str(k): tuple(str(w) for w in v) for k, v in (data.get("concepts") or {}).items()},
        category_only=float(data.get("category_only", 1.0)),
        generic_concepts=frozenset(str(x) for x in data.get("generic_concepts") or ()),
        closing_statuses=tuple(str(x) for x in data.get("closing_statuses") or ()),
        reviewed_statuses=tuple(str(x) for x in data.get("reviewed_statuses") or ()),
        resolved_grace_ms=int(float(data.get("resolved_grace_h", 0)) * _H),
        near_point=float(data.get("near_point", 0.0)),
        callback_words=tuple(str(x) for x in data.get("callback_words") or ()),
        same_reporter=float(data.get("same_reporter", 0.0)),
        far_m=float(data.get("far_m", 1500.0)),
        geocode_tolerance_m=float(data.get("geocode_tolerance_m", 0.0)),
        _group_of=group_of,
    )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _CategoryModel(_Strict):
    window_h: float = Field(gt=0)
    radius_m: float = Field(gt=0)


class _WeightsModel(_Strict):
    space: float = Field(ge=0, le=1)
    text: float = Field(ge=0, le=1)
    time: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> "_WeightsModel":
        if abs(self.space + self.text + self.time - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1 (space + text + time = "
                             f"{self.space + self.text + self.time:g})")
        return self


class _SensorModel(_Strict):
    device_window_h: float = Field(gt=0)
    realarm_after_recover_min: float = Field(ge=0)
    storm_radius_m: float = Field(gt=0)
    storm_window_min: float = Field(gt=0)


class _AddressModel(_Strict):
    same_address: float = Field(ge=0, le=1)
    same_place: float = Field(ge=0, le=1)
    same_road: float = Field(ge=0, le=1)
    same_township: float = Field(ge=0, le=1)


class FusionFile(_Strict):
    """The schema of ``deploy/fusion.yaml``: every key typed and bounded, unknown keys refused
    (a misspelt key would otherwise silently keep its default)."""

    cell_m: float = Field(gt=0)
    threshold: float = Field(gt=0, le=2)
    weights: dict[Literal["human", "sensor"], _WeightsModel]
    min_text_similarity: float = Field(ge=0, le=1)
    related_min_text_similarity: float = Field(ge=0, le=1)
    categories: dict[str, _CategoryModel]
    groups: dict[str, list[str]] = {}
    group_weight: float = Field(ge=0, le=1)
    other_weight: float = Field(ge=0, le=1)
    sensor: _SensorModel
    address: _AddressModel
    expire_after_last_seen_h: float = Field(gt=0)
    expire_after_closed_h: float = Field(ge=0)
    max_report_ids: int = Field(gt=0)
    max_shingles: int = Field(gt=0)
    concepts: dict[str, list[str]] = {}
    generic_concepts: list[str] = []
    category_only: float = Field(default=1.0, ge=0, le=1)
    closing_statuses: list[str] = []
    reviewed_statuses: list[str] = []
    resolved_grace_h: float = Field(default=0.0, ge=0)
    callback_words: list[str] = []
    same_reporter: float = Field(default=0.0, ge=0, le=1)
    far_m: float = Field(default=1500.0, gt=0)
    geocode_tolerance_m: float = Field(default=0.0, ge=0)
    near_point: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _consistent(self) -> "FusionFile":
        if "default" not in self.categories:
            raise ValueError("categories.default is required")
        if set(self.weights) != {"human", "sensor"}:
            raise ValueError("weights needs both human and sensor")
        for name, words in self.concepts.items():
            if not words or any(not str(w).strip() for w in words):
                raise ValueError(f"concepts.{name}: a concept needs non-empty words")
        unknown = [c for c in self.generic_concepts if c not in self.concepts]
        if unknown:
            raise ValueError(f"generic_concepts names unknown concepts: {', '.join(unknown)}")
        return self


def _error_line(data: Any, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest key of ``loc`` the YAML loader recorded."""
    line, node = line_of(data), data
    for key in loc:
        if isinstance(node, (dict, list)) and (key in node if isinstance(node, dict) else
                                               isinstance(key, int) and 0 <= key < len(node)):
            line = line_of(node, key) or line
            node = node[key]
        else:
            break
    return line


def validate(data: Any, path: str | Path = "fusion.yaml") -> FusionConfig:
    """Validate a parsed fusion file against :class:`FusionFile`; errors say ``file:line``."""
    if not isinstance(data, dict):
        raise ConfigError(path, line_of(data), "the fusion config must be a YAML mapping")
    try:
        FusionFile.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = tuple(first["loc"])
        where = ".".join(str(x) for x in loc) or "(top level)"
        more = f" (and {len(errors) - 1} more: " + "; ".join(
            f"line {_error_line(data, tuple(e['loc']))} {'.'.join(str(x) for x in e['loc'])}"
            for e in errors[1:4]) + ")" if len(errors) > 1 else ""
        raise ConfigError(path, _error_line(data, loc), f"{where}: {first['msg']}{more}") from None
    return parse_config(data)


def load_config(path: str | Path | None = None) -> FusionConfig:
    """The fusion config at ``path``, ``$GRIDHUB_FUSION_CONFIG`` or ``deploy/fusion.yaml``,
    validated (:class:`FusionFile`): a bad value raises :class:`ConfigError` naming ``file:line``."""
    chosen = Path(path or os.environ.get("GRIDHUB_FUSION_CONFIG") or DEFAULT_PATH)
    return validate(load_yaml(chosen), chosen)
