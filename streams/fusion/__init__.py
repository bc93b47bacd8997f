"""Fusion (dedupe): reports in, cases out (DESIGN.md "Fusion"; docs/fusion.md).

``engine`` / ``rules`` (pure) do the work; ``agents`` wires them to Kafka. The package imports
nothing: ``gridhub run`` imports ``agents``, which registers the agent and its table on
:data:`streams.app.app` (``gridhub.runner.DOMAINS``).
"""
