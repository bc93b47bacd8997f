"""The HTTP ingest gateway against a real aiohttp server and the real Kafka."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from connectors.gateway.app import split_items
from connectors.gateway.service import GatewayService
from gridhub.core.dlq import parse_dead_letter_headers
from gridhub.core.settings import Settings
from helpers.ports import free_port



async def _start(settings: Settings, **kwargs: Any) -> GatewayService:
    gateway = GatewayService(settings, port=free_port(), **kwargs)
    await gateway.start()
    assert await gateway.producer.wait_ready(30), "gateway producer never connected to Kafka"
    return gateway


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[GatewayService]:
    gw = await _start(settings)
    yield gw
    await gw.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _url(gw: GatewayService, path: str) -> str:
    return f"http://127.0.0.1:{gw.bound_port}{path}"


def test_split_items_keeps_each_documents_exact_bytes() -> None:
    body = '[ {"eventId": "a",  "x": 1.50},\n {"eventId":"b","t":"中文"} ,3]'
    is_array, items = split_items(body)
    assert is_array
    assert [i.raw for i in items] == [b'{"eventId": "a",  "x": 1.50}', '{"eventId":"b","t":"中文"}'.encode(), b"3"]
    assert items[2].value == 3
    assert split_items(' {"a": 1} ') == (False, split_items('{"a": 1}')[1])


@pytest.mark.integration
async def test_array_accepted_after_kafka_ack_with_per_item_results(
        gateway: GatewayService, http: aiohttp.ClientSession, consume: Callable[..., list[Any]]) -> None:
    body = ('[{"deviceId": "860000000000001", "deviceType": "smoke", "eventType": "alarm", '
            '"eventTime": "2025-06-16T09:00:00.123+08:00"},'
            ' "not an object",'
            ' {"deviceType": "gas"},'
            ' {"deviceId":"860000000000002","eventType":"heartbeat"}]')
    async with http.post(_url(gateway, "/v1/ingest/sensors"), data=body.encode(),
                         headers={"Authorization": "Bearer dev-sensors", "Content-Type": "application/json"}) as r:
        assert r.status == 202
        results = await r.json()
    assert [(x["index"], x["key"], x["status"]) for x in results] == [
        (0, "860000000000001", "accepted"), (1, None, "rejected"), (2, None, "rejected"),
        (3, "860000000000002", "accepted")]
    assert "not an object" in results[1]["error"] and "deviceId" in results[2]["error"]

    raw = consume("raw.sensors", 2, timeout=20)
    assert sorted((m.key, m.value) for m in raw) == sorted([
        (b"860000000000001", split_items(body)[1][0].raw), (b"860000000000002", split_items(body)[1][3].raw)])
    dead = consume("dlq", 2, timeout=20)
    assert sorted(m.value for m in dead) == [b'"not an object"', b'{"deviceType": "gas"}']
    for m in dead:
        info = parse_dead_letter_headers(m.headers)
        assert info.stage == "gateway" and info.extra["source"] == "sensors" and info.reason


@pytest.mark.integration
async def test_single_document_keyed_by_source_id(
        gateway: GatewayService, http: aiohttp.ClientSession, consume: Callable[..., list[Any]]) -> None:
    doc = {"orderNo": "2025061600001", "acceptTime": "2025-06-16 09:00:00", "content": "路灯不亮", "areaCode": "330502"}
    payload = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    async with http.post(_url(gateway, "/v1/ingest/hotline-12345"), data=payload,
                         headers={"Authorization": "Bearer dev-hotline-12345"}) as r:
        assert r.status == 202
        assert await r.json() == [{"index": 0, "key": "2025061600001", "status": "accepted"}]
    [record] = consume("raw.hotline-12345", 1, timeout=20)
    assert record.key == b"2025061600001" and record.value == payload


@pytest.mark.integration
@pytest.mark.parametrize("body, code", [
    (b'{"eventId": "x", ', "malformed_json"),
    (b"[]", "empty_array"),
    (b"[1, 2]", "not_an_object"),
    (b'{"title": "no id"}', "missing_key"),
    (b'\xff\xfe{"eventId": "x"}', "malformed_json"),
])
async def test_bad_bodies_are_400_with_a_reason(gateway: GatewayService, http: aiohttp.ClientSession,
                                                body: bytes, code: str) -> None:
    async with http.post(_url(gateway, "/v1/ingest/four-platforms"), data=body,
                         headers={"Authorization": "Bearer dev-four-platforms"}) as r:
        assert r.status == 400
        err = (await r.json())["error"]
    assert err["code"] == code and err["message"]


@pytest.mark.integration
async def test_auth_unknown_source_and_size_limit(settings: Settings, http: aiohttp.ClientSession) -> None:
    configured = settings.model_copy(update={"ingest_tokens": "sensors=s3cret, four-platforms=fp-token"})
    gw = await _start(configured, max_body=2048)
    try:
        url = _url(gw, "/v1/ingest/sensors")
        doc = b'{"deviceId": "d1"}'
        for headers in ({}, {"Authorization": "Bearer dev-sensors"}, {"Authorization": "Bearer fp-token"},
                        {"Authorization": "Basic s3cret"}):
            async with http.post(url, data=doc, headers=headers) as r:
                assert r.status == 401, headers
                assert (await r.json())["error"]["code"] == "unauthorized"
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.post(url, data=doc, headers={"Authorization": "Bearer s3cret"}) as r:
            assert r.status == 202
        async with http.post(_url(gw, "/v1/ingest/weather"), data=doc, headers={"Authorization": "Bearer s3cret"}) as r:
            assert r.status == 404
            err = (await r.json())["error"]
            assert err["code"] == "unknown_source" and "weather" in err["message"]
        big = json.dumps([{"deviceId": f"d{i}", "pad": "x" * 100} for i in range(50)]).encode()
        async with http.post(url, data=big, headers={"Authorization": "Bearer s3cret"}) as r:
            assert r.status == 413
            err = (await r.json())["error"]
            assert err["code"] == "body_too_large" and err["limit_bytes"] == 2048

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit still holds
            for _ in range(10):
                yield b" " * 1000
        async with http.post(url, data=chunks(), headers={"Authorization": "Bearer s3cret"}) as r:
            assert r.status == 413
    finally:
        await gw.stop()


@pytest.mark.integration
async def test_healthz_reports_kafka_state(gateway: GatewayService, http: aiohttp.ClientSession) -> None:
    async with http.get(_url(gateway, "/healthz")) as r:
        assert r.status == 200
        body = await r.json()
    assert body["status"] == "ok" and body["kafka"]["producer"] == "ready"


FEEDBACK = {"dispatchId": "d-1", "caseId": "case-1", "agency": "330502.zhzf", "action": "sign",
            "time": 1750035600000, "note": "已签收"}


@pytest.mark.integration
async def test_feedback_accepted_and_keyed_by_case(gateway: GatewayService, http: aiohttp.ClientSession,
                                                   consume: Callable[..., list[Any]]) -> None:
    items = [FEEDBACK, {**FEEDBACK, "caseId": "case-2", "action": "extend", "deadline": "2025-06-20T18:00:00+08:00"}]
    payload = json.dumps(items, ensure_ascii=False).encode("utf-8")
    async with http.post(_url(gateway, "/v1/feedback"), data=payload,
                         headers={"Authorization": "Bearer dev-330502.zhzf"}) as r:
        assert r.status == 202
        assert [x["key"] for x in await r.json()] == ["case-1", "case-2"]
    records = consume("feedback", 2, timeout=20)
    assert sorted((m.key, json.loads(m.value)) for m in records) == sorted(
        [(b"case-1", items[0]), (b"case-2", items[1])], key=lambda kv: kv[0])


@pytest.mark.integration
@pytest.mark.parametrize("item, token, status, fragment", [
    ({**FEEDBACK, "action": "approve"}, "dev-330502.zhzf", 400, "action"),
    ({k: v for k, v in FEEDBACK.items() if k != "caseId"}, "dev-330502.zhzf", 400, "caseId"),
    ({**FEEDBACK, "action": "extend"}, "dev-330502.zhzf", 400, "deadline"),
    ({**FEEDBACK, "time": "yesterday"}, "dev-330502.zhzf", 400, "time"),
    (FEEDBACK, "dev-330502.scjg", 401, "token"),
    (FEEDBACK, None, 401, "token"),
])
async def test_feedback_rejections(gateway: GatewayService, http: aiohttp.ClientSession, item: dict[str, Any],
                                   token: str | None, status: int, fragment: str) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(_url(gateway, "/v1/feedback"), json=item, headers=headers) as r:
        assert r.status == status
        assert fragment in (await r.json())["error"]["message"]


@pytest.mark.integration
async def test_feedback_token_must_belong_to_every_agency_named(
        gateway: GatewayService, http: aiohttp.ClientSession, consume: Callable[..., list[Any]]) -> None:
    items = [FEEDBACK, {**FEEDBACK, "agency": "330502.scjg"}]
    async with http.post(_url(gateway, "/v1/feedback"), json=items,
                         headers={"Authorization": "Bearer dev-330502.zhzf"}) as r:
        assert r.status == 403
        body = await r.json()
    assert body["error"]["errors"] == [{"index": 1, "error": "the token does not belong to agency '330502.scjg'"}]
    assert consume("feedback", 0, timeout=3) == []  # all or nothing


@pytest.mark.integration
async def test_without_kafka_nothing_is_acknowledged(settings: Settings, http: aiohttp.ClientSession) -> None:
    gw = GatewayService(settings.model_copy(update={"kafka_port": free_port()}), port=free_port())
    await gw.start()
    try:
        async with http.post(_url(gw, "/v1/ingest/sensors"), data=b'{"deviceId": "d1"}',
                             headers={"Authorization": "Bearer dev-sensors"}) as r:
            assert r.status == 503
            assert (await r.json())["error"]["code"] == "kafka_unavailable"
        async with http.get(_url(gw, "/healthz")) as r:
            body = await r.json()
        assert body["status"] == "degraded" and body["kafka"]["producer"] == "connecting"
    finally:
        await gw.stop()


@pytest.mark.integration
async def test_a_taken_port_does_not_stop_the_service(settings: Settings) -> None:
    """Several workers on one host: the second gateway logs gateway_bind_failed and keeps its worker alive."""
    first = await _start(settings)
    second = GatewayService(settings, port=first.bound_port)
    try:
        await second.start()
        assert second._runner is None and not second.should_stop
    finally:
        await second.stop()
        await first.stop()


def test_token_book_knows_whose_token_it_is() -> None:
    from connectors.gateway.app import TokenBook

    book = TokenBook("330502.zhzf=tok-a, 330502.zzzx=tok-b")
    assert (book.owner("tok-a"), book.owner("tok-b"), book.owner("tok-c"), book.owner(None)) == \
        ("330502.zhzf", "330502.zzzx", None, None)
    assert book.owner("dev-330502.zhzf") is None  # no dev tokens once tokens are configured
    dev = TokenBook("")
    assert dev.dev_mode and dev.owner("dev-330502.zhzf") == "330502.zhzf" and dev.owner("dev-") is None
    production = TokenBook("", allow_dev=False)  # an empty book in production admits nobody
    assert not production.dev_mode and production.owner("dev-330502.zhzf") is None
    assert not production.check("330502.zhzf", "dev-330502.zhzf")
