"""Device registry loader: CSV -> the compacted topic registry.devices."""
