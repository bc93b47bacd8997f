"""The feedback relay's pure parts: which agency a topic belongs to, which headers it stamps."""

from __future__ import annotations

from gridhub.core.settings import Settings
from streams.routing.feedback import (AGENCY_HEADER, VIA_HEADER, agency_of_topic, feedback_topic, relay_headers,
                                      verified_agency)


def test_the_agency_comes_from_the_topic_name() -> None:
    s = Settings(namespace="t1")
    assert feedback_topic("330502.zhzf") == "feedback.330502.zhzf"
    assert agency_of_topic(s, "t1.feedback.330502.zhzf") == "330502.zhzf"
    assert agency_of_topic(s, "t1.feedback.330502.town-330502001") == "330502.town-330502001"
    for other in ("t1.feedback", "t1.dispatch.330502.zhzf", "feedback.330502.zhzf", "t1.feedback.330502",
                  "t1.feedback.330502.zhzf.x", "t1.feedback..zhzf"):
        assert agency_of_topic(s, other) is None, other
    assert agency_of_topic(Settings(), "feedback.330502.zhzf") == "330502.zhzf"


def test_relay_headers_are_the_hubs_only() -> None:
    headers = relay_headers("t1.feedback.330502.zhzf", "330502.zhzf", 0, 42)
    assert dict(headers) == {AGENCY_HEADER: b"330502.zhzf", VIA_HEADER: b"topic:t1.feedback.330502.zhzf",
                             "gridhub.source": b"t1.feedback.330502.zhzf:0:42"}
    assert verified_agency(headers) == "330502.zhzf"
    assert verified_agency([("other", b"x")]) is None and verified_agency(None) is None
