"""Creates routing's topics before the Faust app starts.

Why: Faust creates a table's changelog topic while the worker starts and
joins the consumer group a moment later.  On a loaded broker the group's
metadata may not list the new changelog yet; Faust then assigns the table no
changelog partitions ("Ignoring missing topic") and the first table write
fails with ``PartitionsMismatch`` ("changelog has 0 partitions"), losing that
event.  ``faust.Worker`` starts the services of ``gridhub run`` *before* the
app, so creating the topics here (as ``deploy/topics.yaml`` says) closes
that window.
"""

from __future__ import annotations

from typing import Any

from mode import Service

from gridhub.core import topics as T
from gridhub.core.logging import get_logger
from gridhub.core.settings import Settings

log = get_logger(__name__)


def routing_topics(settings: Settings) -> list[str]:
    """Every topic the routing agents read, write or keep their table in (contract or physical names)."""
    from streams.routing.agents import ROUTING_TIMERS, TABLE_NAME

    return [T.CASES, T.FEEDBACK, T.REPORTS_LINKED, ROUTING_TIMERS, T.CASE_EVENTS, T.CASE_LIFECYCLE, T.DLQ, T.DISPATCHES,
            "case-commands", "status.hotline-12345", "status.four-platforms", T.DEVICE_EVENTS,  # issue 15
            f"{settings.faust_app_id}-{TABLE_NAME}-changelog", f"{settings.faust_app_id}-routing-devices-changelog"]


class RoutingTopics(Service):
    """Runs ``ensure_topics`` for routing's topics once, at start-up, off the event loop."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings

    async def on_start(self) -> None:
        from gridhub.core.kafka_admin import ensure_topics_off_loop

        # On failure Faust still declares them itself; this only narrows a start-up race.
        await ensure_topics_off_loop(self.settings, routing_topics(self.settings),
                                     failure_event="routing_topics_not_ensured")


def create(app: Any, settings: Settings) -> RoutingTopics:
    """``gridhub run`` factory (selected by ``--only routing``)."""
    return RoutingTopics(settings)
