"""Fusion (dedupe): reports in, cases out (DESIGN.md "Fusion"; docs/fusion.md).

``engine`` / ``rules`` (pure) do the work; ``agents`` wires them to Kafka.
Importing the package registers the agent and its table on
:data:`streams.app.app` (``gridhub run`` loads it through
``gridhub.runner.DOMAINS``), as the other stream domains do.
"""

from streams.fusion import agents as agents  # noqa: E402,F401  (registers the agent on the app)
from streams.fusion.agents import prepare_topics as prepare_topics  # noqa: E402,F401  (runner SERVICES hook)
