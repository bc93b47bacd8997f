"""The HTTP ingest gateway: source systems push JSON documents, the hub keeps the bytes.

Endpoints (docs/connectors.md has the full reference):

* ``POST /v1/ingest/{source}``: one JSON document or a JSON array of them.
  Answers ``202`` with one result per item only after Kafka acknowledged the
  accepted documents with ``acks=all``; so a ``202`` means "durable", and a
  client that got no answer may safely resend (the raw topic is keyed by the
  source id, and fusion treats a resent document as the same record).
* ``POST /v1/feedback``: agency feedback (签收/退单/进展/延期/办结), shape-checked
  and put on ``feedback`` keyed by ``caseId``.
* ``GET /healthz``.
* ``GET /openapi.json``: the contract, deploy/openapi.yaml (connectors/gateway/contract.py).

The gateway only checks what it needs to key a document (that it is a JSON
object with its source id).  Everything deeper is the normalize stage's job,
which dead-letters with the reason; a gateway that validated deeply would
turn away documents that a later fix of the normalizer could still accept.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable

from aiohttp import web

from connectors.base import RawRecord, RetriableError
from connectors.gateway.contract import openapi_json, request_metrics
from connectors.kafka_io import RawProducer
from gridhub.core.dlq import DLQ_MAX_VALUE, dead_letter_headers
from gridhub.core.logging import get_logger
from gridhub.core.settings import Settings
from gridhub.core.topics import (DLQ, FEEDBACK, FEEDBACK_ACTIONS, FEEDBACK_AGENCY_HEADER, FEEDBACK_VIA_HEADER, RAW,
                                 RAW_KEY_FIELD, SOURCES)

log = get_logger(__name__)

#: Default request body limit: what a dead letter can hold whole (gridhub/core/dlq.py: 900,000 bytes, i.e.
#: Faust's 1,000,000-byte record limit less room for key and headers).  It was 1 MiB, above that
#: limit: a document of 1.0-1.05 MB was accepted, then could not be dead-lettered by ingest and
#: stalled its partition (issue 16).  A batch bigger than this is split by the client.
DEFAULT_MAX_BODY = DLQ_MAX_VALUE
#: Largest array accepted in one request: bounds the work (and the wait for acks) per request.
MAX_ITEMS = 5000
FEEDBACK_REQUIRED = ("dispatchId", "caseId", "agency", "action", "time")
#: Prefix of the development tokens used when no tokens are configured.
DEV_TOKEN_PREFIX = "dev-"


def parse_tokens(text: str) -> dict[str, str]:
    """``"a=tok1,b=tok2"`` -> ``{"a": "tok1", "b": "tok2"}`` (whitespace around items ignored)."""
    out: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, token = item.strip().partition("=")
        if not sep or not name.strip() or not token.strip():
            raise ValueError("token lists are 'name=token,name=token'")  # never echo the text: it holds secrets
        out[name.strip()] = token.strip()
    return out


class TokenBook:
    """Bearer tokens per principal (a source, or an agency).

    With no configured tokens the gateway runs in development mode: the token of
    principal ``X`` is ``dev-X`` (e.g. ``dev-sensors``, ``dev-330502.zhzf``).
    Production sets ``GRIDHUB_INGEST_TOKENS`` / ``GRIDHUB_FEEDBACK_TOKENS``.
    """

    def __init__(self, text: str, *, allow_dev: bool = True) -> None:
        self.tokens = parse_tokens(text)
        # Production never falls back to dev tokens (Settings.check_production refuses to start
        # without tokens; this is the second lock): an empty book then admits nobody.
        self.dev_mode = not self.tokens and allow_dev

    def check(self, principal: str, presented: str | None) -> bool:
        if presented is None:
            return False
        expected = DEV_TOKEN_PREFIX + principal if self.dev_mode else self.tokens.get(principal)
        if expected is None:
            return False
        return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8"))

    def owner(self, presented: str | None) -> str | None:
        """The principal a token belongs to (every entry compared, in constant time each), or None."""
        if presented is None:
            return None
        if self.dev_mode:
            name = presented[len(DEV_TOKEN_PREFIX):] if presented.startswith(DEV_TOKEN_PREFIX) else ""
            return name or None
        found = None
        for principal, token in self.tokens.items():
            if hmac.compare_digest(token.encode("utf-8"), presented.encode("utf-8")):
                found = principal
        return found


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message, **extra}}
    headers = {"WWW-Authenticate": 'Bearer realm="gridhub"'} if status == 401 else None
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


class BodyTooLarge(Exception):
    pass


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading them all."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge()
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class Item:
    index: int
    raw: bytes          # the item's exact bytes as delivered
    value: Any          # parsed JSON


def split_items(text: str) -> tuple[bool, list[Item]]:
    """Parse a body into items, keeping each item's exact original text.

    Returns ``(is_array, items)``.  For an array, each element's original text is
    sliced out of the body (``JSONDecoder.raw_decode`` gives where each element
    ends), so the raw topic holds the document exactly as the source wrote it,
    not a re-serialisation.  Raises ``ValueError`` (``json.JSONDecodeError``) on bad JSON.
    """
    decoder = json.JSONDecoder()
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark some Windows tools write
    stripped = text.strip()
    if not stripped.startswith("["):
        value = json.loads(text)
        return False, [Item(0, stripped.encode("utf-8"), value)]
    json.loads(text)  # validates the whole body once, with json's own error positions
    items: list[Item] = []
    pos = text.index("[") + 1
    n = len(text)

    def skip_ws(p: int) -> int:
        while p < n and text[p] in " \t\r\n":
            p += 1
        return p

    pos = skip_ws(pos)
    if pos < n and text[pos] == "]":
        return True, []
    while True:
        pos = skip_ws(pos)
        value, end = decoder.raw_decode(text, pos)
        items.append(Item(len(items), text[pos:end].encode("utf-8"), value))
        pos = skip_ws(end)
        if text[pos] == ",":
            pos += 1
            continue
        return True, items  # text[pos] == "]": json.loads above guaranteed the shape


def item_key(source: str, value: Any) -> tuple[str | None, str | None]:
    """``(key, None)`` or ``(None, reason)``: the only check the gateway makes."""
    if not isinstance(value, dict):
        return None, f"item is a JSON {type(value).__name__ if value is not None else 'null'}, not an object"
    field = RAW_KEY_FIELD[source]
    key = value.get(field)
    if isinstance(key, bool) or not isinstance(key, (str, int)) or (isinstance(key, str) and not key.strip()):
        return None, f"missing key field '{field}' (a non-empty string)"
    try:
        str(key).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape ("\ud800"): not a text a Kafka key can hold
        return None, f"key field '{field}' is not valid Unicode text"
    return str(key), None


def check_feedback(value: Any, allowed: Callable[[str], bool]) -> str | None:
    """None if ``value`` is a well-formed feedback object from an allowed agency, else the reason."""
    if not isinstance(value, dict):
        return "feedback must be a JSON object"
    missing = [f for f in FEEDBACK_REQUIRED if value.get(f) in (None, "")]
    if missing:
        return f"missing required field(s): {', '.join(missing)}"
    for name in ("dispatchId", "caseId", "agency", "action"):
        if not isinstance(value[name], str):
            return f"'{name}' must be a string"
        try:
            value[name].encode("utf-8")
        except UnicodeEncodeError:
            return f"'{name}' is not valid Unicode text"
    if value["action"] not in FEEDBACK_ACTIONS:
        return f"action '{value['action']}' is not one of {', '.join(FEEDBACK_ACTIONS)}"
    for name in ("time", "deadline"):
        if name in value and value[name] is not None and not _is_time(value[name]):
            return f"'{name}' must be epoch milliseconds or an ISO-8601 time"
    if value["action"] == "extend" and value.get("deadline") in (None, ""):
        return "an 'extend' needs the new 'deadline'"
    if "note" in value and value["note"] is not None and not isinstance(value["note"], str):
        return "'note' must be a string"
    if not allowed(value["agency"]):
        return f"the token does not belong to agency '{value['agency']}'"
    return None


def _is_time(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v > 0
    if isinstance(v, str):
        try:
            datetime.fromisoformat(v)
            return True
        except ValueError:
            return False
    return False


Deliver = Callable[[list[RawRecord]], Awaitable[Any]]


def too_large(request: web.Request, limit: int) -> web.Response:
    """413 saying how big the body was (when the client said), the limit, and what to do."""
    size = request.content_length
    said = f"request body of {size} bytes" if size is not None else "request body"
    log.warning("gateway_body_too_large", path=request.path, size=size, limit=limit)
    return error_response(413, "body_too_large",
                          f"{said} exceeds the limit of {limit} bytes (the largest document the hub can store "
                          "and dead-letter whole); send smaller batches, and photos as attachment URLs",
                          limit_bytes=limit, **({"size_bytes": size} if size is not None else {}))


def make_app(settings: Settings, producer: RawProducer, *, max_body: int = DEFAULT_MAX_BODY) -> web.Application:
    """The aiohttp application; ``producer`` must be started by the caller."""
    allow_dev = settings.env != "production"
    ingest_tokens = TokenBook(settings.secret("ingest_tokens"), allow_dev=allow_dev)
    feedback_tokens = TokenBook(settings.secret("feedback_tokens"), allow_dev=allow_dev)
    if ingest_tokens.dev_mode or feedback_tokens.dev_mode:
        log.warning("gateway_dev_tokens", ingest=ingest_tokens.dev_mode, feedback=feedback_tokens.dev_mode,
                    hint="set GRIDHUB_INGEST_TOKENS / GRIDHUB_FEEDBACK_TOKENS in production")
    dlq_topic = settings.topic(DLQ)
    # client_max_size above our own limit: read_body() enforces max_body and answers our JSON 413.
    app = web.Application(client_max_size=max_body + 1)
    app.middlewares.append(request_metrics)  # gridhub_gateway_requests_total / _request_duration_seconds

    async def deliver(records: list[RawRecord]) -> web.Response | None:
        try:
            await producer.deliver(records)
        except RetriableError as exc:
            log.warning("gateway_kafka_unavailable", error=str(exc))
            return error_response(503, "kafka_unavailable", "the hub cannot store documents right now; retry later",
                                  retry_after_seconds=5)
        return None

    async def ingest(request: web.Request) -> web.Response:
        source = request.match_info["source"]
        if source not in SOURCES:
            return error_response(404, "unknown_source",
                                  f"unknown source '{source}'; known sources: {', '.join(SOURCES)}")
        if not ingest_tokens.check(source, bearer(request)):
            return error_response(401, "unauthorized",
                                  f"missing or invalid bearer token for source '{source}'")
        try:
            body = await read_body(request, max_body)
        except BodyTooLarge:
            return too_large(request, max_body)
        raw_topic = settings.topic(RAW[source])

        def dead_letter(raw: bytes, reason: str, index: int | None) -> RawRecord:
            extra = {"source": source} | ({"index": str(index)} if index is not None else {})
            return RawRecord(dlq_topic, None, raw, dead_letter_headers("gateway", reason, raw_topic, extra=extra))

        try:
            text = body.decode("utf-8")
            is_array, items = split_items(text)
        except (UnicodeDecodeError, ValueError) as exc:
            reason = "body is not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else f"malformed JSON: {exc}"
            if body.strip():
                failed = await deliver([dead_letter(body, reason, None)])
                if failed:
                    return failed
            return error_response(400, "malformed_json", reason)
        if is_array and not items:
            return error_response(400, "empty_array", "the JSON array holds no documents")
        if len(items) > MAX_ITEMS:
            return error_response(413, "too_many_items", f"at most {MAX_ITEMS} documents per request",
                                  limit_items=MAX_ITEMS)

        records: list[RawRecord] = []
        results: list[dict[str, Any]] = []
        for item in items:
            key, why = item_key(source, item.value)
            if key is None:
                reason = why or "unkeyable"
                records.append(dead_letter(item.raw, reason, item.index))
                results.append({"index": item.index, "key": None, "status": "rejected", "error": reason})
            else:
                records.append(RawRecord(raw_topic, key.encode("utf-8"), item.raw))
                results.append({"index": item.index, "key": key, "status": "accepted"})
        failed = await deliver(records)
        if failed:
            return failed
        accepted = sum(1 for r in results if r["status"] == "accepted")
        log.info("gateway_ingest", source=source, items=len(results), accepted=accepted,
                 rejected=len(results) - accepted)
        if accepted == 0:
            first = results[0]["error"]
            code = "not_an_object" if "not an object" in first else "missing_key"
            return error_response(400, code, first if len(results) == 1 else "no document could be keyed",
                                  results=results)
        return web.json_response(results, status=202, dumps=_dumps)

    async def feedback(request: web.Request) -> web.Response:
        token = bearer(request)
        if token is None:
            return error_response(401, "unauthorized", "missing bearer token")
        sender = feedback_tokens.owner(token)
        if sender is None:
            return error_response(401, "unauthorized", "the bearer token belongs to no agency")
        try:
            body = await read_body(request, max_body)
        except BodyTooLarge:
            return too_large(request, max_body)
        try:
            is_array, items = split_items(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return error_response(400, "malformed_json", f"malformed JSON: {exc}")
        if is_array and not items:
            return error_response(400, "empty_array", "the JSON array holds no feedback")
        if len(items) > MAX_ITEMS:
            return error_response(413, "too_many_items", f"at most {MAX_ITEMS} feedback objects per request")
        agencies = {i.value.get("agency") for i in items if isinstance(i.value, dict)}
        if sender not in agencies:
            return error_response(401, "unauthorized", "the bearer token belongs to none of the agencies named")
        # All or nothing: an agency system resends the whole batch after fixing it.
        errors: list[tuple[int, str]] = []
        for i in items:
            problem = check_feedback(i.value, lambda a: a == sender)
            if problem:
                errors.append((i.index, problem))
        if errors:
            forbidden = all("does not belong" in e for _, e in errors)
            return error_response(403 if forbidden else 400, "forbidden_agency" if forbidden else "invalid_feedback",
                                  errors[0][1], errors=[{"index": n, "error": e} for n, e in errors])
        topic = settings.topic(FEEDBACK)
        # The token's agency travels with each record: routing believes this header, which only hub
        # processes can write (agencies have no WRITE on `feedback` on the secured broker).
        headers = [(FEEDBACK_AGENCY_HEADER, sender.encode("utf-8")), (FEEDBACK_VIA_HEADER, b"gateway")]
        records = [RawRecord(topic, str(i.value["caseId"]).encode("utf-8"), i.raw, list(headers)) for i in items]
        failed = await deliver(records)
        if failed:
            return failed
        log.info("gateway_feedback", items=len(items), agency=sender)
        return web.json_response([{"index": i.index, "key": i.value["caseId"], "status": "accepted"} for i in items],
                                 status=202, dumps=_dumps)

    async def healthz(request: web.Request) -> web.Response:
        ok = producer.ready
        return web.json_response({
            "status": "ok" if ok else "degraded",
            "kafka": {"producer": producer.kafka_state, "bootstrap": settings.kafka_bootstrap,
                      "last_error": producer.last_error},
            "auth": {"ingest_dev_tokens": ingest_tokens.dev_mode, "feedback_dev_tokens": feedback_tokens.dev_mode},
        })

    app.router.add_post("/v1/ingest/{source}", ingest)
    app.router.add_post("/v1/feedback", feedback)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/openapi.json", openapi_json)
    # issue 15: the county centre's actions on cases (connectors/gateway/case_actions.py)
    from connectors.gateway.case_actions import PATH, make_handler

    app.router.add_post(PATH, make_handler(settings, feedback_tokens.check, deliver, error_response, bearer))
    return app
