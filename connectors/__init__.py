"""Connectors: how documents get into and out of the hub (see ``base.py``)."""
