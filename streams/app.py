"""The Faust application every hub worker runs.

Agents consume raw bytes (``value_serializer="raw"``) and decode
explicitly, so a malformed record is dead-lettered with its original bytes
instead of crashing the consumer (DESIGN.md, "Raw bytes in").  Domain
packages (``streams.ingest``, ``streams.fusion``, ``streams.routing``)
declare their topics, tables and agents against :data:`app` in their ``agents``
module; the runner imports those.  Building the app opens no connection; what
changes global state (the faust-streaming patch, the health endpoints and
timers) happens in :func:`prepare_worker`, which the runner calls once before
a worker starts.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, NoReturn

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import PartitionsMismatch

from gridhub.core import errors, metrics
from gridhub.core.dlq import dead_letter_headers, fit_dead_letter
from gridhub.core.logging import get_logger
from gridhub.core.settings import Settings, get_settings
from gridhub.core.topics import DLQ

if TYPE_CHECKING:
    from streams.delivery import Deliveries

log = get_logger(__name__)

#: The domain packages a worker loads, in pipeline order.
DOMAINS: list[str] = []


def _credentials(settings: Settings) -> faust.SASLCredentials | None:
    """SASL/SCRAM credentials when the cluster requires them (docs/security.md)."""
    if not settings.kafka_security_protocol.startswith("SASL"):
        return None
    ssl_context = settings.kafka_client_options().get("ssl_context")
    return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.secret("kafka_sasl_password"),
                                 mechanism=settings.kafka_sasl_mechanism, ssl_context=ssl_context)


def create_app(settings: Settings) -> faust.App:
    return faust.App(
        settings.faust_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=_credentials(settings),
        store=settings.store,
        datadir=str(settings.faust_datadir),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        producer_acks=-1,  # acks=all: a produced record survives a broker loss
        # Lets one produce request carry many small records (the e2e profile showed 29.5k mostly
        # tiny requests dominating socket time); see Settings.producer_linger_ms.
        producer_linger_ms=settings.producer_linger_ms,
        # aiokafka waits this long for a produce response AND for a topic to appear in its metadata
        # (AIOKafkaClient._wait_on_metadata).  Faust's default, 1200 s, let one record for a topic missing
        # from the metadata block Faust's single changelog-sending task for 20 minutes (every table write
        # behind it unconfirmed, and the conductor throttled to 10 records/s by "producer buffer full").
        # 60 s is twice Kafka's own producer default (request.timeout.ms 30 s) and half of
        # GRIDHUB_CONFIRM_TIMEOUT_S, so the refusal, naming its topic, arrives before the confirm gives up.
        producer_request_timeout=60.0,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_enabled=True,
        # At-least-once, idempotent at the edges; no Kafka transactions (DESIGN.md).
        processing_guarantee="at_least_once",
        table_cleanup_interval=30.0,
        logging_config=None,
    )


settings = get_settings()
app = create_app(settings)


#: RocksDB memory of ONE table partition (Faust opens a RocksDB per table partition: 12 per table, three
#: tables).  Faust's defaults are sized for one big database, per partition: 3 write buffers of 64 MiB and
#: a 2 GiB block cache, i.e. up to 2.3 GiB of memtables per 12-partition table under a write-heavy load.
#: With a week of province-scale fusion state the worker peaked at 903.9 MB RSS with those and at
#: 277.7 MB with these, at no measurable CPU cost (`gridhub bench state`, docs/benchmarks.md).  2 x 4 MiB buffers flush
#: smaller SST files more often (the same bytes on disk); 8 MiB of block cache per partition holds the
#: hot index and filter blocks of the open cases.
ROCKSDB_PARTITION_OPTIONS = {"write_buffer_size": 4 << 20, "max_write_buffer_number": 2,
                             "block_cache_size": 8 << 20}


def table_options() -> dict[str, int]:
    """``options=`` of every ``app.Table``: a fresh dict each time (Faust pops keys out of the one it gets)."""
    return dict(ROCKSDB_PARTITION_OPTIONS)


def topic(name: str, **kwargs: object) -> faust.TopicT:
    """A Faust topic for a contract topic name, in this worker's namespace."""
    return app.topic(settings.topic(name), key_type=bytes, value_type=bytes, **kwargs)  # type: ignore[arg-type]


