"""Readiness for the load balancer: a rule set is loaded and Redis answers."""
from __future__ import annotations

import time
from typing import Any

import redis

from ..store.connection import RedisClient
from ..store.snapshot import SnapshotHolder


class Health:
    def __init__(self, client: RedisClient, snapshots: SnapshotHolder):
        self.client = client
        self.snapshots = snapshots

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether this process is ready, and the body that says why."""
        snapshot = self.snapshots.current
        redis_ok = True
        try:
            self.client.ping()
        except (redis.RedisError, OSError):
            redis_ok = False
        body: dict[str, Any] = {
            "ruleset_version": snapshot.version if snapshot else None,
            "snapshot_age_seconds": round(time.time() - snapshot.loaded_at, 3) if snapshot else None,
            "redis": "ok" if redis_ok else "unreachable",
        }
        ready = snapshot is not None and redis_ok
        body["status"] = "ready" if ready else "not_ready"
        return ready, body
