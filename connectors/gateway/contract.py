"""The gateway's request metrics and its machine-readable contract (``/openapi.json``).

Kept beside ``app.py`` so the request handlers stay about documents: ``make_app``
only appends :func:`request_metrics` and routes ``/openapi.json``.

* Every request is counted in ``gridhub_gateway_requests_total{route, method, status}``
  and timed in ``gridhub_gateway_request_duration_seconds{route, method}``.  ``route``
  is the route *template* (``/v1/ingest/{source}``), never the raw path, so a
  client probing random URLs cannot create unbounded label values
  (unmatched paths count as ``unmatched``).
* ``deploy/openapi.yaml`` (OpenAPI 3.1) is the contract; it is served as JSON,
  read once per process.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any, Awaitable, Callable

import yaml
from aiohttp import web

from gridhub.core.metrics import GATEWAY_REQUEST_SECONDS, GATEWAY_REQUESTS
from gridhub.core.settings import REPO_ROOT

OPENAPI_SPEC = REPO_ROOT / "deploy" / "openapi.yaml"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_label(request: web.Request) -> str:
    """The matched route's template, or ``unmatched`` (bounded label values)."""
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    canonical = getattr(resource, "canonical", None) if resource is not None else None
    return str(canonical) if canonical and request.match_info.http_exception is None else "unmatched"


@web.middleware
async def request_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # aiohttp's own 404 / 405 / 413 answers
        status = exc.status
        raise
    finally:
        route = route_label(request)
        GATEWAY_REQUESTS.labels(route, request.method, str(status)).inc()
        GATEWAY_REQUEST_SECONDS.labels(route, request.method).observe(time.perf_counter() - started)


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """deploy/openapi.yaml as a dict (read once)."""
    doc = yaml.safe_load(OPENAPI_SPEC.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), f"{OPENAPI_SPEC}: not a mapping"
    return doc


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(), dumps=lambda o: json.dumps(o, ensure_ascii=False))
