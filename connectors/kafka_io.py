"""Kafka producing for the connectors: acknowledged writes of raw records.

Two flavours, because the connectors live in two worlds:

* :class:`RawProducer`, a ``mode.Service`` around aiokafka's
  ``AIOKafkaProducer``, for the long-running connectors (HTTP gateway, MQTT
  bridge) that run on the worker's event loop.  ``deliver`` returns only once
  Kafka acknowledged every record with ``acks=all``: that is the moment a
  connector may acknowledge its origin (202 to the HTTP client, PUBACK to the
  MQTT broker).
* :func:`sync_producer` / :func:`produce_batch`, kafka-python, for the
  command-line tools (file import, registry load, simulator), which are
  plain blocking programs with no event loop of their own.
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterable, Sequence

from kafka import KafkaProducer
from mode import Service

from connectors.base import RawRecord, RetriableError
from gridhub.core.kafka_admin import make_producer
from gridhub.core.logging import get_logger
from gridhub.core.settings import Settings

log = get_logger(__name__)

#: Largest record the connectors produce (bytes).  Kafka's default
#: ``message.max.bytes`` is 1 MiB + record overhead; staying at 1 MiB keeps every
#: raw document acceptable to a default-configured broker.
MAX_RECORD_BYTES = 1024 * 1024


class RawProducer(Service):
    """aiokafka producer with ``acks=all`` and idempotence, started/stopped with its owner."""

    def __init__(self, settings: Settings, *, client_id: str = "gridhub-connector", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.client_id = client_id
        self._producer: Any = None
        self.kafka_state = "stopped"
        self.last_error: str | None = None

    def _make(self) -> Any:
        from aiokafka import AIOKafkaProducer

        return AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id=self.client_id,
            acks="all",
            # Idempotent producer: a retried send after a lost ack does not duplicate the record.
            enable_idempotence=True,
            # 30 s: long enough to ride out a leader election, short enough that a client is answered.
            request_timeout_ms=30_000,
            max_request_size=MAX_RECORD_BYTES + 64 * 1024,
            linger_ms=5,  # a few ms of batching: many small documents arrive together
            **self.settings.kafka_client_options(),
        )

    async def on_start(self) -> None:
        self.kafka_state = "connecting"
        # Connect in the background: a broker that is not up yet must neither kill nor block the
        # worker; until connected, deliver() raises RetriableError (the gateway answers 503).
        self.add_future(self._connect())

    async def _connect(self) -> None:
        while not self.should_stop:
            producer = self._make()
            try:
                await producer.start()
            except Exception as exc:  # aiokafka raises KafkaConnectionError and friends
                self.last_error = type(exc).__name__
                log.warning("kafka_producer_connect_failed", client_id=self.client_id, error=str(exc))
                try:
                    await producer.stop()
                except Exception:
                    pass
                await self.sleep(2.0)
                continue
            self._producer = producer
            self.kafka_state = "ready"
            log.info("kafka_producer_started", client_id=self.client_id, bootstrap=self.settings.kafka_bootstrap)
            return

    async def wait_ready(self, timeout: float = 30.0) -> bool:
        """Wait until connected (for tests and CLI tools); False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.ready:
            if asyncio.get_running_loop().time() > deadline or self.should_stop:
                return False
            await asyncio.sleep(0.05)
        return True

    async def on_stop(self) -> None:
        if self._producer is not None:
            try:
                await self._producer.stop()  # flushes what is still buffered
            finally:
                self._producer = None
        self.kafka_state = "stopped"

    @property
    def ready(self) -> bool:
        return self.kafka_state == "ready" and self._producer is not None

    async def deliver(self, records: Sequence[RawRecord]) -> list[Any]:
        """Produce all ``records``; return their metadata once Kafka acknowledged every one.

        Raises :class:`RetriableError` if Kafka is unavailable or any send failed; the caller
        then must not acknowledge the origin (it will redeliver, and the deterministic keys make
        that harmless).
        """
        if not self.ready:
            raise RetriableError(f"Kafka producer is {self.kafka_state}")
        try:
            futures = [await self._producer.send(r.topic, r.value, key=r.key, headers=list(r.headers) or None)
                       for r in records]
            results = await asyncio.gather(*futures)
        except Exception as exc:
            self.last_error = type(exc).__name__
            raise RetriableError(f"Kafka did not acknowledge: {type(exc).__name__}: {exc}") from exc
        return list(results)


# --- blocking side (command-line tools) -------------------------------------------------------

def sync_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """The command-line tools' producer: :func:`gridhub.core.kafka_admin.make_producer` (acks=all,
    idempotent) sized for the largest raw document; tools block on ``flush()`` before reporting success."""
    options: dict[str, Any] = dict(client_id="gridhub-cli", max_request_size=MAX_RECORD_BYTES + 64 * 1024)
    options.update(overrides)
    return make_producer(settings, **options)


def produce_batch(producer: KafkaProducer, records: Iterable[RawRecord], timeout: float = 60.0) -> int:
    """Send ``records`` and wait until Kafka acknowledged all of them; returns how many.

    Raises :class:`RetriableError` when any record was not acknowledged.
    """
    futures = [producer.send(r.topic, value=r.value, key=r.key, headers=list(r.headers) or None) for r in records]
    producer.flush(timeout=timeout)
    for f in futures:
        try:
            f.get(timeout=timeout)
        except Exception as exc:
            raise RetriableError(f"Kafka did not acknowledge: {type(exc).__name__}: {exc}") from exc
    return len(futures)
