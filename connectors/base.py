"""The one interface every connector implements.

Modelled on Kafka Connect's SourceTask / SinkTask split: a *Source* turns
documents from the outside world (HTTP, files, MQTT) into raw Kafka records
and acknowledges its origin only after Kafka acknowledged them; a *Sink*
takes batches of Kafka records out to a destination (ClickHouse, webhooks)
and says, by exception type, whether a failure is worth retrying.

Both are ``mode.Service``s: they are started and stopped by the worker (or a
CLI command) and own their clients' lifecycles.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Sequence

from mode import Service

from gridhub.core.errors import DataError, RetriableError

__all__ = ["DataError", "RawRecord", "RetriableError", "Sink", "Source"]


@dataclass(frozen=True)
class RawRecord:
    """One record for or from Kafka, bytes untouched."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None
    offset: int | None = None
    timestamp_ms: int | None = None


class Source(Service, abc.ABC):
    """Brings outside documents in as raw records on a ``raw.*`` topic."""

    @abc.abstractmethod
    async def deliver(self, records: Sequence[RawRecord]) -> None:
        """Produce ``records`` with ``acks=all``; return only when Kafka acknowledged all of them."""


class Sink(Service, abc.ABC):
    """Writes batches of Kafka records out of the hub."""

    @abc.abstractmethod
    async def write(self, batch: Sequence[RawRecord]) -> None:
        """Write one batch. Raise :class:`RetriableError` or :class:`DataError`; return only when durable."""
