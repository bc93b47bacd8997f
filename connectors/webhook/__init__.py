"""Webhook delivery of dispatches (signed HTTP POST, retries, dead letter); see :mod:`.service`."""
