"""Webhook delivery: dispatches for agencies that cannot consume Kafka.

The agency's Kafka topic ``dispatch.<agency>`` stays the source of truth;
this sink is just another consumer of it (consumer group
``<app id>.webhook``), for the agencies that ``deploy/agencies.yaml`` (or
``GRIDHUB_WEBHOOKS``) configures as webhooks.  No second copy of a dispatch
is written anywhere, and a replay of the topic re-delivers with the same
idempotency keys.

Run by the :class:`connectors.base.SinkRunner` (consume -> write -> dead-letter -> commit, with
each partition, i.e. agency, written concurrently: one agency's outage does not hold up
another's deliveries).  For each record, in partition order:

1. decode the Avro ``Dispatch``; undecodable -> refused (dead letter, stage
   ``webhook``), go on;
2. POST it as JSON with ``X-Gridhub-Timestamp``, ``X-Gridhub-Signature:
   sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`` and
   ``Idempotency-Key: <dispatchId>`` (``<dispatchId>:withdraw`` for a
   withdrawal, so a receiver that dedupes on the key still sees it);
3. 2xx: delivered.  408 / 425 / 429 / 5xx, timeouts and connection errors:
   retry after an exponential backoff with jitter (``Retry-After`` honoured
   up to the maximum backoff), for at least ``max_attempts`` attempts AND at
   least ``retry_for`` (default 3 min) since the first one: a receiver down
   for a restart or a short outage gets its dispatches when it is back, not
   a dead letter (issue 14).  Once one dispatch of a batch has used up its
   retries, the others of that batch for the same agency get one attempt
   each (the receiver is known to be down: a batch of 100 must not take 100
   retry windows).  Any other 4xx is the receiver refusing the data: no retry;
4. after the last attempt (or a refusal): refused; the runner sends the
   original bytes to ``dlq`` with the reason, acknowledged by Kafka
   (``acks=all``) before step 5;
5. the runner commits the partition's offset past the batch.

A crash between 2 and 5 re-delivers the record on restart with the same
``Idempotency-Key``: receivers see each dispatch once if they dedupe on it
(docs/agencies.md shows how).  Secrets come from the environment variable
or file the catalog names, and are never logged.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

import aiohttp

from connectors.base import RawRecord, Refused, Sink, SinkRunner
from connectors.webhook.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from gridhub.core import topics as T
from gridhub.core.agencies import AgencyCatalog, WebhookTarget, catalog_for_rules
from gridhub.core.codec import DecodeError, codec
from gridhub.core.logging import get_logger
from gridhub.core.metrics import WEBHOOK_DELIVERIES
from gridhub.core.settings import Settings

log = get_logger(__name__)

STAGE = "webhook"
_RETRIABLE_STATUS = {408, 425, 429}  # timeout, too early, too many requests; plus every 5xx


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    attempts: int
    reason: str = ""
    status: int | None = None


def idempotency_key(dispatch: dict[str, Any]) -> str:
    did = str(dispatch["dispatchId"])
    return did if dispatch.get("action", "dispatch") == "dispatch" else f"{did}:{dispatch['action']}"


def body_of(dispatch: dict[str, Any]) -> bytes:
    """The JSON body: the Dispatch record's fields, timestamps as epoch milliseconds."""
    return json.dumps(dispatch, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def backoff_ms(target: WebhookTarget, attempt: int, rng: random.Random) -> float:
    """Exponential, capped, with "equal jitter": half fixed, half random, so waits still grow."""
    base = min(target.max_backoff_ms, target.initial_backoff_ms * (2 ** (attempt - 1)))
    return base / 2 + rng.uniform(0, base / 2)


class WebhookDeliverer:
    """POSTs one dispatch with retries; knows nothing about Kafka (tested against a real HTTP server)."""

    def __init__(self, session: aiohttp.ClientSession, *, rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.session = session
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.clock = clock
        self.monotonic = monotonic

    async def deliver(self, target: WebhookTarget, dispatch: dict[str, Any], *, patient: bool = True) -> Outcome:
        """POST with retries: at least ``max_attempts`` and at least ``retry_for`` (module doc, step 3);
        ``patient=False``: a single attempt (the receiver is known to be down)."""
        try:
            secret = target.secret()
        except LookupError as exc:
            return Outcome(False, 0, str(exc))
        body = body_of(dispatch)
        key = idempotency_key(dispatch)
        reason = ""
        status: int | None = None
        began = self.monotonic()
        attempt = 0
        while True:
            attempt += 1
            timestamp = str(int(self.clock()))
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(secret, timestamp, body),
                IDEMPOTENCY_HEADER: key,
                "X-Gridhub-Agency": target.agency,
                "X-Gridhub-Attempt": str(attempt),
            }
            retry_after: float | None = None
            try:
                async with self.session.post(target.url, data=body, headers=headers,
                                             timeout=aiohttp.ClientTimeout(total=target.timeout_ms / 1000)) as resp:
                    status = resp.status
                    text = (await resp.text(errors="replace"))[:200]
                    if 200 <= status < 300:
                        WEBHOOK_DELIVERIES.labels(target.agency, "delivered").inc()
                        log.info("webhook_delivered", agency=target.agency, dispatch_id=dispatch["dispatchId"],
                                 attempt=attempt, status=status)
                        return Outcome(True, attempt, status=status)
                    reason = f"HTTP {status}: {text.strip()}" if text.strip() else f"HTTP {status}"
                    if status not in _RETRIABLE_STATUS and status < 500:
                        WEBHOOK_DELIVERIES.labels(target.agency, "refused").inc()
                        return Outcome(False, attempt, f"refused by the receiver: {reason}", status)
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                reason = f"{exc.__class__.__name__}: {exc}".rstrip(": ")
                status = None
            WEBHOOK_DELIVERIES.labels(target.agency, "failed").inc()
            elapsed_ms = (self.monotonic() - began) * 1000
            log.warning("webhook_attempt_failed", agency=target.agency, dispatch_id=dispatch["dispatchId"],
                        attempt=attempt, max_attempts=target.max_attempts, elapsed_s=round(elapsed_ms / 1000, 1),
                        retry_for_s=target.retry_for_ms / 1000, reason=reason)
            if not patient or (attempt >= target.max_attempts and elapsed_ms >= target.retry_for_ms):
                break
            wait = backoff_ms(target, attempt, self.rng)
            if retry_after is not None:
                wait = max(wait, min(retry_after * 1000, target.max_backoff_ms))
            await self.sleep(wait / 1000)
        return Outcome(False, attempt, f"gave up after {attempt} attempts: {reason}", status)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: ignore, our own backoff applies


class WebhookSink(Sink):
    """Delivers dispatch records to their agencies' webhooks (see the module docstring)."""

    def __init__(self, settings: Settings, catalog: AgencyCatalog, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.catalog = catalog
        self._session: aiohttp.ClientSession | None = None
        self.deliverer: WebhookDeliverer | None = None

    async def on_start(self) -> None:
        for agency, target in sorted(self.catalog.webhooks.items()):
            try:
                target.secret()
            except LookupError as exc:
                log.error("webhook_secret_missing", agency=agency, reason=str(exc))
        self._session = aiohttp.ClientSession()
        self.deliverer = WebhookDeliverer(self._session)
        log.info("webhook_sink_started", agencies=sorted(self.catalog.webhooks))

    async def on_stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def write(self, batch: Sequence[RawRecord]) -> list[Refused]:
        refused = []
        down: set[str] = set()  # agencies whose receiver used up a dispatch's retries in this batch
        for record in batch:
            outcome = await self.deliver_record(record, down)
            if not outcome.delivered:
                log.error("webhook_refused", topic=record.topic, partition=record.partition, offset=record.offset,
                          reason=outcome.reason)
                refused.append((record, outcome.reason))
        return refused

    async def deliver_record(self, record: RawRecord, down: set[str] | None = None) -> Outcome:
        assert self.deliverer is not None
        try:
            dispatch = codec("Dispatch").decode(record.value)
        except DecodeError as exc:
            return Outcome(False, 0, str(exc))
        target = self.catalog.webhook(str(dispatch["agency"]))
        if target is None:
            return Outcome(False, 0, f"agency {dispatch['agency']} has no webhook configured")
        down = set() if down is None else down
        outcome = await self.deliverer.deliver(target, dispatch, patient=target.agency not in down)
        if outcome.delivered:
            down.discard(target.agency)
        elif outcome.status is None or outcome.status >= 500 or outcome.status in _RETRIABLE_STATUS:
            down.add(target.agency)  # retriable and used up: the receiver is down
        return outcome


def runner(settings: Settings, catalog: AgencyCatalog) -> SinkRunner:
    """The webhook sink under its :class:`SinkRunner`, in the group ``<app id>.webhook``, reading the
    ``dispatch.<agency>`` topics of the webhook agencies."""
    return SinkRunner(settings, WebhookSink(settings, catalog),
                      topics=[T.dispatch_topic(a) for a in sorted(catalog.webhooks)],
                      group_id=f"{settings.faust_app_id}.webhook", stage=STAGE, client_id="gridhub-webhook",
                      # 100 records per flush, 0.2 s at most in the buffer: deliveries are per record anyway,
                      # a small batch keeps an agency's dispatches moving while another one retries.
                      batch_records=100, flush_seconds=0.2, per_partition=True)


def create(app: Any, settings: Settings) -> SinkRunner | None:
    """``gridhub run`` factory: a sink when any agency is configured for webhook delivery, else None."""
    from gridhub.core.shadow import is_shadow

    if is_shadow():  # issue 15: a shadow namespace (replay diff) never calls agencies
        log.info("webhook_sink_disabled", reason="shadow namespace (GRIDHUB_SHADOW)")
        return None
    catalog = catalog_for_rules(settings.routing_rules)
    if not catalog.webhooks:
        log.info("webhook_sink_disabled", reason="no agency is configured for webhook delivery")
        return None
    return runner(settings, catalog)
