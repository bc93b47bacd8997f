"""The gateway as a ``mode.Service``: started by ``gridhub run`` beside the stream processors."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from aiohttp import web
from mode import Service, ServiceT

from connectors.base import RawRecord, Source
from connectors.gateway.app import DEFAULT_MAX_BODY, make_app
from connectors.kafka_io import RawProducer
from gridhub.core.logging import get_logger
from gridhub.core.settings import Settings

log = get_logger(__name__)


class GatewayService(Source):
    """aiohttp server + its own Kafka producer.

    Start order: the producer (a child service) connects in the background, then
    the HTTP site opens; until Kafka is reachable ingest answers 503.  Stop order:
    the HTTP site closes first (no new requests), then the producer flushes.
    """

    def __init__(self, settings: Settings, *, host: str | None = None, port: int | None = None,
                 max_body: int = DEFAULT_MAX_BODY, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.host = host or settings.gateway_host
        self.port = settings.gateway_port if port is None else port
        self.max_body = max_body
        self.producer = RawProducer(settings, client_id="gridhub-gateway")
        self._runner: web.AppRunner | None = None

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        return [self.producer]

    async def deliver(self, records: Sequence[RawRecord]) -> None:
        await self.producer.deliver(records)

    async def on_started(self) -> None:
        self._runner = web.AppRunner(make_app(self.settings, self.producer, max_body=self.max_body),
                                     access_log=None)  # one structured line per request is logged by the app
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            # Not fatal: the stream processors in the same worker keep running (several workers on
            # one host, e.g. in tests, would otherwise kill each other over the port).  Loud instead.
            log.error("gateway_bind_failed", host=self.host, port=self.port, error=str(exc))
            await self._runner.cleanup()
            self._runner = None
            return
        log.info("gateway_listening", host=self.host, port=self.bound_port)

    @property
    def bound_port(self) -> int:
        """The listening port (useful with port 0 in tests)."""
        if self._runner is None or not self._runner.addresses:
            return self.port
        return int(self._runner.addresses[0][1])

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def create(app: Any, settings: Settings) -> Service | None:
    """``gridhub run`` factory (runner.SERVICES).  Disabled with ``GRIDHUB_GATEWAY_PORT=0``."""
    if settings.gateway_port == 0:
        return None
    return GatewayService(settings)
