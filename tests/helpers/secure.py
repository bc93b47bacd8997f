"""Names and helpers shared by the secured-broker tests (the broker itself: the ``secure`` fixture of
tests/conftest.py)."""

from __future__ import annotations

from typing import Any

from gridhub.infra.secure import SecureInfra
from gridhub.core.settings import Settings

#: The agencies the secured broker gets principals for: a lead, an assisting county centre, a third.
ZHZF, SCJG, ZZZX = "330502.zhzf", "330502.scjg", "330502.zzzx"
AGENCIES = [ZHZF, SCJG, ZZZX]



def on_secured_broker(secure: SecureInfra, settings: Settings, **update: Any) -> Settings:
    """The test's settings (namespace, ClickHouse database, ports) with the hub's login to the secured broker."""
    secured = secure.hub_settings()
    kafka = {k: getattr(secured, k) for k in type(secured).model_fields if k.startswith("kafka_")}
    return settings.model_copy(update={**kafka, **update})
