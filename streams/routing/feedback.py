"""Feedback authenticity: the agency of a feedback record is where it came from, never what it says.

Each agency writes its feedback to its own topic ``feedback.<county>.<agency>``
(CONTRACTS.md 5), where the secured broker grants WRITE to that agency's
principal alone (gridhub/infra/secure.py).  The shared ``feedback`` topic is
written only by the hub: by the gateway, which stamps the agency its bearer
token belongs to, and by the relay below, which stamps the agency named by
the topic a record was read from.  Routing (streams/routing/agents.py) then
believes the :data:`AGENCY_HEADER` and dead-letters a record whose body names
another agency.

Why a relay instead of routing subscribing to the agency topics itself:

* routing's table is co-partitioned with its inputs (keyed by case id, one
  partition count); ~2,600 agency topics of a province at 12 partitions each
  would be 31,000 partitions, while a feedback topic per agency needs one;
* a regex subscription fetches the whole cluster's metadata on every refresh
  and rebalances the subscriber on every new agency topic (docs/benchmarks.md):
  that would stall routing's group each time.  The relay subscribes to an
  explicit list (the agency catalog's topics that exist: ``gridhub topics
  ensure --dispatch`` creates them ahead), looks for new ones by name once a
  minute, and only its own small group rebalances when one appears.

Delivery: a batch is forwarded with ``acks=all`` and only then committed, so
a crash re-forwards (the same feedback twice is already idempotent in
routing: ``applied`` keys by action and time).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from mode import Service

from gridhub.core import topics as T
from gridhub.core.dlq import DLQ_MAX_VALUE, dead_letter_headers, fit_dead_letter
from gridhub.core.logging import get_logger
from gridhub.core.settings import Settings

log = get_logger(__name__)

AGENCY_HEADER = T.FEEDBACK_AGENCY_HEADER
VIA_HEADER = T.FEEDBACK_VIA_HEADER
#: How often the relay looks for agency topics created since it started (seconds): new agencies are
#: rare (a catalog change), and a minute's delay on the first feedback of a new agency is harmless.
RESCAN_SECONDS = 60.0


feedback_topic = T.feedback_topic


def agency_of_topic(settings: Settings, topic: str) -> str | None:
    """The agency a physical per-agency feedback topic belongs to, or None for any other topic."""
    prefix = settings.topic(T.FEEDBACK) + "."
    if not topic.startswith(prefix):
        return None
    agency = topic[len(prefix):]
    return agency if agency.count(".") == 1 and all(agency.split(".")) else None


def verified_agency(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """The agency a hub process stamped on a ``feedback`` record (None: an unverified record)."""
    for key, value in headers or ():
        if key == AGENCY_HEADER and value:
            return value.decode("utf-8", "replace")
    return None


def relay_headers(topic: str, agency: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """The forwarded record's headers: only the hub's (an agency's own ``gridhub.*`` headers are dropped)."""
    return [(AGENCY_HEADER, agency.encode()), (VIA_HEADER, f"topic:{topic}".encode()),
            ("gridhub.source", f"{topic}:{partition}:{offset}".encode())]


def catalog_agencies(settings: Settings) -> list[str]:
    """Every agency of the routing rules' catalog that may receive a dispatch (and so send feedback)."""
    from gridhub.core.agencies import catalog_for_rules

    return catalog_for_rules(settings.routing_rules).dispatch_agencies()


def existing_topics(settings: Settings, names: list[str]) -> list[str]:
    """Which of ``names`` (physical) exist, described by name (never the whole cluster's metadata)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="gridhub-feedback-relay",
                             **settings.kafka_client_options())
    try:
        found = []
        for info in admin.describe_topics(names):
            if info.get("error_code", 0) == 0 and info.get("partitions"):
                found.append(info["name"])
        return sorted(found)
    finally:
        admin.close()


class FeedbackRelay(Service):
    """``feedback.<county>.<agency>`` -> ``feedback`` with the agency from the topic name."""

    def __init__(self, settings: Settings, agencies: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._agencies = agencies
        self.forwarded = 0

    async def on_start(self) -> None:
        self.add_future(self._supervise())

    async def _supervise(self) -> None:
        """Run the relay; after an error (broker away, a commit lost to a rebalance) start it again.

        Nothing is lost: offsets are committed only after the forwards were acknowledged, so a
        restart re-reads (and re-forwards) at most the last batch, which routing applies once.
        """
        while not self.should_stop:
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("feedback_relay_restart", error=f"{type(exc).__name__}: {exc}")
                await self.sleep(5.0)

    async def _run(self) -> None:
        s = self.settings
        agencies = self._agencies if self._agencies is not None else catalog_agencies(s)
        names = [s.topic(feedback_topic(a)) for a in agencies]
        consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=f"{s.faust_app_id}.feedback-relay",
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    client_id="gridhub-feedback-relay", **s.kafka_client_options())
        producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all",
                                    client_id="gridhub-feedback-relay", **s.kafka_client_options())
        await consumer.start()
        await producer.start()
        subscribed: list[str] = []
        next_scan = 0.0
        out = s.topic(T.FEEDBACK)
        try:
            while not self.should_stop:
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + RESCAN_SECONDS
                    try:
                        found = await asyncio.get_running_loop().run_in_executor(None, existing_topics, s, names)
                    except Exception as exc:  # the broker is away: keep the current subscription
                        log.warning("feedback_relay_scan_failed", error=f"{type(exc).__name__}: {exc}")
                        found = subscribed
                    if found and found != subscribed:
                        consumer.subscribe(found)
                        subscribed = found
                        log.info("feedback_relay_subscribed", topics=len(found), agencies=len(names))
                if not subscribed:
                    await self.sleep(1.0)
                    continue
                batch = await consumer.getmany(timeout_ms=1000)
                futures = []
                for tp, records in batch.items():
                    agency = agency_of_topic(s, tp.topic)
                    for rec in records:
                        key, value = rec.key, rec.value or b""
                        if agency is None:  # not an agency topic (cannot happen with explicit names)
                            continue
                        headers = relay_headers(tp.topic, agency, tp.partition, rec.offset)
                        dest = out
                        if len(value) > DLQ_MAX_VALUE:  # no feedback is this big: a reference to dlq
                            dest = s.topic(T.DLQ)
                            value, headers = fit_dead_letter(value, [*headers, *dead_letter_headers(
                                "feedback", f"feedback record of {len(value)} bytes is too large to relay",
                                tp.topic, tp.partition, rec.offset)])
                        futures.append(await producer.send(dest, key=key, value=value, headers=headers))
                if futures:
                    await asyncio.gather(*futures)  # acks=all for every forwarded record ...
                    await consumer.commit()  # ... before the agency topics' offsets move
                    self.forwarded += len(futures)
                    log.info("feedback_relayed", records=len(futures))
        finally:
            await consumer.stop()
            await producer.stop()
