"""Webhook signing and delivery against a real local aiohttp server (no Kafka here)."""

from __future__ import annotations

import random
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from connectors.webhook.service import WebhookDeliverer, backoff_ms, body_of, idempotency_key
from connectors.webhook.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify
from gridhub.core.agencies import WebhookTarget
from helpers.http import AgencyEndpoint, sample_dispatch, serve_post

SECRET = "test-webhook-secret"


def test_sign_and_verify() -> None:
    body = b'{"a":1}'
    sig = sign(b"k", "1700000000", body)
    assert sig.startswith("sha256=") and len(sig) == len("sha256=") + 64
    # Known answer: HMAC-SHA256("k", "1700000000.{\"a\":1}")
    import hashlib
    import hmac
    assert sig == "sha256=" + hmac.new(b"k", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert verify(b"k", "1700000000", body, sig, now=1700000010)
    assert not verify(b"other", "1700000000", body, sig, now=1700000010)
    assert not verify(b"k", "1700000000", b'{"a":2}', sig, now=1700000010)
    assert not verify(b"k", "1700000000", body, sig, now=1700000000 + 301)  # stale: a replayed request
    assert not verify(b"k", "not-a-time", body, sig, now=1700000000)


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    target = WebhookTarget("330502.whsc", "http://x", secret_env="S", initial_backoff_ms=100, max_backoff_ms=1000)
    rng = random.Random(7)
    waits = [backoff_ms(target, n, rng) for n in range(1, 7)]
    assert 50 <= waits[0] <= 100 and 100 <= waits[1] <= 200 and 200 <= waits[2] <= 400
    assert all(500 <= w <= 1000 for w in waits[4:])
    assert len({round(w, 6) for w in waits}) == len(waits)  # jittered


def test_idempotency_key_separates_withdrawals() -> None:
    assert idempotency_key({"dispatchId": "d1", "action": "dispatch"}) == "d1"
    assert idempotency_key({"dispatchId": "d1", "action": "withdraw"}) == "d1:withdraw"




@pytest.fixture
async def receiver() -> AsyncIterator[tuple[AgencyEndpoint, str]]:
    rec = AgencyEndpoint(SECRET)
    runner, url = await serve_post(rec.handle, "/hook")
    yield rec, url
    await runner.cleanup()


def dispatch(did: str = "d-1") -> dict[str, Any]:
    return sample_dispatch(did, "330502.whsc", case_id="c-1")


def target(url: str, attempts: int = 5, retry_for_ms: int = 0) -> WebhookTarget:
    return WebhookTarget("330502.whsc", url, secret_env="GRIDHUB_TEST_WEBHOOK_SECRET", max_attempts=attempts,
                         initial_backoff_ms=10, max_backoff_ms=50, timeout_ms=2000, retry_for_ms=retry_for_ms)


async def test_a_receiver_back_within_retry_for_gets_the_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: the receiver is down (connection refused) longer than max_attempts lasts; retry_for keeps
    trying, and the dispatch is delivered once it is back, not dead-lettered."""
    import asyncio

    from helpers.ports import free_port

    monkeypatch.setenv("GRIDHUB_TEST_WEBHOOK_SECRET", SECRET)
    rec, port = AgencyEndpoint(SECRET), free_port()
    url = f"http://127.0.0.1:{port}/hook"

    async def come_back() -> web.AppRunner:
        await asyncio.sleep(1.5)  # 2 attempts take ~0.1 s: the window, not the count, must carry it
        app = web.Application()
        app.router.add_post("/hook", rec.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    back = asyncio.ensure_future(come_back())
    async with aiohttp.ClientSession() as session:
        outcome = await WebhookDeliverer(session).deliver(target(url, attempts=2, retry_for_ms=10_000), dispatch())
    await (await back).cleanup()
    assert outcome.delivered and outcome.attempts > 2
    assert list(rec.accepted) == ["d-1"]


async def test_without_patience_one_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDHUB_TEST_WEBHOOK_SECRET", SECRET)
    async with aiohttp.ClientSession() as session:
        outcome = await WebhookDeliverer(session).deliver(target("http://127.0.0.1:9/none", retry_for_ms=60_000),
                                                          dispatch(), patient=False)
    assert not outcome.delivered and outcome.attempts == 1


async def test_retries_until_delivered_once(receiver: tuple[AgencyEndpoint, str], monkeypatch: pytest.MonkeyPatch) -> None:
    rec, url = receiver
    rec.fail_first = 3
    monkeypatch.setenv("GRIDHUB_TEST_WEBHOOK_SECRET", SECRET)
    async with aiohttp.ClientSession() as session:
        outcome = await WebhookDeliverer(session).deliver(target(url), dispatch())
    assert outcome.delivered and outcome.attempts == 4
    assert rec.attempts == 4 and rec.deliveries == 1 and rec.bad_signatures == 0
    assert list(rec.accepted) == ["d-1"] and rec.accepted["d-1"]["caseId"] == "c-1"


async def test_gives_up_after_max_attempts(receiver: tuple[AgencyEndpoint, str], monkeypatch: pytest.MonkeyPatch) -> None:
    rec, url = receiver
    rec.fail_first = 100
    monkeypatch.setenv("GRIDHUB_TEST_WEBHOOK_SECRET", SECRET)
    async with aiohttp.ClientSession() as session:
        outcome = await WebhookDeliverer(session).deliver(target(url, attempts=3), dispatch())
    assert not outcome.delivered and outcome.attempts == 3 and rec.attempts == 3
    assert "gave up after 3 attempts: HTTP 503" in outcome.reason and not rec.accepted


async def test_refusal_is_not_retried(receiver: tuple[AgencyEndpoint, str], monkeypatch: pytest.MonkeyPatch) -> None:
    rec, url = receiver
    rec.fail_first, rec.status_when_failing = 100, 422
    monkeypatch.setenv("GRIDHUB_TEST_WEBHOOK_SECRET", SECRET)
    async with aiohttp.ClientSession() as session:
        outcome = await WebhookDeliverer(session).deliver(target(url), dispatch())
    assert not outcome.delivered and rec.attempts == 1 and "refused by the receiver: HTTP 422" in outcome.reason


async def test_wrong_secret_is_rejected_by_receiver(receiver: tuple[AgencyEndpoint, str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rec, url = receiver
    monkeypatch.setenv("GRIDHUB_TEST_WEBHOOK_SECRET", "not-the-shared-secret")
    async with aiohttp.ClientSession() as session:
        outcome = await WebhookDeliverer(session).deliver(target(url, attempts=2), dispatch())
    assert not outcome.delivered and rec.bad_signatures == 1 and not rec.accepted


async def test_unreachable_receiver_and_missing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDHUB_TEST_WEBHOOK_SECRET", SECRET)
    async with aiohttp.ClientSession() as session:
        outcome = await WebhookDeliverer(session).deliver(target("http://127.0.0.1:9/none", attempts=2), dispatch())
        assert not outcome.delivered and outcome.attempts == 2 and "ClientConnectorError" in outcome.reason
        monkeypatch.delenv("GRIDHUB_TEST_WEBHOOK_SECRET")
        outcome = await WebhookDeliverer(session).deliver(target("http://127.0.0.1:9/none"), dispatch())
        assert not outcome.delivered and outcome.attempts == 0 and "no webhook secret" in outcome.reason


def test_body_is_compact_sorted_json() -> None:
    assert body_of({"b": 1, "a": "中"}) == '{"a":"中","b":1}'.encode("utf-8")
