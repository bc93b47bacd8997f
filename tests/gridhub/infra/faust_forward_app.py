"""A one-agent Faust worker used by test_infra_roundtrips.py (not a test module).

It reads Avro ``Report`` records from ``infra.in``, decodes them, stamps
``case_id`` and forwards the re-encoded record to ``infra.out``: proof that
a real Faust consumer and producer run against the local Kafka and that the
single-object Avro encoding survives the trip.  Settings come from the
``GRIDHUB_*`` environment the ``worker`` fixture passes.
"""

from __future__ import annotations

from typing import Any

import faust

from gridhub.core.codec import codec
from gridhub.core.settings import Settings

settings = Settings()
(settings.run_dir / "faust").mkdir(parents=True, exist_ok=True)
app = faust.App(
    settings.faust_app_id,
    broker=f"kafka://{settings.kafka_bootstrap}",
    store="memory://",
    datadir=str(settings.faust_datadir),
    key_serializer="raw",
    value_serializer="raw",
    topic_partitions=settings.partitions,
    web_port=settings.web_port,
    web_bind="127.0.0.1",
    producer_acks=-1,
)
source = app.topic(settings.topic("infra.in"), key_type=bytes, value_type=bytes)
sink = app.topic(settings.topic("infra.out"), key_type=bytes, value_type=bytes)
reports = codec("Report")


@app.agent(source)
async def forward(stream: Any) -> None:
    async for event in stream.events():
        record = reports.decode(event.value)
        record["case_id"] = f"forwarded:{record['report_id']}"
        await sink.send(key=event.key, value=reports.encode(record))


if __name__ == "__main__":
    from gridhub.core.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    worker = faust.Worker(app, loglevel=settings.log_level, redirect_stdouts=False, override_logging=False)
    worker.spinner = None
    worker.execute_from_commandline()
