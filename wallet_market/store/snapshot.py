"""The in-process snapshot of the served rule set, refreshed on publish.

Each serving process keeps the published rule set (and whatever is built from
it, such as the placement index) in memory. A background thread listens on the
publish channel and reloads within a moment of a publish; a slow poll covers
missed messages and reconnects. While Redis is unreachable the last snapshot
keeps serving.

The same thread is the process's one subscriber: other parts name a channel
and what to call on each of its messages (:attr:`SnapshotHolder.channels`),
such as the running experiments and the API-key cache listening for revoked
keys. What they name is also called after each (re)subscription and on each
slow poll, so a message missed while disconnected is caught up on.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

import redis
from redis.client import PubSub

from ..quiet_logs import RepeatLimiter
from .catalogue import CatalogueStore
from .connection import RedisClient
from .keys import Keys

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Snapshot(Generic[T]):
    version: int
    loaded_at: float
    record: dict[str, Any]
    built: T


class SnapshotHolder(Generic[T]):
    """Holds the current :class:`Snapshot`; ``build`` turns a rule-set body into what serving needs."""

    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        build: Callable[[dict[str, Any]], T],
        poll_seconds: float = 5.0,
    ):
        self.client = client
        self.keys = keys
        self.store = CatalogueStore(client, keys)
        self.build = build
        self.poll_seconds = poll_seconds
        self._current: Snapshot[T] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: PubSub | None = None
        self.last_error: str | None = None
        self.listeners: list[Callable[[Snapshot[T]], None]] = []
        self._quiet = RepeatLimiter(log)
        # Other channels the same listener follows (experiments, revoked keys): channel → what to call
        # on a message, also called on each fallback poll and after (re)subscribing.
        self.channels: dict[str, Callable[[], object]] = {}

    @property
    def current(self) -> Snapshot[T] | None:
        return self._current

    def refresh(self) -> bool:
        """Load the served version if it differs from ours; True when a new one was loaded."""
        with self._lock:
            try:
                version = self.store.current_version()
                if version == 0 or (self._current is not None and self._current.version == version):
                    self.last_error = None
                    return False
                record = self.store.load_version(version)
            except redis.RedisError as exc:
                self.last_error = str(exc)
                self._quiet.warning("snapshot refresh failed, keeping version %s: %s", self.version, exc)
                return False
            snapshot = Snapshot(version=version, loaded_at=time.time(), record=record, built=self.build(record))
            self._current = snapshot
            self.last_error = None
        log.info("serving rule-set version %s", version)
        for listener in self.listeners:
            listener(snapshot)
        return True

    def replace_built(self, built: T) -> None:
        """Swap what was built from the current rule set (e.g. after learned rates refresh)."""
        with self._lock:
            if self._current is not None:
                self._current = Snapshot(self._current.version, self._current.loaded_at, self._current.record, built)

    @property
    def version(self) -> int:
        return self._current.version if self._current else 0

    def start(self) -> None:
        """Start the background listener (once per process, after any fork)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="snapshot-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the listener; it notices within a second and closes its own connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
            self._thread = None

    def _run(self) -> None:
        next_poll = 0.0
        while not self._stop.is_set():
            try:
                if self._pubsub is None:
                    self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                    self._pubsub.subscribe(self.keys.published_channel(), *self.channels)
                    self.refresh()  # catch up on whatever was published while unsubscribed
                    self._notify(list(self.channels))
                message = self._pubsub.get_message(timeout=min(1.0, self.poll_seconds or 1.0))
                if message is not None and message.get("type") == "message":
                    self._dispatch(message)
                if self.poll_seconds and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.poll_seconds
                    self.refresh()
                    self._notify(list(self.channels))
            except Exception as exc:  # the listener must outlive any Redis failure
                self.last_error = str(exc)
                self._close_pubsub()
                self._stop.wait(0.5)
        self._close_pubsub()

    def _dispatch(self, message: dict[str, Any]) -> None:
        raw_channel = message.get("channel")
        channel = raw_channel.decode() if isinstance(raw_channel, bytes) else str(raw_channel)
        if channel in self.channels:
            self._notify([channel])
            return
        self.refresh()

    def _notify(self, channels: list[str]) -> None:
        for channel in channels:
            try:
                self.channels[channel]()
            except Exception:  # one follower's failure must not stop the listener
                log.exception("handling a message on %s failed", channel)

    def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:  # closing a broken connection must not raise
                pass
