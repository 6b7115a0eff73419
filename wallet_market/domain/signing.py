"""The HMAC scheme shared by partner postbacks, joint-login exchanges and our outbound calls.

Headers ``X-Partner-Id``, ``X-Timestamp`` (epoch seconds) and ``X-Signature``:
hex HMAC-SHA256 of ``timestamp + "." + body`` with the partner's signing secret
(docs/api.md). A request outside the replay window is refused.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Mapping

PARTNER_HEADER = "X-Partner-Id"
TIMESTAMP_HEADER = "X-Timestamp"
SIGNATURE_HEADER = "X-Signature"


class SignatureError(ValueError):
    """Why a signed request was refused: ``missing_headers``, ``stale_timestamp``, ``bad_signature``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``timestamp + "." + body``."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(partner_id: str, secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The three headers of a request signed for ``partner_id``."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        PARTNER_HEADER: partner_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


@dataclass(frozen=True, slots=True)
class SignedRequest:
    partner_id: str
    timestamp: int


def read_headers(headers: Mapping[str, str]) -> tuple[str, str, str]:
    """``(partner_id, timestamp, signature)`` from request headers; ``missing_headers`` otherwise."""
    partner_id = headers.get(PARTNER_HEADER) or ""
    timestamp = headers.get(TIMESTAMP_HEADER) or ""
    sig = headers.get(SIGNATURE_HEADER) or ""
    if not partner_id or not timestamp or not sig:
        raise SignatureError("missing_headers")
    return partner_id, timestamp, sig


def verify(
    secret: str, timestamp: str, sig: str, body: bytes, window_seconds: int, now: float | None = None
) -> int:
    """Check signature and freshness; returns the timestamp. Constant-time comparison.

    A signature or timestamp with characters outside ASCII is refused like any
    other wrong one (``compare_digest`` compares only ASCII strings).
    """
    if not timestamp.isascii():
        raise SignatureError("bad_timestamp")
    try:
        ts = int(timestamp)
    except ValueError:
        raise SignatureError("bad_timestamp") from None
    if not sig.isascii():
        raise SignatureError("bad_signature")
    expected = signature(secret, timestamp, body)
    if not hmac.compare_digest(expected, sig.lower()):
        raise SignatureError("bad_signature")
    current = time.time() if now is None else now
    if abs(current - ts) > window_seconds:
        raise SignatureError("stale_timestamp")
    return ts
