"""Dead letters: the original bytes, with ``error.*`` headers saying why.

Every stage that rejects input calls :func:`dead_letter_headers` so that the
headers are the same everywhere and ``gridhub dlq`` can read them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Sequence

HEADER_PREFIX = "error."


def dead_letter_headers(
    stage: str,
    reason: str,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    extra: dict[str, str] | None = None,
) -> list[tuple[str, bytes]]:
    """Headers for a dlq record. ``reason`` is one human sentence."""
    fields: dict[str, str] = {"stage": stage, "reason": reason, "at": str(int(time.time() * 1000))}
    if topic is not None:
        fields["topic"] = topic
    if partition is not None:
        fields["partition"] = str(partition)
    if offset is not None:
        fields["offset"] = str(offset)
    fields.update(extra or {})
    return [(HEADER_PREFIX + k, v.encode("utf-8")) for k, v in fields.items()]


@dataclass(frozen=True)
class DeadLetterInfo:
    stage: str
    reason: str
    topic: str | None
    partition: int | None
    offset: int | None
    at: int | None
    extra: dict[str, str]


def parse_dead_letter_headers(headers: Iterable[tuple[str, bytes]] | Sequence[tuple[str, bytes]] | None) -> DeadLetterInfo:
    fields = {k[len(HEADER_PREFIX):]: (v or b"").decode("utf-8", "replace")
              for k, v in (headers or []) if k.startswith(HEADER_PREFIX)}

    def _int(name: str) -> int | None:
        value = fields.pop(name, None)
        return int(value) if value not in (None, "") else None

    return DeadLetterInfo(
        stage=fields.pop("stage", "?"), reason=fields.pop("reason", "?"), topic=fields.pop("topic", None),
        partition=_int("partition"), offset=_int("offset"), at=_int("at"), extra=fields,
    )
