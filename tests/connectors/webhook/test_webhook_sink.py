"""The webhook sink on the real broker, delivering to real local HTTP servers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from connectors.webhook.service import create, runner
from connectors.webhook.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from gridhub.core.codec import codec
from gridhub.core.dlq import parse_dead_letter_headers
from helpers.http import sample_dispatch as dispatch
from helpers.http import AgencyEndpoint, catalog_with_delivery, serve_post
from helpers.kafka import read_topic
from helpers.ledger import assert_no_loss, collect, expect, observe
from helpers.ports import free_port

pytestmark = pytest.mark.integration
SECRET = "shared-secret-for-whsc"


async def serve(receiver: AgencyEndpoint) -> tuple[web.AppRunner, str]:
    return await serve_post(receiver.handle, "/dispatch")


async def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)



async def test_sink_retries_dedupes_and_dead_letters(settings: Any, kafka_producer: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    flaky, down = AgencyEndpoint(SECRET, fail_first=3), AgencyEndpoint(SECRET, fail_first=10**6)
    flaky_runner, flaky_url = await serve(flaky)
    down_runner, down_url = await serve(down)
    secret_file = tmp_path / "whsc.secret"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    monkeypatch.setenv("GRIDHUB_TEST_NYNC_SECRET", SECRET)
    catalog = catalog_with_delivery(tmp_path, f"""
        delivery:
          default: kafka
          webhook: {{max_attempts: 5, initial_backoff: 50ms, max_backoff: 200ms, timeout: 2s}}
          agencies:
            "330502.whsc": {{mode: webhook, url: "{flaky_url}", secret_file: "{secret_file}"}}
            "330502.nync": {{mode: webhook, url: "{down_url}", secret_env: GRIDHUB_TEST_NYNC_SECRET, max_attempts: 3,
                            retry_for: 0s}}
            "330502.zhzf": {{mode: kafka}}
    """)
    assert sorted(catalog.webhooks) == ["330502.nync", "330502.whsc"]

    # Three dispatches for whsc, one of them twice on the topic (a redelivery), one for nync.
    sent: dict[str, bytes] = {}
    for did, agency in (("d1", "330502.whsc"), ("d2", "330502.whsc"), ("d1", "330502.whsc"), ("d3", "330502.whsc"),
                        ("n1", "330502.nync")):
        value = codec("Dispatch").encode(dispatch(did, agency))
        sent[did] = value
        kafka_producer.send(settings.topic(f"dispatch.{agency}"), key=f"case-{did}".encode(), value=value).get(30)

    sink = runner(settings, catalog)
    await sink.start()
    try:
        await wait_for(lambda: len(flaky.accepted) == 3 and down.attempts >= 3, 60, "deliveries")
        letters = await asyncio.to_thread(read_topic, settings, "dlq", 1, 30)
    finally:
        await sink.stop()
    # Exactly once from the receiver's view: each dispatch id accepted once, signatures all valid.
    assert sorted(flaky.accepted) == ["d1", "d2", "d3"]
    assert flaky.deliveries == 4  # d1 was on the topic twice; the Idempotency-Key made it a no-op
    assert flaky.attempts == 3 + 4 and flaky.bad_signatures == 0
    assert flaky.accepted["d2"]["caseId"] == "case-d2" and flaky.accepted["d2"]["agency"] == "330502.whsc"
    # The receiver that never recovers: 3 attempts, then a dead letter with the original bytes.
    assert down.attempts == 3 and not down.accepted
    assert len(letters) == 1 and letters[0].value == sent["n1"]
    info = parse_dead_letter_headers(letters[0].headers)
    assert info.stage == "webhook" and "gave up after 3 attempts: HTTP 503" in info.reason
    assert info.topic == settings.topic("dispatch.330502.nync") and info.offset == 0

    # A restarted sink resumes after the committed offsets: nothing is delivered again.
    again = runner(settings, catalog)
    await again.start()
    try:
        await wait_for(lambda: bool(again._consumer.assignment()), 30, "the restarted sink's partitions")
        await asyncio.sleep(3)
    finally:
        await again.stop()
    assert flaky.deliveries == 4 and down.attempts == 3
    await flaky_runner.cleanup()
    await down_runner.cleanup()


async def test_a_receiver_down_for_60_s_gets_every_dispatch_when_it_returns(
        settings: Any, kafka_producer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: the agency's receiver is away for 60 s (connection refused) while dispatches arrive;
    the sink keeps retrying (``retry_for``, default 3 min, longer than ``max_attempts`` lasts) and
    delivers every one once it is back: nothing dead-lettered, nothing lost (ledger: the agency's
    topic against what the receiver accepted)."""
    began = time.monotonic()
    monkeypatch.setenv("GRIDHUB_TEST_WHSC_SECRET", SECRET)
    port = free_port()
    receiver = AgencyEndpoint(SECRET)
    # max_attempts 3 alone gives up within ~1 s; only the (default) retry_for window carries 60 s.
    # max_backoff 5 s: the first attempt after the return comes within 5 s.
    catalog = catalog_with_delivery(tmp_path, f"""
        delivery:
          default: kafka
          webhook: {{max_attempts: 3, initial_backoff: 200ms, max_backoff: 5s, timeout: 2s}}
          agencies:
            "330502.whsc": {{mode: webhook, url: "http://127.0.0.1:{port}/dispatch", secret_env: GRIDHUB_TEST_WHSC_SECRET}}
    """)
    assert catalog.webhooks["330502.whsc"].retry_for_ms == 180_000

    def send(ids: range) -> None:
        for i in ids:
            kafka_producer.send(settings.topic("dispatch.330502.whsc"), key=f"case-w{i}".encode(),
                                value=codec("Dispatch").encode(dispatch(f"w{i}", "330502.whsc", f"case-w{i}"))).get(30)

    send(range(0, 10))                      # waiting when the receiver goes away
    sink = runner(settings, catalog)
    await sink.start()
    try:
        await asyncio.sleep(30)
        await asyncio.to_thread(send, range(10, 20))  # arriving during the outage
        await asyncio.sleep(30)
        assert receiver.attempts == 0       # it really was down: nothing reached it
        site_runner = web.AppRunner(web.Application())
        site_runner.app.router.add_post("/dispatch", receiver.handle)
        await site_runner.setup()
        await web.TCPSite(site_runner, "127.0.0.1", port).start()
        back = time.monotonic()
        await wait_for(lambda: len(receiver.accepted) == 20, 60, "every dispatch after the receiver returned")
        delivered_after = time.monotonic() - back
        await asyncio.sleep(2)  # a commit round: anything else would show on the dlq below
    finally:
        await sink.stop()
    letters = await asyncio.to_thread(read_topic, settings, "dlq", 0, 3)
    assert letters == [], "dispatches were dead-lettered during a 60 s outage"
    ledger = await asyncio.to_thread(collect, settings, hops=("dispatch.<agency>",), title="webhook down 60 s")
    observe(ledger, "webhook", [(f"{d['caseId']}|{d['agency']}", d["dispatchId"]) for d in receiver.accepted.values()])
    print(f"webhook receiver down 60 s: all {len(receiver.accepted)} delivered {delivered_after:.1f} s after it "
          f"returned; test took {time.monotonic() - began:.0f} s")
    assert_no_loss(expect(ledger))
    assert receiver.bad_signatures == 0 and len(ledger.hops["webhook"].ids) == 20
    await site_runner.cleanup()


def test_factory_is_disabled_without_webhook_agencies(settings: Any) -> None:
    assert create(None, settings) is None  # deploy/agencies.yaml: every agency consumes Kafka
