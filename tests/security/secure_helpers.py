"""Names and helpers shared by the secured-broker tests (the broker itself: tests/security/conftest.py)."""

from __future__ import annotations

import random
from typing import Any

from gridhub.infra.base import port_in_use
from gridhub.infra.secure import SecureInfra
from gridhub.settings import Settings

#: The agencies the secured broker gets principals for: a lead, an assisting county centre, a third.
ZHZF, SCJG, ZZZX = "330502.zhzf", "330502.scjg", "330502.zzzx"
AGENCIES = [ZHZF, SCJG, ZZZX]


def free_port_pair() -> int:
    """Two consecutive free ports in 21000-28999 (below the ephemeral range, away from the dev servers)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(21000, 28990, 2)
        if not port_in_use("127.0.0.1", base) and not port_in_use("127.0.0.1", base + 1):
            return base
    raise RuntimeError("no free port pair")


def on_secured_broker(secure: SecureInfra, settings: Settings, **update: Any) -> Settings:
    """The test's settings (namespace, ClickHouse database, ports) with the hub's login to the secured broker."""
    secured = secure.hub_settings()
    kafka = {k: getattr(secured, k) for k in type(secured).model_fields if k.startswith("kafka_")}
    return settings.model_copy(update={**kafka, **update})
