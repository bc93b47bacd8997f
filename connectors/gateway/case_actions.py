"""``POST /v1/cases/{caseId}/actions``: the county centre's actions on a case (issue 15).

Body: one JSON object ``{"centre", "action", "operator", "reason", ...}``
with the action's fields (``streams/routing/centre.py``: ``agency``/``role``
for ``assign``, ``category``/``streetCode`` for ``recategorise``,
``intoCaseId`` for ``merge``, ``reportId`` (+ ``source``/``sourceRef``) for
``split``, ``deadline`` for ``reopen``).  ``centre`` names the county centre
acting (``330502.zzzx``); the bearer token must be that centre's token (the
agency token book: ``GRIDHUB_FEEDBACK_TOKENS``, ``dev-330502.zzzx`` in
development).  Only county and city centres (``*.zzzx``) may act: an
agency's own token is refused with 403.

The command is shape-checked with the same parser routing uses, put on
``case-commands`` keyed by the case id, and answered ``202`` with its
``commandId`` once Kafka acknowledged it.  Whether it applies (the case
exists, the agency is known, ...) is routing's decision: a refused command
lands in ``dlq`` with the reason, and an applied one in ``case-events`` as
``centre_<action>``.
"""

from __future__ import annotations

import json
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

from connectors.base import RawRecord
from gridhub.core.agencies import CENTRE
from gridhub.core.logging import get_logger
from gridhub.core.settings import Settings

log = get_logger(__name__)

PATH = "/v1/cases/{caseId}/actions"
_MAX_BODY = 64 * 1024  # one command is a few hundred bytes; 64 KiB leaves room for a long reason and refs


def make_handler(settings: Settings, check_token: Callable[[str, str | None], bool],
                 deliver: Callable[[list[RawRecord]], Awaitable[web.Response | None]],
                 error_response: Callable[..., web.Response],
                 bearer: Callable[[web.Request], str | None]) -> Callable[[web.Request], Awaitable[web.Response]]:
    from streams.routing.centre import COMMANDS_TOPIC, parse_command
    from streams.routing.lifecycle import Rejected

    async def case_action(request: web.Request) -> web.Response:
        case_id = request.match_info["caseId"]
        token = bearer(request)
        if token is None:
            return error_response(401, "unauthorized", "missing bearer token")
        if request.content_length is not None and request.content_length > _MAX_BODY:
            return error_response(413, "body_too_large", f"request body exceeds {_MAX_BODY} bytes")
        body = await request.content.read(_MAX_BODY + 1)
        if len(body) > _MAX_BODY:
            return error_response(413, "body_too_large", f"request body exceeds {_MAX_BODY} bytes")
        try:
            doc: Any = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return error_response(400, "malformed_json", f"malformed JSON: {exc}")
        if not isinstance(doc, dict):
            return error_response(400, "not_an_object", "expected one JSON object")
        centre = doc.get("centre")
        if not isinstance(centre, str) or not check_token(centre, token):
            return error_response(401, "unauthorized", "the bearer token is not the token of the 'centre' named")
        if not centre.endswith("." + CENTRE):
            return error_response(403, "forbidden", "only a county or city centre (<code>.zzzx) may act on cases")
        if doc.get("caseId") not in (None, case_id):
            return error_response(400, "case_mismatch", "the body's caseId differs from the URL's")
        doc["caseId"] = case_id
        doc.setdefault("time", int(time.time() * 1000))
        doc["principal"] = centre
        try:
            cmd = parse_command(doc)
        except Rejected as exc:
            return error_response(400, "invalid_command", str(exc))
        doc["commandId"] = cmd["commandId"]
        raw = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        failed = await deliver([RawRecord(settings.topic(COMMANDS_TOPIC), case_id.encode("utf-8"), raw)])
        if failed:
            return failed
        log.info("gateway_case_action", case_id=case_id, action=cmd["action"], operator=cmd["operator"],
                 centre=centre, command_id=cmd["commandId"])
        return web.json_response({"commandId": cmd["commandId"], "caseId": case_id, "status": "accepted"},
                                 status=202)

    return case_action
