"""Agencies cannot act for each other (issue 16), on the secured broker with a real routing worker.

A major case goes to 330502.zhzf (lead, agency A) and 330502.zzzx (assist, agency B).  B then
tries to sign, resolve, return and extend A's dispatch every way it can:

* over Kafka: writing A's feedback topic or the shared ``feedback`` (refused by the ACLs), and
  writing its own ``feedback.330502.zzzx`` naming A, or naming itself with A's dispatch id
  (routing takes the agency from the topic: dead-lettered with the reason);
* over HTTP with B's token: naming A (401 / 403), or naming itself with A's dispatch id (dead-lettered).

Afterwards A's dispatch has exactly the events A caused (dispatched, then A's own sign), B's own
feedback on its own dispatch works, and every refused attempt is in ``dlq`` with its reason.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Callable

import pytest

from gridhub.core.codec import codec
from gridhub.core.dlq import parse_dead_letter_headers
from gridhub.infra.secure import ADMIN, SecureInfra, agency_acls
from gridhub.core.settings import Settings
from gridhub.core.topics import FEEDBACK, dispatch_topic, feedback_topic
from helpers.secure import SCJG, ZHZF, ZZZX, on_secured_broker

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DAY = 86_400_000
ACTIONS = ("sign", "resolve", "return", "extend")


def _now() -> int:
    return int(time.time() * 1000)


def _case(case_id: str) -> dict[str, Any]:
    at = _now()
    return {"case_id": case_id, "county_code": "330502", "street_code": "330502001", "category": "garbage",
            "title": "垃圾堆放", "address": "测试路1号", "lng": 120.09, "lat": 30.87, "severity": 3,
            "sources": ["four-platforms"], "report_ids": [f"r-{case_id}"], "report_count": 1, "first_seen": at,
            "last_seen": at, "status": "reported", "dispatchable": True, "device_ids": [], "version": 1,
            "updated_at": at}


def _feedback(d: dict[str, Any], action: str, agency: str | None = None, **kw: Any) -> dict[str, Any]:
    doc = {"dispatchId": d["dispatchId"], "caseId": d["caseId"], "agency": agency or d["agency"], "action": action,
           "time": _now(), "note": "退单理由：不属于本单位" if action == "return" else None}
    if action == "extend":
        doc["deadline"] = int(d["resolveDeadline"]) + DAY
    doc.update(kw)
    return doc


class Reader:
    """Reads a namespaced topic on the secured broker as the hub, from the beginning."""

    def __init__(self, hub: Settings, topic: str) -> None:
        from kafka import KafkaConsumer

        self.name = hub.topic(topic)
        self.consumer = KafkaConsumer(self.name, bootstrap_servers=hub.kafka_bootstrap, group_id=None,
                                      auto_offset_reset="earliest", enable_auto_commit=False,
                                      **hub.kafka_client_options())
        self.records: list[Any] = []

    def until(self, predicate: Callable[[list[Any]], bool], timeout: float = 90, what: str = "") -> list[Any]:
        deadline = time.monotonic() + timeout
        while not predicate(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: timed out waiting for {what}; read {len(self.records)}")
            for batch in self.consumer.poll(timeout_ms=500).values():
                self.records.extend(batch)
        return self.records

    def settle(self, seconds: float) -> list[Any]:
        """Everything read after ``seconds`` more (to show that nothing else arrives)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for batch in self.consumer.poll(timeout_ms=300).values():
                self.records.extend(batch)
        return self.records

    def close(self) -> None:
        self.consumer.close()


def _produce_as(secure: SecureInfra, principal: str, topic: str, key: str, doc: dict[str, Any]) -> Any:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=secure.bootstrap, acks="all", max_block_ms=15_000, retries=0,
                             **secure.client_options(principal))
    try:
        return producer.send(topic, key=key.encode(), value=json.dumps(doc).encode()).get(timeout=30)
    finally:
        producer.close(timeout=5)


