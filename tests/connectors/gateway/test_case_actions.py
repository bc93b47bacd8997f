"""POST /v1/cases/{caseId}/actions against a real aiohttp server and the real Kafka (issue 15)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from connectors.gateway.service import GatewayService
from gridhub.core.settings import Settings
from helpers.ports import free_port

pytestmark = pytest.mark.integration
ACTION = {"centre": "330502.zzzx", "action": "assign", "agency": "scjg", "operator": "op-1", "reason": "属地调整"}



@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[GatewayService]:
    gw = GatewayService(settings, port=free_port())
    await gw.start()
    assert await gw.producer.wait_ready(30), "gateway producer never connected to Kafka"
    yield gw
    await gw.stop()


def _url(gw: GatewayService, case_id: str) -> str:
    return f"http://127.0.0.1:{gw.bound_port}/v1/cases/{case_id}/actions"


async def test_a_centre_action_lands_on_case_commands(gateway: GatewayService,
                                                      consume: Callable[..., list[Any]]) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(_url(gateway, "C-42"), json=ACTION,
                             headers={"Authorization": "Bearer dev-330502.zzzx"}) as r:
            assert r.status == 202, await r.text()
            answer = await r.json()
    (record,) = consume("case-commands", 1, timeout=20)
    doc = json.loads(record.value)
    assert record.key == b"C-42" and doc["caseId"] == "C-42" and doc["commandId"] == answer["commandId"]
    assert (doc["action"], doc["agency"], doc["operator"], doc["reason"], doc["principal"]) == (
        "assign", "scjg", "op-1", "属地调整", "330502.zzzx")


@pytest.mark.parametrize("body, token, status, fragment", [
    (ACTION, None, 401, "missing bearer token"),
    (ACTION, "dev-330502.zhzf", 401, "not the token"),                       # another principal's token
    ({**ACTION, "centre": "330502.zhzf"}, "dev-330502.zhzf", 403, "only a county or city centre"),  # an agency
    ({**ACTION, "reason": " "}, "dev-330502.zzzx", 400, "'reason' is required"),
    ({**ACTION, "action": "delete"}, "dev-330502.zzzx", 400, "unknown action"),
    ({**ACTION, "caseId": "C-other"}, "dev-330502.zzzx", 400, "differs"),
    ({k: v for k, v in ACTION.items() if k != "agency"}, "dev-330502.zzzx", 400, "assign needs 'agency'"),
])
async def test_refusals(gateway: GatewayService, body: dict[str, Any], token: str | None, status: int,
                        fragment: str) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http:
        async with http.post(_url(gateway, "C-42"), json=body, headers=headers) as r:
            assert r.status == status
            assert fragment in (await r.json())["error"]["message"]
