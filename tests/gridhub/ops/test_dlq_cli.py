"""gridhub dlq ls | show | retry against a real broker."""

from __future__ import annotations

import re

import pytest

from gridhub.core.dlq import dead_letter_headers
from gridhub.ops.dlq import RETRY_HEADER, retried_refs
from gridhub.core.kafka_admin import ensure_topics
from gridhub.core.settings import Settings
from helpers.kafka import produce, read_all
from helpers.cli import run_cli

pytestmark = pytest.mark.integration

BROKEN = '{"orderNo": "12345-0001", "content": "路灯不亮", '.encode()


def _dead_letters(settings: Settings) -> tuple[int, int]:
    """One ingest dead letter of a raw hotline record, one fusion dead letter of binary bytes."""
    ensure_topics(settings, ["raw.hotline-12345", "dlq", "reports"])
    [(part, off)] = produce(settings, "raw.hotline-12345", [{"key": b"12345-0001", "value": BROKEN, "partition": 4,
                                                            "headers": [("via", b"gateway")]}])
    source = settings.topic("raw.hotline-12345")
    produce(settings, "dlq", [
        {"key": b"12345-0001", "value": BROKEN, "partition": 2,
         "headers": [("via", b"gateway")] + dead_letter_headers("ingest", "invalid JSON: unterminated object",
                                                                source, part, off)},
        {"key": None, "value": b"\xc3\x01\x99\x00binary", "partition": 2,
         "headers": dead_letter_headers("fusion", "unknown writer schema fingerprint", settings.topic("reports"), 3, 9)},
    ])
    return part, off


def _refs(output: str) -> list[str]:
    """The ref column of a ``dlq ls`` table (times contain "2:1" too: parse, do not search)."""
    return [line.split()[0] for line in output.splitlines() if re.match(r"^\d+:\d+\s", line)]


def test_ls_filters_and_show(settings: Settings) -> None:
    _dead_letters(settings)
    listed = run_cli(settings, "dlq", "ls")
    assert listed.exit_code == 0, listed.output
    assert _refs(listed.output) == ["2:0", "2:1"] and "路灯不亮" in listed.output
    assert _refs(run_cli(settings, "dlq", "ls", "--stage", "ingest", "--reason", "JSON").output) == ["2:0"]
    assert _refs(run_cli(settings, "dlq", "ls", "--topic", "reports").output) == ["2:1"]
    assert _refs(run_cli(settings, "dlq", "ls", "--since", "2030-01-01T00:00:00+00:00").output) == []
    shown = run_cli(settings, "dlq", "show", "2:1")
    assert shown.exit_code == 0
    assert "error.stage = fusion" in shown.output and "c3 01 99 00" in shown.output  # hex dump of non-UTF-8
    text = run_cli(settings, "dlq", "show", "2:0")
    assert BROKEN.decode() in text.output


def test_retry_reinjects_original_bytes_once(settings: Settings) -> None:
    part, off = _dead_letters(settings)
    source = settings.topic("raw.hotline-12345")
    dry = run_cli(settings, "dlq", "retry", "2:0", "--dry-run")
    assert "would-retry" in dry.output and len(read_all(settings, source)) == 1

    first = run_cli(settings, "dlq", "retry", "2:0")
    assert first.exit_code == 0 and "retried" in first.output, first.output
    rows = read_all(settings, source)
    assert len(rows) == 2
    partition, _, key, value, headers, _ = rows[-1]
    assert (partition, key, value) == (part, b"12345-0001", BROKEN)
    assert headers == [("via", b"gateway"), (RETRY_HEADER, b"2:0")]  # error.* dropped, marker header added
    assert "2:0" in retried_refs(settings)

    second = run_cli(settings, "dlq", "retry", "--stage", "ingest")
    assert "already retried" in second.output
    assert len(read_all(settings, source)) == 2

    forced = run_cli(settings, "dlq", "retry", "2:0", "--force")
    assert "retried" in forced.output and len(read_all(settings, source)) == 3
