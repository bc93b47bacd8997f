"""The simulated agencies' plans (pure): every branch of the closed loop, deadlines respected."""

from __future__ import annotations

import random
from collections import Counter

from gridhub.simulate.loop import FATES, HOUR, LoopTiming, plan_dispatch

T0 = 1_790_000_000_000
TIMING = LoopTiming(speed=3600, sync_ms=T0 + 10 * 24 * HOUR)


def dispatch(n: int, role: str = "lead", previous: str | None = None, agency: str = "330502.zhzf") -> dict:
    return {"dispatchId": f"d{n}", "caseId": f"c{n}", "agency": agency, "role": role, "dispatchedAt": T0,
            "signDeadline": T0 + 2 * HOUR, "resolveDeadline": T0 + 5 * 24 * HOUR, "previousDispatchId": previous}


def test_fates_follow_the_weights_and_keep_their_promises() -> None:
    fates: Counter[str] = Counter()
    for n in range(2000):
        fate, plan = plan_dispatch(random.Random(n), dispatch(n), TIMING)
        fates[fate] += 1
        actions = {a["action"]: (t, a) for t, a in plan}
        times = [t for t, _ in plan]
        assert times == sorted(times) and all(t >= T0 for t in times)
        if fate == "return":
            assert list(actions) == ["return"] and actions["return"][1]["note"]
            continue
        sign_t = actions["sign"][0]
        assert (sign_t > T0 + 2 * HOUR) == (fate == "late_sign")
        assert actions["sign"][1]["_after_escalation"] == (fate == "late_sign")
        if fate == "open":
            assert "resolve" not in actions
            continue
        resolve_t, resolve = actions["resolve"]
        deadline = actions["extend"][1]["deadline"] if fate == "extend" else T0 + 5 * 24 * HOUR
        assert (resolve_t > deadline) == (fate == "late_resolve"), fate
        assert resolve["_after_escalation"] == (fate == "late_resolve")
        if fate == "extend":
            assert T0 + 5 * 24 * HOUR < deadline <= T0 + 5 * 24 * HOUR + TIMING.max_extension_ms
    assert set(fates) == set(FATES)
    for fate, weight in FATES.items():
        assert abs(fates[fate] / 2000 - weight / sum(FATES.values())) < 0.04, fates


def test_rerouted_dispatches_and_centres_are_never_returned_and_assists_only_sign() -> None:
    for n in range(300):
        assert plan_dispatch(random.Random(n), dispatch(n, previous="d0"), TIMING)[0] != "return"
        assert plan_dispatch(random.Random(n), dispatch(n, agency="330502.zzzx"), TIMING)[0] != "return"
        fate, plan = plan_dispatch(random.Random(n), dispatch(n, role="assist"), TIMING)
        assert fate == "assist" and [a["action"] for _, a in plan] == ["sign"] and plan[0][0] <= T0 + 2 * HOUR
