"""Fusion (dedupe): reports in, cases out. See docs/fusion.md."""
