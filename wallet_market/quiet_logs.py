"""Repeated warnings, rate-limited: one line per interval, with a count of those left out.

During a Redis outage every request, every worker loop and every background
refresh meets the same failure. Logging each one drowns the log (and the disk)
in copies of one line; :class:`RepeatLimiter` writes the first, leaves out the
repeats for ``interval_seconds`` and says how many it left out on the next line
it writes. Messages are told apart by their format string (or an explicit
``key``), so different failures are each reported.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

DEFAULT_INTERVAL_SECONDS = 30.0


class RepeatLimiter:
    """Logs through ``logger``, each kind of message at most once per ``interval_seconds``."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.logger = logger
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._next_at: dict[Any, float] = {}
        self._left_out: dict[Any, int] = {}
        self._lock = threading.Lock()

    def log(self, level: int, msg: str, *args: Any, key: Any = None, exc_info: Any = None) -> bool:
        """Log ``msg % args`` unless the same kind was logged within the interval; True when written."""
        kind = (level, msg) if key is None else key
        with self._lock:
            now = self.clock()
            if now < self._next_at.get(kind, float("-inf")):
                self._left_out[kind] = self._left_out.get(kind, 0) + 1
                return False
            self._next_at[kind] = now + self.interval_seconds
            left_out = self._left_out.pop(kind, 0)
            if len(self._next_at) > 1000:  # kinds are few; never let stale ones pile up
                self._next_at = {k: t for k, t in self._next_at.items() if t > now or k == kind}
        if left_out:
            msg = f"{msg} [%d more like this left out since the last one logged]"
            args = (*args, left_out)
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def warning(self, msg: str, *args: Any, key: Any = None) -> bool:
        return self.log(logging.WARNING, msg, *args, key=key)

    def error(self, msg: str, *args: Any, key: Any = None) -> bool:
        return self.log(logging.ERROR, msg, *args, key=key)

    def exception(self, msg: str, *args: Any, key: Any = None) -> bool:
        """An error with the traceback of the exception being handled."""
        return self.log(logging.ERROR, msg, *args, key=key, exc_info=True)
