"""Keyed pseudonyms of randomisation units: how the analysis log and experiments name a user or a device.

A pseudonym is ``HMAC-SHA256(k, "u:" + user_id)`` (``"d:" + device_id`` for a
visitor's device), the first 12 bytes in hex behind a ``u``/``d`` mark, with
``k`` derived from the service's secret key. The same unit always gets the same
pseudonym, so outcomes join per unit; without the secret it cannot be traced
back to the id, and nothing that leaves Redis for analysis carries the id
itself.
"""
from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

_PURPOSE = b"wallet-market.unit-pseudonym"


class Pseudonyms:
    def __init__(self, secret: str):
        self._key = hmac.new(secret.encode("utf-8"), _PURPOSE, hashlib.sha256).digest()
        self.of_user = lru_cache(maxsize=65_536)(self._of_user)
        self.of_device = lru_cache(maxsize=65_536)(self._of_device)

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).digest()[:12].hex()

    def _of_user(self, user_id: str) -> str:
        return "u" + self._mac("u:" + user_id)

    def _of_device(self, device_id: str) -> str:
        return "d" + self._mac("d:" + device_id)

    def of(self, user_id: str | None, device_id: str | None) -> str | None:
        """The unit's pseudonym: the user's when logged in, else the device's; None for neither."""
        if user_id:
            return self.of_user(user_id)
        if device_id:
            return self.of_device(device_id)
        return None
