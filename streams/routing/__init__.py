"""Routing and the closed loop (DESIGN.md, "Routing and the closed loop").

Pure parts, unit-tested without Kafka: :mod:`.rules` (the YAML rules:
validation, matching, reload), :mod:`.lifecycle` (state transitions), and
:mod:`gridhub.core.agencies` (the agency catalog and delivery modes, shared with
``connectors.webhook``).  :mod:`.agents`
wires them to Faust; the package imports nothing (``gridhub run`` imports
``agents``, which registers them on ``streams.app.app``).
"""
