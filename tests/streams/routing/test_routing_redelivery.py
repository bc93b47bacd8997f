"""streams/routing/agents.py: a redelivered input record re-sends the effects its transition produced.

The crash this covers (state written, sends not yet flushed, SIGKILL) is exercised against the real
broker by tests/scale/test_two_workers.py; here, the decision itself, without Kafka.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from types import SimpleNamespace
from typing import Any

import pytest

from streams.routing import agents
from streams.routing import lifecycle as lc


def event(offset: int, topic: str = "t.cases", partition: int = 3) -> Any:
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition, offset=offset))


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[lc.Effects]:
    out: list[lc.Effects] = []

    async def send(fx: lc.Effects) -> None:
        out.append(fx)

    monkeypatch.setattr(agents, "_send_effects", send)
    return out


def test_the_same_record_again_resends_what_it_produced(sent: list[lc.Effects]) -> None:
    fx = lc.Effects(dispatches=[{"dispatchId": "d-1", "agency": "330502.zhzf", "caseId": "c-1"}],
                    events=[{"event_id": "e-1", "case_id": "c-1"}])
    state = {"status": "dispatched", "fx_src": ["t.cases", 3, 41], "fx": asdict(fx)}
    assert asyncio.run(agents._resend_if_redelivered(event(41), state)) is True
    assert sent == [fx]


@pytest.mark.parametrize("other", [event(42), event(41, partition=4), event(41, topic="t.feedback")])
def test_any_other_record_is_processed_normally(sent: list[lc.Effects], other: Any) -> None:
    state = {"status": "dispatched", "fx_src": ["t.cases", 3, 41], "fx": asdict(lc.Effects())}
    assert asyncio.run(agents._resend_if_redelivered(other, state)) is False
    assert asyncio.run(agents._resend_if_redelivered(other, None)) is False
    assert sent == []
