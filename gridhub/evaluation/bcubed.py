"""B-cubed precision and recall of a clustering (Bagga & Baldwin 1998; Amigo et al. 2009).

For every item: precision = share of the items in its *predicted* cluster that share its
*true* cluster; recall = share of the items in its true cluster that share its predicted
cluster.  The totals are the means over items.  B-cubed is the measure that rewards neither
one giant case (recall 1, precision low) nor one case per report (precision 1, recall low),
and it weighs every report equally, which is what an analyst counting cases sees.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Hashable, Mapping, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Hashable)


@dataclass(frozen=True)
class BCubed:
    precision: float
    recall: float
    items: int

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def bcubed(truth: Mapping[K, V], predicted: Mapping[K, V]) -> BCubed:
    """``truth`` and ``predicted`` map every item to a cluster label (same item keys)."""
    if set(truth) != set(predicted):
        raise ValueError("truth and predicted must label the same items")
    if not truth:
        return BCubed(1.0, 1.0, 0)
    pair = Counter((truth[i], predicted[i]) for i in truth)
    t_size = Counter(truth.values())
    p_size = Counter(predicted.values())
    precision = recall = 0.0
    for (t, p), n in pair.items():
        # each of the n items in (t, p) has n same-true items in its predicted cluster of size p_size
        precision += n * n / p_size[p]
        recall += n * n / t_size[t]
    return BCubed(precision / len(truth), recall / len(truth), len(truth))
