"""The baseline of ``gridhub bench e2e``: a Faust worker that copies raw bytes, with no logic.

It must pay what the hub pays per record and nothing more, so that ``throughput / baseline``
says what the hub's own logic costs, not what Kafka or Faust cost.  So it is built from the
hub's own parts rather than a look-alike:

* the app is ``streams.app.create_app`` (the hub's Faust settings: acks=all, the producer
  linger ``GRIDHUB_PRODUCER_LINGER_MS``, raw serializers, at-least-once, the topic partitions
  and replication, SASL when the cluster needs it), under its own app id;
* the worker runs on the hub's event loop (``gridhub.runner.install_event_loop``,
  ``GRIDHUB_EVENT_LOOP``) with the hub's faust-streaming fixes installed;
* the agent reads the raw topics in per-partition batches (``streams.delivery.partition_batches``
  with ``GRIDHUB_BATCH_MAX_EVENTS`` / ``GRIDHUB_BATCH_WITHIN_MS``) and confirms every batch's
  records with the broker before the next batch (``Deliveries``), as the hub's agents do.

Run as ``python -m bench.passthrough`` with the ``GRIDHUB_*`` settings of a namespace; it reads
``raw.*`` of that namespace and writes ``passthrough.out``.  Logs "[^Worker]: Ready" when it is.
"""

from __future__ import annotations

from typing import Any

from gridhub.core.logging import get_logger
from gridhub.core.settings import Settings, get_settings
from gridhub.core.topics import RAW

log = get_logger(__name__)

OUT = "passthrough.out"


def passthrough_settings(settings: Settings) -> Settings:
    """The hub's settings under the pass-through's own app id (its own consumer group)."""
    return settings.model_copy(update={"app_id": settings.app_id + "-passthrough"})


def build_worker(settings: Settings) -> Any:
    import faust

    from gridhub.runner import install_event_loop

    loop = install_event_loop(settings.event_loop)
    from streams import faust_fixes
    from streams.app import create_app
    from streams.delivery import Deliveries, partition_batches

    faust_fixes.install()
    app = create_app(settings)
    sources = app.topic(*(settings.topic(name) for name in RAW.values()), key_type=bytes, value_type=bytes)
    out = app.topic(settings.topic(OUT), key_type=bytes, value_type=bytes)

    async def passthrough(stream: Any) -> None:
        deliveries = Deliveries("passthrough")
        async for events in partition_batches(stream, max_events=settings.batch_max_events,
                                              within_s=settings.batch_within_ms / 1000):
            for event in events:
                await deliveries.send(out, key=event.key, value=event.value)
            await deliveries.confirm(events)

    app.agent(sources, name="passthrough")(passthrough)
    log.info("passthrough_stack", event_loop=settings.event_loop, loop=type(loop).__name__,
             linger_ms=settings.producer_linger_ms, batch_max_events=settings.batch_max_events,
             batch_within_ms=settings.batch_within_ms)
    return faust.Worker(app, loglevel=settings.log_level, redirect_stdouts=False, override_logging=False, loop=loop)


def main() -> None:
    from gridhub.core.logging import configure_logging

    settings = passthrough_settings(get_settings())
    configure_logging(settings.log_level, settings.log_format)
    worker = build_worker(settings)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
