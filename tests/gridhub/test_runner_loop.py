"""gridhub/runner.py: GRIDHUB_EVENT_LOOP picks the loop the whole worker runs on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop

from gridhub.core.settings import Settings
from gridhub.runner import install_event_loop


@pytest.fixture
def restore_loop() -> Iterator[None]:
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.get_event_loop().close()
    asyncio.set_event_loop_policy(policy)
    asyncio.set_event_loop(None)


@pytest.mark.parametrize("choice, loop_type", [("uvloop", uvloop.Loop), ("asyncio", asyncio.SelectorEventLoop)])
def test_the_chosen_loop_is_the_current_one(choice: str, loop_type: type, restore_loop: None) -> None:
    loop = install_event_loop(choice)
    assert isinstance(loop, loop_type)
    # mode's services take asyncio.get_event_loop() when they first need a loop: it must be this one.
    assert asyncio.get_event_loop() is loop

    async def running() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    assert loop.run_until_complete(running()) is loop


def test_the_setting_defaults_to_uvloop_and_refuses_others(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().event_loop == "uvloop"
    monkeypatch.setenv("GRIDHUB_EVENT_LOOP", "asyncio")
    assert Settings().event_loop == "asyncio"
    monkeypatch.setenv("GRIDHUB_EVENT_LOOP", "tokio")
    with pytest.raises(ValueError):
        Settings()
