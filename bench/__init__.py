"""``gridhub bench``: throughput figures of the hub's stages (printed, never asserted)."""