async def dead_letter(event: faust.EventT, stage: str, reason: str, out: "Deliveries | None" = None) -> None:
    """Send the event's ORIGINAL key and bytes to ``dlq`` with the ``error.*`` headers; never raises
    for the record's content, so one bad record cannot stop its partition.

    With ``out`` (the agent's :class:`streams.delivery.Deliveries`) the dead letter is one of the
    batch's effects: confirmed by the broker before the bad input is acknowledged."""
    msg = event.message
    metrics.DEAD_LETTERS.labels(stage=stage).inc()
    log.warning("dead_letter", stage=stage, reason=reason, topic=msg.topic, partition=msg.partition,
                offset=msg.offset)
    # A value too large to dead-letter whole goes as its first KiB + size + sha256 (gridhub/core/dlq.py):
    # a dead letter Kafka refused would raise here and stall the partition it was clearing.
    value, headers = fit_dead_letter(msg.value or b"", dead_letter_headers(stage, reason, msg.topic, msg.partition,
                                                                          msg.offset))
    if out is not None:
        await out.send(_dlq, key=msg.key, value=value, headers=headers)
    else:
        await _dlq.send(key=msg.key, value=value, headers=headers)


#: Exit status of :func:`fail_stop` (defined in the kernel, for the tools that restart workers).
EXIT_FAIL_STOP = errors.EXIT_FAIL_STOP


def fail_stop(event: faust.EventT, stage: str, exc: BaseException) -> NoReturn:
    """End the worker process at once, without acknowledging ``event``: for infrastructure errors.

    Why not ``raise``: an exception out of an agent passes through the ``finally`` of
    Faust's stream iterator, which acknowledges the record, and the next commit makes it
    lost; dead-lettering would lose it as well.  Exiting here, like a SIGKILL, commits
    nothing; the restarted worker (systemd, Kubernetes, ``gridhub run`` under a supervisor)
    redelivers the record, which the tests show is safe (tests/streams/fusion/test_fusion_worker.py).
    """
    msg = event.message
    exit_now("worker_fail_stop", stage=stage, topic=msg.topic, partition=msg.partition, offset=msg.offset,
             error=f"{type(exc).__name__}: {exc}",
             hint="infrastructure error, not bad data: the record stays uncommitted for the restarted worker")


def exit_now(reason: str, **fields: Any) -> NoReturn:
    """Log ``reason`` (critical) and exit with :data:`EXIT_FAIL_STOP` at once: nothing is committed."""
    log.critical(reason, exit_status=EXIT_FAIL_STOP, **fields)
    logging.shutdown()  # flush the handlers: os._exit skips them
    sys.stderr.flush()
    os._exit(EXIT_FAIL_STOP)


@contextmanager
def stop_on_infrastructure_error(event: faust.EventT, stage: str) -> Iterator[None]:
    """:func:`fail_stop` on a Kafka or Faust topology error in the block; data errors are the caller's."""
    try:
        yield
    except (PartitionsMismatch, KafkaError) as exc:
        fail_stop(event, stage, exc)


async def ensure_topics(names: list[str]) -> bool:
    """Create / align ``names`` as deploy/topics.yaml says, off the event loop; logged, never raised."""
    from gridhub.core.kafka_admin import ensure_topics_off_loop

    return await ensure_topics_off_loop(settings, names, failure_event="topics_not_ensured")


_dlq = topic(DLQ)


def prepare_worker() -> None:
    """Patch faust-streaming and register ``/metrics``, ``/healthz`` and the lag timer on :data:`app`.

    Called by the runner before a worker starts (idempotent).  The patch must be in place before
    any consumer runs: as released, Faust loses stream records after a rebalance (streams/faust_fixes.py).
    """
    from streams import faust_fixes, health

    faust_fixes.install()
    health.install(app, settings)
