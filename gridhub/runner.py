"""``gridhub run``: every hub service in one foreground process.

The Faust worker runs the stream processors of :data:`DOMAINS`; the
services of :data:`SERVICES` (gateway, MQTT bridge, ClickHouse sink, webhook
delivery, ...) run beside it as ``mode.Service``s under the same worker, so
one SIGTERM / SIGINT stops everything cleanly, in reverse start order.

Register a stream domain by adding its module to ``DOMAINS``; register a
service by adding ``"module:factory"`` to ``SERVICES``, where
``factory(app, settings) -> mode.Service | None`` (None: disabled by settings).
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from typing import Any, Callable

import click

from gridhub.core.logging import get_logger
from gridhub.core.settings import get_settings

log = get_logger(__name__)

#: Stream domains, in pipeline order: the runner imports ``streams.<domain>.agents``, which declares
#: the domain's agents, tables and timers on ``streams.app.app`` (the domain packages themselves
#: import nothing, so their pure modules can be used without building a Faust app).
DOMAINS: list[str] = ["streams.ingest", "streams.fusion", "streams.routing"]

#: Services run beside the stream processors.
SERVICES: list[str] = [
    "connectors.gateway.service:create",
    "connectors.mqtt_bridge.service:create",
    "streams.routing.service:create",
    "connectors.webhook.service:create",
    "connectors.clickhouse.service:create",
    "streams.fusion.agents:prepare_topics",  # creates fusion's changelog before the consumer subscribes
]


def _service_names(target: str) -> set[str]:
    """``connectors.clickhouse.service:create`` answers to ``service`` and to its package, ``clickhouse``."""
    parts = target.split(":")[0].split(".")
    return {parts[-1], parts[-2]} if len(parts) > 1 else {parts[-1]}


def _load(target: str) -> Callable[..., Any]:
    module, attr = target.split(":")
    factory: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return factory


def ensure_contract_topics(settings: Any) -> None:
    """Create every fixed topic of deploy/topics.yaml (raw feeds, facts, feedback, dlq, ...) and wait
    for their partition leaders, BEFORE any consumer subscribes.

    Why here and not in the agents: a Faust consumer that subscribes to a topic that does not exist
    yet is assigned no partition of it until its next metadata refresh, five minutes later; on a
    fresh cluster, two of the three feeds went unread for those minutes (issue 14).  A failure
    (the broker refuses a create) is logged, and the worker starts anyway: Faust declares its own
    topics too.
    """
    from gridhub.core.kafka_admin import ensure_topics, load_spec

    names = [name for name in (load_spec().get("topics") or {})]
    try:
        ensure_topics(settings, names)
    except Exception as exc:
        log.warning("contract_topics_not_ensured", topics=len(names), error=str(exc))


def install_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """Make ``choice`` (``uvloop`` | ``asyncio``) the event loop of this process, and return it.

    Called before the Faust app or any service asks for a loop: mode's services take the loop of
    ``asyncio.get_event_loop()`` when they first need one, so the policy and the current loop are
    set here, once, and every part of the worker runs on the same loop.  Why uvloop by default:
    the measured figures in docs/benchmarks.md ("Client stack"); ``GRIDHUB_EVENT_LOOP=asyncio``
    switches back.
    """
    if choice == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    else:
        asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


def build_worker(domains: list[str] | None = None, services: list[str] | None = None) -> Any:
    settings = get_settings()
    loop = install_event_loop(settings.event_loop)

    import faust

    from streams.app import app, prepare_worker

    prepare_worker()
    ensure_contract_topics(settings)
    # Faust creates its datadir without parents; a fresh run dir has no faust/ yet.
    Path(app.conf.datadir).parent.mkdir(parents=True, exist_ok=True)
    for module in DOMAINS if domains is None else domains:
        importlib.import_module(f"{module}.agents")
    extra = [svc for svc in (_load(t)(app, settings) for t in (SERVICES if services is None else services)) if svc]
    worker = faust.Worker(app, *extra, loglevel=settings.log_level, redirect_stdouts=False,
                          override_logging=False, loop=loop)
    log.info("worker_event_loop", event_loop=settings.event_loop, loop=type(loop).__module__ + "." + type(loop).__name__)
    if not sys.stdout.isatty():
        # Faust's progress spinner writes terminal escapes and "OK ^" to stdout; logs say "Ready" instead.
        worker.spinner = None
    return worker


@click.command("run")
@click.option("--only", default="", help="comma-separated domains/services to run (default: all)")
def run(only: str) -> None:
    """Run every hub service in the foreground until SIGTERM / SIGINT."""
    selected = {name.strip() for name in only.split(",") if name.strip()}
    domains = [d for d in DOMAINS if not selected or d.rsplit(".", 1)[-1] in selected]
    services = [s for s in SERVICES if not selected or _service_names(s) & selected]
    worker = build_worker(domains, services)
    worker.execute_from_commandline()
