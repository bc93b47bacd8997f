"""Single raw documents of each source for the tests that shape their own inputs (canaries,
oversized bodies), drawn from the simulator: ``gridhub.simulate`` is the one generator of test data."""

from __future__ import annotations

import copy
from typing import Any, Iterator

from gridhub.simulate.generator import sample


class Documents:
    """Fresh first reports (not updates, not redeliveries) of each source, in delivery order, and the
    device registry that locates the simulated sensors."""

    def __init__(self, now_ms: int, seed: int, n: int = 3000) -> None:
        records, self.registry = sample(n, seed=seed, end_ms=now_ms)
        self._pools: dict[str, Iterator[dict[str, Any]]] = {
            source: iter([copy.deepcopy(r.doc) for r in records if r.source == source and r.kind == "report"])
            for source in ("four-platforms", "hotline-12345", "sensors")}

    def next(self, source: str) -> dict[str, Any]:
        try:
            return next(self._pools[source])
        except StopIteration:
            raise AssertionError(f"the simulated sample holds too few {source} reports: raise n") from None

    def four_platforms(self) -> dict[str, Any]:
        return self.next("four-platforms")

    def hotline(self) -> dict[str, Any]:
        return self.next("hotline-12345")
