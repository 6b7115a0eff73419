"""A task a serving process repeats in a daemon thread (decision log flushes, learned-rate refreshes)."""
from __future__ import annotations

import logging
import threading

import redis

from ..quiet_logs import RepeatLimiter

log = logging.getLogger(__name__)


class Periodic:
    """Runs :meth:`tick` every ``interval_seconds`` until stopped; a failed tick is logged, never fatal."""

    name = "periodic"

    def __init__(self, interval_seconds: float):
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._quiet = RepeatLimiter(log)

    def tick(self) -> object:
        raise NotImplementedError

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self.tick()
            except redis.RedisError as exc:
                self._quiet.warning("%s: Redis unavailable, trying again later: %s", self.name, exc)
            except Exception:  # the thread must outlive any one bad tick
                log.exception("%s failed", self.name)