def _post(url: str, token: str, body: Any) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_agency_b_cannot_act_on_agency_a_dispatch(secure: SecureInfra, settings: Settings,
                                                  worker: Callable[..., Any]) -> None:
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic
    from kafka.errors import TopicAuthorizationFailedError

    tokens = {ZHZF: "tok-zhzf-5b0c", ZZZX: "tok-zzzx-91ad", SCJG: "tok-scjg-77e2"}
    hub = on_secured_broker(secure, settings, feedback_tokens="," .join(f"{a}={t}" for a, t in tokens.items()),
                            ingest_tokens="sensors=tok-sensors")
    # The namespace's agency ACLs (the broker's own were made for the contract names), and the
    # agency topics created ahead, as `gridhub topics ensure --dispatch` does.
    admin = KafkaAdminClient(bootstrap_servers=secure.bootstrap, **secure.client_options(ADMIN))
    try:
        acls = [acl for agency in (ZHZF, ZZZX, SCJG) for acl in agency_acls(hub, agency)]
        assert not admin.create_acls(acls).get("failed")
        names = [hub.topic(n) for a in (ZHZF, ZZZX, SCJG) for n in (dispatch_topic(a), feedback_topic(a))]
        admin.create_topics([NewTopic(n, 1, 1) for n in names])
    finally:
        admin.close()

    w = worker(hub, only="routing,gateway")
    events, dlq = Reader(hub, "case-events"), Reader(hub, "dlq")
    producer = KafkaProducer(bootstrap_servers=hub.kafka_bootstrap, acks="all", **hub.kafka_client_options())
    try:
        case_id = "c-auth-1"
        producer.send(hub.topic("cases"), key=case_id.encode(), value=codec("Case").encode(_case(case_id))).get(30)
        dispatched = {}
        for agency in (ZHZF, ZZZX):
            reader = Reader(hub, dispatch_topic(agency))
            records = reader.until(lambda rs: any(codec("Dispatch").decode(r.value)["caseId"] == case_id for r in rs),
                                   what=f"the dispatch to {agency}")
            dispatched[agency] = next(d for d in (codec("Dispatch").decode(r.value) for r in records)
                                      if d["caseId"] == case_id)
            reader.close()
        a, b = dispatched[ZHZF], dispatched[ZZZX]
        assert (a["role"], b["role"]) == ("lead", "assist")

        # --- over Kafka: the ACLs refuse A's topic and the shared topic to B
        for action in ACTIONS:
            for topic in (feedback_topic(ZHZF), FEEDBACK):
                with pytest.raises(TopicAuthorizationFailedError):
                    _produce_as(secure, ZZZX, hub.topic(topic), case_id, _feedback(a, action))
        # ... and B's own topic cannot speak for A, nor touch A's dispatch as itself
        refused: list[tuple[str, str]] = []
        own = hub.topic(feedback_topic(ZZZX))
        for action in ACTIONS:
            doc = _feedback(a, action)  # names A: the topic says B
            _produce_as(secure, ZZZX, own, case_id, doc)
            refused.append((json.dumps(doc), f"sent by agency {ZZZX} names agency {ZHZF}"))
            doc = _feedback(a, action, agency=ZZZX)  # B itself, with A's dispatch id
            _produce_as(secure, ZZZX, own, case_id, doc)
            refused.append((json.dumps(doc), "is not the addressee"))

        # --- over HTTP with B's token
        base = f"http://127.0.0.1:{hub.gateway_port}/v1/feedback"
        deadline = time.monotonic() + 60
        while _post(base, tokens[ZZZX], _feedback(a, "sign")) == 503 and time.monotonic() < deadline:
            time.sleep(1)  # the gateway's producer still connecting
        for action in ACTIONS:
            assert _post(base, tokens[ZZZX], _feedback(a, action)) in (401, 403)  # names A with B's token: refused
            doc = _feedback(a, action, agency=ZZZX)
            assert _post(base, tokens[ZZZX], doc) == 202  # B itself: accepted by the gateway ...
            refused.append((json.dumps(doc), "is not the addressee"))  # ... and refused by routing

        # --- the legitimate actions still work: A signs its dispatch, B signs its own
        _produce_as(secure, ZHZF, hub.topic(feedback_topic(ZHZF)), case_id, _feedback(a, "sign"))
        assert _post(base, tokens[ZZZX], _feedback(b, "sign")) == 202
        history = events.until(
            lambda rs: {(e["dispatch_id"], e["event"]) for e in map(codec("CaseEvent").decode, (r.value for r in rs))}
            >= {(a["dispatchId"], "signed"), (b["dispatchId"], "signed")}, what="both signs")
        dlq.until(lambda rs: len(rs) >= len(refused), what=f"{len(refused)} dead letters")
        history = events.settle(5)  # anything B caused would have landed by now
        dlq.settle(1)
    finally:
        producer.close()
        events.close()
        dlq.close()

    on_a = [e["event"] for e in map(codec("CaseEvent").decode, (r.value for r in history))
            if e["dispatch_id"] == a["dispatchId"]]
    assert on_a == ["dispatched", "signed"], on_a  # nothing B sent changed A's dispatch
    letters = [(json.loads(r.value), parse_dead_letter_headers(r.headers)) for r in dlq.records]
    assert all(info.stage == "feedback" for _, info in letters)
    expected = [(json.loads(raw), reason) for raw, reason in refused]
    assert sorted(json.dumps(doc, sort_keys=True) for doc, _ in letters) == \
        sorted(json.dumps(doc, sort_keys=True) for doc, _ in expected)  # every refused record, nothing else
    for doc, reason in expected:
        assert any(reason in info.reason for got, info in letters if got == doc), (doc, reason)
    assert "tok-zzzx-91ad" not in w.log_text()
