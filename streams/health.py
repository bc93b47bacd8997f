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

from faust import Sensor
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from gridhub.core.logging import get_logger
from gridhub.core.metrics import (CONSUMER_LAG, FAUST_ASSIGNED_PARTITIONS, FAUST_COMMIT_SECONDS, FAUST_MESSAGES_IN,
                             FAUST_REBALANCE_SECONDS, FAUST_REBALANCES, FAUST_REBALANCING, FAUST_SEND_ERRORS,
                             FAUST_STREAM_LAG)
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


def ready_status(health: str, *, rebalancing: bool, assigned: int | None) -> str:
    """Pure: ``ok`` when the worker should get traffic (``/readyz``), else why not.

    Ready = healthy, not in a rebalance, and holding partitions of the consumer group: a worker
    without an assignment (still joining, or more workers than partitions) processes nothing of
    what its gateway accepts, so the gateway Service should send elsewhere.
    """
    if health != "ok":
        return health
    if rebalancing:
        return "rebalancing"
    if not assigned:
        return "no partitions assigned"
    return "ok"


def stream_lag(read: Mapping[Any, int], ends: Mapping[Any, int]) -> dict[tuple[str, int], int]:
    """Pure: records between the last offset read and the high watermark, per partition Faust knows both of."""
    out = {}
    for tp, end in ends.items():
        last = read.get(tp)
        if last is not None:
            out[(tp.topic, tp.partition)] = max(0, end - last - 1)
    return out


class WorkerSensor(Sensor):
    """Faust's sensor events as Prometheus metrics with units in their names (gridhub/core/metrics.py).

    Faust ships a Prometheus sensor, but its names carry no units (``_latency`` in ms, counters
    without ``_total``) and it replaces the app's monitor; this one is added beside it.
    """

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        FAUST_MESSAGES_IN.labels(tp.topic).inc()

    def on_commit_initiated(self, consumer: Any) -> Any:
        return time.monotonic()

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        if isinstance(state, float):
            FAUST_COMMIT_SECONDS.observe(time.monotonic() - state)

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        FAUST_SEND_ERRORS.inc()

    def on_rebalance_start(self, app: Any) -> dict[str, Any]:
        FAUST_REBALANCES.inc()
        FAUST_REBALANCING.set(1)
        return {"time_start": time.monotonic()}

    def on_rebalance_end(self, app: Any, state: dict[str, Any]) -> None:
        FAUST_REBALANCING.set(0)
        if state and "time_start" in state:
            FAUST_REBALANCE_SECONDS.observe(time.monotonic() - state["time_start"])


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


def stalled_partitions(seen: dict[TopicPart, tuple[int | None, float]], committed: Mapping[TopicPart, int | None],
                       lag: Mapping[TopicPart, int], now: float, after_s: float) -> list[TopicPart]:
    """Pure: the partitions with records waiting whose committed offset has not moved for ``after_s``.

    ``seen`` (updated in place) holds, per partition, the committed offset last seen and since when.
    A partition without waiting records, or whose offset moved, starts again from ``now``.  A worker
    commits every few seconds while it has work (Faust's ``broker_commit_interval``, 2.8 s), so a
    partition that has waited minutes with nothing committed is not being processed: the "never read
    again" of docs/scaling.md, or an agent stuck on a call that never returns.
    """
    stalled = []
    for tp in list(seen):
        if tp not in lag:
            del seen[tp]  # no longer assigned here
    for tp, behind in lag.items():
        offset = committed.get(tp)
        last = seen.get(tp)
        if behind <= 0 or last is None or last[0] != offset:
            seen[tp] = (offset, now)
        elif now - last[1] > after_s:
            stalled.append(tp)
    return sorted(stalled)


class LagProbe:
    """Blocking measurement of a consumer group's lag (run it in an executor)."""

    def __init__(self, settings: Settings, group_id: str | None = None) -> None:
        self.settings = settings
        self.group_id = group_id or settings.faust_app_id
        self._admin: Any = None
        #: The committed offsets behind the last :meth:`measure` (the stall watch reads them).
        self.last_committed: dict[TopicPart, int | None] = {}

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
        self.last_committed = committed
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


