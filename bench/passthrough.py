"""The baseline of ``gridhub bench e2e``: a Faust worker that copies raw bytes, with no logic.

Same client stack as the hub (faust-streaming on aiokafka, raw serializers,
acks=all, at-least-once), same broker, same topics' partition count; the only
difference is what happens per record.  So ``throughput / baseline`` says what
the hub's own logic costs, not what Kafka or Faust cost.

Run as ``python -m bench.passthrough worker`` with ``GRIDHUB_NAMESPACE`` set;
it reads ``raw.*`` of that namespace and writes ``passthrough.out``.
"""

from __future__ import annotations

from typing import Any

import faust

from gridhub.core.settings import get_settings
from gridhub.core.topics import RAW

settings = get_settings()
app = faust.App(
    settings.faust_app_id + "-passthrough",
    broker=f"kafka://{settings.kafka_bootstrap}",
    store="memory://",
    datadir=str(settings.run_dir / "faust" / (settings.faust_app_id + "-passthrough")),
    key_serializer="raw",
    value_serializer="raw",
    topic_partitions=settings.partitions,
    producer_acks=-1,
    producer_linger_ms=settings.producer_linger_ms,  # as streams/app.py: same client settings, so the ratio is the logic's cost
    web_port=settings.web_port,
    web_bind="127.0.0.1",
    processing_guarantee="at_least_once",
)
sources = app.topic(*(settings.topic(name) for name in RAW.values()), key_type=bytes, value_type=bytes)
out = app.topic(settings.topic("passthrough.out"), key_type=bytes, value_type=bytes)


@app.agent(sources, name="passthrough")
async def passthrough(stream: Any) -> None:
    async for event in stream.events():
        await out.send(key=event.key, value=event.value)


if __name__ == "__main__":
    app.main()
