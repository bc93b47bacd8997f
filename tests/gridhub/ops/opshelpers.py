"""Helpers of the ops tests: produce / read a namespace's topics, run the CLI in-process."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import pytest
from click.testing import CliRunner, Result

from gridhub.cli import main
from gridhub.ops.common import make_producer, read_to_end, settings_for
from gridhub.core.kafka_admin import delete_namespace
from gridhub.core.settings import Settings, get_settings

Row = tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes]], int]


def produce(settings: Settings, topic: str, records: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """Produce to the namespaced ``topic``; returns (partition, offset) of each record."""
    producer = make_producer(settings)
    try:
        futures = [producer.send(settings.topic(topic), key=r.get("key"), value=r.get("value"),
                                 headers=r.get("headers") or [], partition=r.get("partition"),
                                 timestamp_ms=r.get("timestamp")) for r in records]
        producer.flush()
        return [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()


def read_all(settings: Settings, physical: str) -> list[Row]:
    """Every record of a physical topic as comparable rows, sorted by (partition, offset)."""
    return [(r.partition, r.offset, r.key, r.value, [(k, v) for k, v in r.headers or []], r.timestamp)
            for r in read_to_end(settings, [physical])]


def run_cli(settings: Settings, *args: str) -> Result:
    """``gridhub ARGS`` in-process with the environment of ``settings``."""
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(main, list(args), env=settings.as_env(), catch_exceptions=False)
    finally:
        get_settings.cache_clear()


@pytest.fixture
def other_settings(settings: Settings) -> Iterator[Settings]:
    """A second namespace beside the test's own (replay / import targets), removed afterwards."""
    other = settings_for(settings.namespace + "x", settings)
    yield other
    delete_namespace(other)
