"""Simulated feeds of the three sources, with ground truth (``gridhub simulate``).

:func:`generate` is a pure iterator (no Kafka, no files) so the fusion
evaluation and the benchmarks can replay exactly the traffic the command
produces.
"""

from gridhub.simulate.generator import DEFAULT_START_MS, SimRecord, devices_for, generate

__all__ = ["DEFAULT_START_MS", "SimRecord", "devices_for", "generate"]
