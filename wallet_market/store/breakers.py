"""Partner circuit-breaker state in Redis, shared by every worker of every instance."""
from __future__ import annotations

from typing import Callable

import pybreaker

from .connection import RedisClient
from .keys import Keys

BreakerStorageFactory = Callable[[str], pybreaker.CircuitBreakerStorage]


def redis_breaker_storage(client: RedisClient, keys: Keys) -> BreakerStorageFactory:
    """Breaker state in Redis under ``keys.partner_breaker(partner)``.

    ``client`` must return bytes (pybreaker decodes the state itself), which is
    how the service's clients are built. While Redis is unreachable pybreaker
    treats the breaker as closed: partner calls still have their own deadline.
    """

    def storage(partner_id: str) -> pybreaker.CircuitBreakerStorage:
        # pybreaker annotates a single-node client; the cluster client serves the same commands it sends.
        return pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, client, namespace=keys.partner_breaker(partner_id)  # type: ignore[arg-type]
        )

    return storage
