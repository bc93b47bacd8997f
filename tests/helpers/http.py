"""The tests' one HTTP receiver: a real local aiohttp server on a free loopback port, and an
agency's webhook endpoint that verifies signatures, fails on request and dedupes on the
idempotency key; plus a sample Dispatch.

Shared by tests/connectors/webhook and tests/security (the sink on the secured broker).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from connectors.webhook.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from gridhub.core.agencies import AgencyCatalog, load_catalog

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


async def serve_post(handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                     path: str) -> tuple[web.AppRunner, str]:
    """Serve ``POST path`` with ``handler``; returns the runner (``await runner.cleanup()``) and the URL."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    port = server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}{path}"


@dataclass
class AgencyEndpoint:
    """An agency's webhook endpoint: verifies the signature with ``secret`` (401 if wrong), fails the
    first ``fail_first`` attempts with ``status_when_failing``, then accepts each idempotency key once."""

    secret: str
    fail_first: int = 0
    status_when_failing: int = 503
    attempts: int = 0
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: int = 0  # successful (2xx) responses, duplicates included
    bad_signatures: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.read()
        if not verify(self.secret.encode(), request.headers[TIMESTAMP_HEADER], body,
                      request.headers[SIGNATURE_HEADER]):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.attempts <= self.fail_first:
            return web.Response(status=self.status_when_failing, text="busy")
        self.deliveries += 1
        key = request.headers[IDEMPOTENCY_HEADER]
        if key not in self.accepted:  # dedupe: a retried or re-delivered dispatch is processed once
            self.accepted[key] = await request.json()
        return web.json_response({"ok": True})


def sample_dispatch(did: str, agency: str, case_id: str | None = None) -> dict[str, Any]:
    """A valid Avro ``Dispatch`` record (as a dict) for ``agency``."""
    return {"dispatchId": did, "caseId": case_id or f"case-{did}", "agency": agency, "countyCode": agency[:6],
            "streetCode": "330502001", "role": "lead", "reason": "rule:culture", "category": "culture_market",
            "severity": 1, "title": "网吧接纳未成年人", "description": None, "address": None, "lng": None,
            "lat": None, "sources": ["hotline-12345"], "reportCount": 1, "reporterMasked": None,
            "dispatchedAt": 1, "signDeadline": 2, "resolveDeadline": 3, "escalationLevel": 0,
            "previousDispatchId": None, "action": "dispatch"}


def catalog_with_delivery(directory: Path, delivery: str) -> AgencyCatalog:
    """deploy/agencies.yaml's agencies with ``delivery`` (a YAML ``delivery:`` block) instead of its own."""
    path = directory / "agencies.yaml"
    head = (DEPLOY / "agencies.yaml").read_text(encoding="utf-8").split("delivery:")[0]
    path.write_text(head + textwrap.dedent(delivery), encoding="utf-8")
    return load_catalog(path)
