"""Webhook signatures: HMAC-SHA256 over ``timestamp + "." + body``.

The scheme of Stripe and GitHub webhooks: signing the timestamp together
with the body lets a receiver reject replays of an old, validly signed
request (compare the timestamp with its clock), and a constant-time compare
keeps the secret safe from timing probes.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Gridhub-Signature"
TIMESTAMP_HEADER = "X-Gridhub-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: 5 minutes: a receiver's default tolerance for clock skew plus our retry spacing.
DEFAULT_TOLERANCE_S = 300


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, *, now: float | None = None,
           tolerance_s: int = DEFAULT_TOLERANCE_S) -> bool:
    """What a receiver does: a fresh timestamp and a matching signature."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature or "")