def _consumer_state(app: Any, tps: Iterable[TopicPart]) -> dict[str, Any]:
    """Faust's view of ``tps`` (active / paused / buffered, offsets read and committed): for the log of a stall."""
    consumer = app.consumer
    out: dict[str, Any] = {"flow_active": getattr(consumer, "flow_active", None),
                           "app_flow_active": app.flow_control.is_active(),
                           "unacked": len(getattr(consumer, "_unacked_messages", ()))}
    for topic, partition in tps:
        found = [tp for tp in consumer.assignment() if (tp.topic, tp.partition) == (topic, partition)]
        if not found:
            continue
        tp = found[0]
        out[f"{topic}[{partition}]"] = {
            "active": tp in (consumer._active_partitions or ()), "paused": tp in consumer._paused_partitions,
            "buffered": tp in consumer._buffered_partitions, "read": consumer._read_offset.get(tp),
            "committed": consumer._committed_offset.get(tp), "acked": len(consumer._acked.get(tp, ())),
            "highwater": consumer.highwater(tp)}
    return out


def install(app: Any, settings: Settings) -> None:
    """Register ``/metrics``, ``/healthz`` and the lag timer on a Faust app (once)."""
    if getattr(app, "_gridhub_health_installed", False):
        return
    app._gridhub_health_installed = True
    app.sensors.add(WorkerSensor())
    probe = LagProbe(settings)
    state: dict[str, Any] = {"lag_total": None, "lag_measured_at": None, "lag_error": None,
                             "rebalancing_since": None}
    shown: set[TopicPart] = set()
    progress: dict[TopicPart, tuple[int | None, float]] = {}

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

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        # Readiness (deploy/k8s/hub.yaml): healthy AND holding partitions of the consumer group.
        health = health_status(crashed=bool(getattr(app, "crashed", False)),
                               stopping=bool(getattr(app, "should_stop", False)),
                               rebalancing_since=state["rebalancing_since"], now=time.monotonic(),
                               stall_after_s=settings.rebalance_stall_seconds)
        assigned = _assigned(app)
        status = ready_status(health, rebalancing=bool(getattr(app, "rebalancing", False)),
                              assigned=None if assigned is None else len(assigned))
        body = {"status": status, "assigned_partitions": None if assigned is None else len(assigned)}
        return web.json(body, status=200 if status == "ok" else 503)

    @app.timer(interval=REBALANCE_WATCH_S)
    async def watch_rebalance() -> None:
        """When the current rebalance began (monotonic seconds), for the ``stalled`` status; Faust's stream lag."""
        assigned = _assigned(app)
        if assigned is not None:
            FAUST_ASSIGNED_PARTITIONS.set(len(assigned))
        monitor = getattr(app, "monitor", None)
        if monitor is not None and monitor.tp_end_offsets is not None:
            lags = stream_lag(monitor.tp_read_offsets or {}, monitor.tp_end_offsets)
            mine = assigned or set()
            for topic, partition in list(state.setdefault("lag_shown", set())):
                if (topic, partition) not in lags or (topic, partition) not in mine:
                    try:
                        FAUST_STREAM_LAG.remove(topic, str(partition))
                    except KeyError:
                        pass
                    state["lag_shown"].discard((topic, partition))
            for (topic, partition), value in lags.items():
                if (topic, partition) in mine:
                    FAUST_STREAM_LAG.labels(topic, str(partition)).set(value)
                    state["lag_shown"].add((topic, partition))
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
        if getattr(app, "rebalancing", False):
            progress.clear()  # a rebalance moves partitions and offsets: watch afresh after it
            return
        stalled = stalled_partitions(progress, probe.last_committed, lag, time.monotonic(),
                                     settings.partition_stall_seconds)
        if stalled:
            from streams.app import exit_now  # late: streams.app builds the worker's app

            # Restarting is safe (nothing uncommitted is lost: it is read again) and frees the
            # partitions for a worker that reads them; staying would hold them unread for good.
            exit_now("partition_stalled", partitions=[f"{t}[{p}]" for t, p in stalled],
                     lag={f"{t}[{p}]": lag[(t, p)] for t, p in stalled},
                     seconds=settings.partition_stall_seconds, faust=_consumer_state(app, stalled),
                     hint="records waiting and nothing committed: the worker stops (exit 70) for a restart")

    del metrics, healthz, readyz, update_consumer_lag, watch_rebalance  # registered on the app; nothing else refers to them
    app._gridhub_lag_probe = probe
