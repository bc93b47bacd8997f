"""deploy/openapi.yaml is a valid OpenAPI 3.1 document, and the real gateway keeps it.

Real requests go to a running gateway (real Kafka behind it); each request
and the response it got, error responses included, are checked against the
contract with openapi-core.  A route the gateway serves but the contract does
not describe (or the reverse) fails too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from connectors.gateway.app import make_app
from connectors.gateway.contract import OPENAPI_SPEC
from connectors.gateway.service import GatewayService
from connectors.kafka_io import RawProducer
from gridhub.core.settings import Settings
from helpers.ports import free_port

SPEC: dict[str, Any] = yaml.safe_load(OPENAPI_SPEC.read_text(encoding="utf-8"))
#: Requests are matched against the spec's first server (the contract's host, whatever port the test got).
HOST = SPEC["servers"][0]["url"]


def test_the_spec_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV31SpecValidator

    assert SPEC["openapi"].startswith("3.1")
    validate(SPEC, cls=OpenAPIV31SpecValidator)
    assert "post" in SPEC["paths"]["/v1/cases/{caseId}/actions"]


def test_the_spec_describes_exactly_the_gateways_routes() -> None:
    app = make_app(Settings(), RawProducer(Settings(), client_id="openapi-test"))
    served = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None}
    described = {(method, path) for path, ops in SPEC["paths"].items() for method in ops}
    assert served == described



@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[GatewayService]:
    # A small body limit, so a 413 is cheap to provoke.
    gw = GatewayService(settings, port=free_port(), max_body=4096)
    await gw.start()
    assert await gw.producer.wait_ready(30), "gateway producer never connected to Kafka"
    yield gw
    await gw.stop()


class Contract:
    """Sends real requests and checks each exchange against the spec."""

    def __init__(self, gw: GatewayService, http: aiohttp.ClientSession) -> None:
        self.api = OpenAPI.from_dict(SPEC)
        self.gw, self.http = gw, http
        self.checked: list[tuple[str, str, int]] = []

    async def call(self, method: str, path: str, pattern: str, body: bytes | None = None,
                   token: str | None = None, request_valid: bool = True) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = f"http://127.0.0.1:{self.gw.bound_port}{path}"
        async with self.http.request(method, url, data=body, headers=headers) as r:
            data, status = await r.read(), r.status
            response_headers = dict(r.headers)
        # Path parameters by position: /v1/ingest/{source} against /v1/ingest/sensors.
        view_args = {p.strip("{}"): v for p, v in zip(pattern.split("/"), path.split("/")) if p.startswith("{")}
        request = MockRequest(HOST, method.lower(), path, path_pattern=pattern, view_args=view_args,
                              headers=headers, data=body)
        if request_valid:
            self.api.validate_request(request)
        self.api.validate_response(request, MockResponse(data, status_code=status, headers=response_headers,
                                                         content_type=response_headers["Content-Type"]
                                                         .split(";")[0]))
        self.checked.append((method, pattern, status))
        return status, json.loads(data)


@pytest.mark.integration
async def test_real_requests_and_responses_keep_the_contract(gateway: GatewayService) -> None:
    sensor = {"deviceId": "860000000000001", "deviceType": "smoke", "eventType": "alarm",
              "eventTime": "2025-06-16T09:00:00.123+08:00"}
    ingest = "/v1/ingest/{source}"
    async with aiohttp.ClientSession() as http:
        c = Contract(gateway, http)
        status, body = await c.call("POST", "/v1/ingest/sensors", ingest, json.dumps(sensor).encode(), "dev-sensors")
        assert status == 202 and body[0]["status"] == "accepted"
        mixed = json.dumps([sensor, {"deviceType": "gas"}]).encode()
        status, body = await c.call("POST", "/v1/ingest/sensors", ingest, mixed, "dev-sensors")
        assert status == 202 and [r["status"] for r in body] == ["accepted", "rejected"]
        # Errors, each with the contract's error shape.
        status, body = await c.call("POST", "/v1/ingest/sensors", ingest, b"{not json", "dev-sensors",
                                    request_valid=False)
        assert (status, body["error"]["code"]) == (400, "malformed_json")
        status, body = await c.call("POST", "/v1/ingest/sensors", ingest, b"[]", "dev-sensors", request_valid=False)
        assert (status, body["error"]["code"]) == (400, "empty_array")
        status, body = await c.call("POST", "/v1/ingest/sensors", ingest, json.dumps(sensor).encode(), "wrong")
        assert (status, body["error"]["code"]) == (401, "unauthorized")
        status, body = await c.call("POST", "/v1/ingest/radar", ingest, json.dumps(sensor).encode(), "dev-radar",
                                    request_valid=False)
        assert (status, body["error"]["code"]) == (404, "unknown_source")
        big = json.dumps([sensor] * 40).encode()
        status, body = await c.call("POST", "/v1/ingest/sensors", ingest, big, "dev-sensors")
        assert (status, body["error"]["code"]) == (413, "body_too_large")

        fb = {"dispatchId": "d-1", "caseId": "c-1", "agency": "330502.zhzf", "action": "sign",
              "time": "2025-06-16T10:00:00+08:00"}
        status, body = await c.call("POST", "/v1/feedback", "/v1/feedback", json.dumps(fb).encode(),
                                    "dev-330502.zhzf")
        assert status == 202 and body == [{"index": 0, "key": "c-1", "status": "accepted"}]
        bad = {**fb, "action": "extend"}  # an extend without its new deadline
        status, body = await c.call("POST", "/v1/feedback", "/v1/feedback", json.dumps(bad).encode(),
                                    "dev-330502.zhzf")
        assert (status, body["error"]["code"]) == (400, "invalid_feedback")
        other = {**fb, "agency": "330502.zjj"}
        status, body = await c.call("POST", "/v1/feedback", "/v1/feedback", json.dumps([fb, other]).encode(),
                                    "dev-330502.zhzf")
        assert (status, body["error"]["code"]) == (403, "forbidden_agency")

        actions = "/v1/cases/{caseId}/actions"
        assign = {"centre": "330502.zzzx", "action": "assign", "operator": "op-7", "reason": "转办",
                  "agency": "330502.zjj", "role": "lead"}
        status, body = await c.call("POST", "/v1/cases/c-1/actions", actions, json.dumps(assign).encode(),
                                    "dev-330502.zzzx")
        assert status == 202 and body["caseId"] == "c-1" and body["status"] == "accepted"
        as_agency = {**assign, "centre": "330502.zhzf"}  # an agency is not a centre
        status, body = await c.call("POST", "/v1/cases/c-1/actions", actions, json.dumps(as_agency).encode(),
                                    "dev-330502.zhzf", request_valid=False)
        assert (status, body["error"]["code"]) == (403, "forbidden")
        status, body = await c.call("POST", "/v1/cases/c-1/actions", actions, json.dumps(assign).encode(),
                                    "dev-330502.zhzf")
        assert (status, body["error"]["code"]) == (401, "unauthorized")

        status, body = await c.call("GET", "/healthz", "/healthz")
        assert status == 200 and body["status"] == "ok"
        status, body = await c.call("GET", "/openapi.json", "/openapi.json")
        assert status == 200 and body == SPEC

    assert {s for _, _, s in c.checked} == {200, 202, 400, 401, 403, 404, 413}


def test_a_response_off_the_contract_is_caught() -> None:
    """The checks above can fail: an answer the contract does not allow is refused."""
    from openapi_core.validation.response.exceptions import InvalidData

    api = OpenAPI.from_dict(SPEC)
    request = MockRequest(HOST, "post", "/v1/ingest/sensors", path_pattern="/v1/ingest/{source}",
                          view_args={"source": "sensors"}, headers={"Authorization": "Bearer x"}, data=b"{}")
    wrong = MockResponse(json.dumps([{"index": 0, "key": "k", "status": "queued"}]).encode(), status_code=202)
    with pytest.raises(InvalidData):
        api.validate_response(request, wrong)
