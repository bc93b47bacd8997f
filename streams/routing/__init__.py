"""Routing and the closed loop (DESIGN.md, "Routing and the closed loop").

Pure parts, unit-tested without Kafka: :mod:`.rules` (the YAML rules:
validation, matching, reload), :mod:`.lifecycle` (state transitions), and
:mod:`gridhub.agencies` (the agency catalog and delivery modes, shared with
``connectors.webhook``).  :mod:`.agents`
wires them to Faust; importing this package registers them on
``streams.app.app`` (``gridhub run`` lists it in ``DOMAINS``).
"""

from streams.routing import agents as agents  # noqa: F401  (registers the agents, table and timer)
