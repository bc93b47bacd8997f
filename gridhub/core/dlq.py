"""Dead letters: the original bytes, with ``error.*`` headers saying why.

Every stage that rejects input calls :func:`dead_letter_headers` so that the
headers are the same everywhere and ``gridhub dlq`` can read them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

HEADER_PREFIX = "error."

#: The largest record any hub producer sends: Faust's ``producer_max_request_size`` default
#: (1,000,000 bytes); aiokafka's own default (1 MiB) and the broker's ``message.max.bytes``
#: (1,048,588) are larger, so this is the limit that bites first.
KAFKA_RECORD_LIMIT = 1_000_000
#: A dead letter's value is kept whole up to this size: 100 kB below the record limit leave room
#: for the key, the ``error.*`` headers (a reason is cut at 500 characters) and the batch overhead.
DLQ_MAX_VALUE = 900_000
#: What a too-large dead letter keeps of its value: the first KiB, enough to see which source,
#: document or device it was (the whole original stays in its raw topic for the raw retention).
PREVIEW_BYTES = 1024


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


def reference_headers(value: bytes) -> list[tuple[str, bytes]]:
    """``error.size`` / ``error.sha256`` / ``error.truncated`` of a value kept only as its first KiB."""
    return [(HEADER_PREFIX + "truncated", b"true"), (HEADER_PREFIX + "size", str(len(value)).encode()),
            (HEADER_PREFIX + "sha256", hashlib.sha256(value).hexdigest().encode())]


def fit_dead_letter(value: bytes, headers: list[tuple[str, bytes]],
                    limit: int = DLQ_MAX_VALUE) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The dead letter as sent: whole when it fits, else its first KiB plus size and sha256 headers.

    Why: a dead letter that Kafka refuses raises out of the stage that was getting rid of a bad
    record, and the partition stalls on it (issue 16).  The reference still identifies the record
    (its first KiB, the source topic/partition/offset headers) and proves which bytes it was.
    """
    if len(value) <= limit:
        return value, headers
    return value[:PREVIEW_BYTES], [*headers, *reference_headers(value)]
