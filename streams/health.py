"""``/metrics``, ``/healthz`` and the consumer-lag gauge of a hub worker.

Served by the Faust worker's own web server (``settings.web_port``), so one
port per worker answers both Prometheus and a load balancer / systemd
watchdog.  :func:`install` registers the endpoints and the lag timer on the
worker's app; ``streams.app.prepare_worker`` calls it before a worker starts.

Consumer lag is measured from the broker's side: the committed offsets of the
worker's consumer group (``settings.faust_app_id``) against the partitions'
end offsets, through a kafka-python admin client in an executor (blocking
client, off the event loop).  Each worker reports only the partitions it is
assigned, so summing the series over workers does not double-count.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Iterable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from gridhub.core.logging import get_logger
from gridhub.core.metrics import CONSUMER_LAG
from gridhub.core.settings import Settings

log = get_logger(__name__)

#: How often the lag gauge is refreshed: 15 s is Prometheus' default
#: scrape interval, so every scrape sees a value at most one interval old.
LAG_INTERVAL_S = 15.0

TopicPart = tuple[str, int]

#: How often the rebalance watch looks at the app (seconds): fine against a stall limit of minutes.
REBALANCE_WATCH_S = 5.0


def health_status(*, crashed: bool, stopping: bool, rebalancing_since: float | None, now: float,
                  stall_after_s: float) -> str:
    """Pure: ``ok``, or why ``/healthz`` answers 503.

    ``stalled``: a rebalance (revoke, assign, table recovery) has lasted longer than
    ``stall_after_s``.  That normally takes seconds, minutes when a worker rebuilds a big table from
    its changelog; longer, the worker is stuck (docs/scaling.md "Known issues": a commit awaited by
    the revoke that never finishes) and only a restart frees its partitions.  Nothing is lost by
    restarting it: its uncommitted records are delivered again.
    """
    if crashed:
        return "crashed"
    if stopping:
        return "stopping"
    if rebalancing_since is not None and now - rebalancing_since > stall_after_s:
        return "stalled"
    return "ok"


def compute_lag(committed: Mapping[TopicPart, int | None], ends: Mapping[TopicPart, int]) -> dict[TopicPart, int]:
    """Pure: records behind the log end per partition.

    A partition without a committed offset has consumed nothing yet... or is
    new; Faust starts those from the earliest offset, so its lag is its end
    offset (an over-estimate only when retention deleted old records).
    """
    lag: dict[TopicPart, int] = {}
    for tp, end in ends.items():
        done = committed.get(tp)
        lag[tp] = max(0, end - (done if done is not None and done >= 0 else 0))
    return lag


class LagProbe:
    """Blocking measurement of a consumer group's lag (run it in an executor)."""

    def __init__(self, settings: Settings, group_id: str | None = None) -> None:
        self.settings = settings
        self.group_id = group_id or settings.faust_app_id
        self._admin: Any = None

    def _client(self) -> Any:
        if self._admin is None:
            from kafka.admin import KafkaAdminClient

            self._admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap,
                                           client_id=f"{self.group_id}-lag-probe",
                                           **self.settings.kafka_client_options())
        return self._admin

    def measure(self, partitions: Iterable[TopicPart] | None = None) -> dict[TopicPart, int]:
        """Lag of ``partitions`` (default: every partition the group has committed)."""
        from kafka import TopicPartition
        from kafka.admin import OffsetSpec

        admin = self._client()
        offsets = admin.list_group_offsets({self.group_id: None}).get(self.group_id, {})
        committed: dict[TopicPart, int | None] = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
        wanted = set(partitions) if partitions is not None else set(committed)
        if not wanted:
            return {}
        found = admin.list_partition_offsets({TopicPartition(t, p): OffsetSpec.LATEST for t, p in wanted})
        ends = {(tp.topic, tp.partition): info.offset for tp, info in found.items()}
        return compute_lag(committed, ends)

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None


def _assigned(app: Any) -> set[TopicPart] | None:
    """The partitions this worker consumes for its agents (None: not known yet).

    Changelog partitions (restored, never committed) and Faust's leader
    topic are left out: their "lag" would be their whole log.
    """
    try:
        assignment = app.consumer.assignment()
        changelogs = {str(name) for name in app.tables.changelog_topics}
    except Exception:  # consumer not created / not started yet
        return None
    return {(tp.topic, tp.partition) for tp in assignment
            if tp.topic not in changelogs and not tp.topic.endswith("-__assignor-__leader")}


def install(app: Any, settings: Settings) -> None:
    """Register ``/metrics``, ``/healthz`` and the lag timer on a Faust app (once)."""
    if getattr(app, "_gridhub_health_installed", False):
        return
    app._gridhub_health_installed = True
    probe = LagProbe(settings)
    state: dict[str, Any] = {"lag_total": None, "lag_measured_at": None, "lag_error": None,
                             "rebalancing_since": None}
    shown: set[TopicPart] = set()

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        # 503 while the worker is stopping, crashed or stuck in a rebalance: a supervisor or load
        # balancer then stops sending work here, and a liveness probe restarts it.
        since = state["rebalancing_since"]
        status = health_status(crashed=bool(getattr(app, "crashed", False)),
                               stopping=bool(getattr(app, "should_stop", False)), rebalancing_since=since,
                               now=time.monotonic(), stall_after_s=settings.rebalance_stall_seconds)
        body = {"status": status, "app_id": settings.faust_app_id,
                "namespace": settings.namespace, "rebalancing": bool(getattr(app, "rebalancing", False)),
                "rebalancing_seconds": None if since is None else round(time.monotonic() - since, 1),
                "consumer_lag": state["lag_total"], "lag_measured_at": state["lag_measured_at"],
                "lag_error": state["lag_error"]}
        return web.json(body, status=200 if status == "ok" else 503)

    @app.timer(interval=REBALANCE_WATCH_S)
    async def watch_rebalance() -> None:
        """When the current rebalance began (monotonic seconds), for the ``stalled`` status."""
        if not getattr(app, "rebalancing", False):
            state.update(rebalancing_since=None, stall_logged=False)
        elif state["rebalancing_since"] is None:
            state["rebalancing_since"] = time.monotonic()
        elif (time.monotonic() - state["rebalancing_since"] > settings.rebalance_stall_seconds
              and not state.get("stall_logged")):
            state["stall_logged"] = True  # once per rebalance
            log.error("worker_rebalance_stalled", seconds=round(time.monotonic() - state["rebalancing_since"]),
                      hint="/healthz answers 503 (stalled) so that a liveness probe restarts this worker")

    @app.timer(interval=LAG_INTERVAL_S)
    async def update_consumer_lag() -> None:
        assigned = _assigned(app)
        if not assigned:
            return
        loop = asyncio.get_running_loop()
        try:
            lag = await loop.run_in_executor(None, probe.measure, assigned)
        except Exception as exc:  # broker unreachable during a restart: keep the last values, say why
            state["lag_error"] = str(exc)
            log.warning("consumer_lag_failed", error=str(exc))
            return
        for topic, partition in shown - set(lag):
            try:
                CONSUMER_LAG.remove(topic, str(partition))  # partition moved to another worker
            except KeyError:
                pass
        shown.clear()
        for (topic, partition), value in lag.items():
            CONSUMER_LAG.labels(topic, str(partition)).set(value)
            shown.add((topic, partition))
        state.update(lag_total=sum(lag.values()), lag_measured_at=int(time.time() * 1000), lag_error=None)

    del metrics, healthz, update_consumer_lag, watch_rebalance  # registered on the app; nothing else refers to them
    app._gridhub_lag_probe = probe
