"""B-cubed precision / recall (Amigo et al. 2009 worked cases)."""

from __future__ import annotations

import pytest

from gridhub.evaluation.bcubed import bcubed


def test_perfect_clustering() -> None:
    s = bcubed({1: "a", 2: "a", 3: "b"}, {1: "x", 2: "x", 3: "y"})
    assert (s.precision, s.recall, s.f1) == (1.0, 1.0, 1.0)


def test_one_big_cluster_has_full_recall_low_precision() -> None:
    s = bcubed({1: "a", 2: "a", 3: "b", 4: "c"}, {1: "x", 2: "x", 3: "x", 4: "x"})
    assert s.recall == 1.0
    assert s.precision == pytest.approx((2 / 4 + 2 / 4 + 1 / 4 + 1 / 4) / 4)


def test_singletons_have_full_precision_low_recall() -> None:
    s = bcubed({1: "a", 2: "a", 3: "a"}, {1: "x", 2: "y", 3: "z"})
    assert s.precision == 1.0 and s.recall == pytest.approx(1 / 3)


def test_items_must_match() -> None:
    with pytest.raises(ValueError):
        bcubed({1: "a"}, {2: "a"})
