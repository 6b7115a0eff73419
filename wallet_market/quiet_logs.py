"""Repeated warnings, rate-limited: one line per interval, with a count of those left out.

During a Redis outage every request, every worker loop and every background
refresh meets the same failure. Logging each one drowns the log (and the disk)
in copies of one line. Here the first is written, the repeats are left out for
``interval_seconds``, and the next line written says how many were left out.
Messages are told apart by their level and format string (or an explicit
``key``), so different failures are each reported.

- :class:`RepeatLimiter` logs through a logger of ours;
- :class:`RepeatFilter` does the same to a library's logger it is added to.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Hashable

DEFAULT_INTERVAL_SECONDS = 30.0
LEFT_OUT = " [%d more like this left out since the last one logged]"


class _Gate:
    """Admits each kind of message at most once per interval, counting those it turns away."""

    def __init__(self, interval_seconds: float, clock: Callable[[], float]):
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._next_at: dict[Hashable, float] = {}
        self._left_out: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def admit(self, kind: Hashable) -> int | None:
        """None to leave this one out; else how many of its kind were left out before it."""
        with self._lock:
            now = self.clock()
            if now < self._next_at.get(kind, float("-inf")):
                self._left_out[kind] = self._left_out.get(kind, 0) + 1
                return None
            if len(self._next_at) > 1000:  # kinds are few; never let stale ones pile up
                self._next_at = {k: t for k, t in self._next_at.items() if t > now}
            self._next_at[kind] = now + self.interval_seconds
            return self._left_out.pop(kind, 0)


class RepeatLimiter:
    """Logs through ``logger``, each kind of message at most once per ``interval_seconds``."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.logger = logger
        self._gate = _Gate(interval_seconds, clock)

    def log(self, level: int, msg: str, *args: Any, key: Hashable = None, exc_info: Any = None) -> bool:
        """Log ``msg % args`` unless its kind was logged within the interval; True when written."""
        if not self.logger.isEnabledFor(level):
            return False
        left_out = self._gate.admit((level, msg) if key is None else key)
        if left_out is None:
            return False
        if left_out:
            msg, args = msg + LEFT_OUT, (*args, left_out)
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def info(self, msg: str, *args: Any, key: Hashable = None) -> bool:
        return self.log(logging.INFO, msg, *args, key=key)

    def warning(self, msg: str, *args: Any, key: Hashable = None) -> bool:
        return self.log(logging.WARNING, msg, *args, key=key)

    def error(self, msg: str, *args: Any, key: Hashable = None) -> bool:
        return self.log(logging.ERROR, msg, *args, key=key)

    def exception(self, msg: str, *args: Any, key: Hashable = None) -> bool:
        """An error with the traceback of the exception being handled."""
        return self.log(logging.ERROR, msg, *args, key=key, exc_info=True)


class RepeatFilter(logging.Filter):
    """A filter for a logger we do not write to ourselves (a library's): the same limit per kind of record."""

    def __init__(self, interval_seconds: float = DEFAULT_INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._gate = _Gate(interval_seconds, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        left_out = self._gate.admit((record.name, record.levelno, str(record.msg)))
        if left_out is None:
            return False
        if left_out:
            record.msg = f"{record.msg}{LEFT_OUT % left_out}"
        return True


def quiet_library_logger(name: str, interval_seconds: float = DEFAULT_INTERVAL_SECONDS) -> None:
    """Rate-limit the records of the library logger ``name`` (once per process)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter(interval_seconds))
