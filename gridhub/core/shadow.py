"""Shadow namespaces: a replayed copy of production that must not touch the outside world.

A namespace fed by ``gridhub replay --namespace NS`` recomputes fusion and
routing beside production so that ``gridhub replay diff`` can compare them.
Its worker must never act on real people or systems: no webhook deliveries
to agencies, no subscription to the live MQTT feed (it would ingest live
alarms into the shadow), and no replies on the source systems' status
topics (``status.hotline-12345`` / ``status.four-platforms``).

A worker is a shadow when ``GRIDHUB_SHADOW`` is set to a true value; the
replay command prints the exact command line with it.  The check is one
function so every connector asks the same question.
"""

from __future__ import annotations

import os
from typing import Mapping

ENV = "GRIDHUB_SHADOW"
_TRUE = {"1", "true", "yes", "on"}


def is_shadow(env: Mapping[str, str] | None = None) -> bool:
    """True in a shadow worker (``GRIDHUB_SHADOW=1``): outbound side effects are off."""
    source = os.environ if env is None else env
    return source.get(ENV, "").strip().lower() in _TRUE
