"""``--realism hard``: documents as other deployments and call-takers write them, not as the hub's tables say."""

from __future__ import annotations

import builtins
import io
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from gridhub.core.settings import REPO_ROOT
from gridhub.simulate import generate
from gridhub.simulate.hard import CALL_TAKER_PATHS, OTHER_CATALOGUE
from gridhub.simulate.text import CATEGORIES

HUB_TABLE = yaml.safe_load((REPO_ROOT / "deploy" / "categories.yaml").read_text(encoding="utf-8"))


def _hub_code_tables() -> dict[str, dict[str, str]]:
    """The hub's four-platforms code tables (taxonomy v2: one per deployment catalogue), by id."""
    tables = HUB_TABLE["four_platforms"]["tables"]
    assert tables, "the hub's categories.yaml has no four-platforms code table"
    return {str(t["id"]): {str(k): str(v) for k, v in t["codes"].items()} for t in tables}


def test_codes_and_paths_are_another_deployment_s() -> None:
    hub_tables = _hub_code_tables()
    hub_paths = set(HUB_TABLE["hotline_12345"]["paths"])
    for key, choices in OTHER_CATALOGUE.items():
        for code, name in choices:
            # a code the hub knows means something else there, in every table the hub has (as in
            # the real feeds of issue 13)
            for table_id, hub_codes in hub_tables.items():
                assert hub_codes.get(code) != CATEGORIES[key].taxonomy, (key, code, table_id)
            assert name
    assert not any(path in hub_paths for paths in CALL_TAKER_PATHS.values() for path in paths)
    assert any(code in hub_codes for hub_codes in hub_tables.values()
               for choices in OTHER_CATALOGUE.values() for code, _ in choices)


def test_hard_traffic_varies_and_never_reads_the_hub_s_category_table(monkeypatch: pytest.MonkeyPatch) -> None:
    real_open, real_read_text = builtins.open, Path.read_text

    def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        assert "categories.yaml" not in str(file), "the hard mode read the hub's category table"
        return real_open(file, *args, **kwargs)

    def guarded_read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        assert self.name != "categories.yaml", "the hard mode read the hub's category table"
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(Path, "read_text", guarded_read_text)
    records = [r for r in generate(5, 10, 1800, realism="hard") if r.kind in ("report", "update", "redelivery")]
    orders = [r.doc for r in records if r.source == "hotline-12345"]
    events = [r.doc for r in records if r.source == "four-platforms"]
    paths = Counter(o.get("categoryName") for o in orders)
    assert paths[None] > 0 and paths["其他/其他"] > 0 and len(paths) > 20
    assert sum("streetCode" not in o for o in orders) > len(orders) * 0.4
    assert sum("lng" not in o for o in orders) > len(orders) * 0.25
    assert len({e["categoryCode"] for e in events}) > 15
    assert any("lng" not in e for e in events)


def test_easy_mode_is_unchanged_by_the_hard_mode_s_existence() -> None:
    easy = [r.value() for r in generate(3, 10, 600)]
    again = [r.value() for r in generate(3, 10, 600, realism="easy")]
    hard = [r.value() for r in generate(3, 10, 600, realism="hard")]
    assert easy == again and easy != hard
