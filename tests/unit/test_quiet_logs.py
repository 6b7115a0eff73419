"""Repeated warnings are written once per interval, the next line telling how many were left out."""
import logging

from wallet_market.quiet_logs import RepeatLimiter


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def lines(caplog):
    return [record.getMessage() for record in caplog.records]


def test_a_storm_of_one_warning_is_one_line_per_interval_with_a_count(caplog):
    clock = FakeClock()
    quiet = RepeatLimiter(logging.getLogger("storm"), interval_seconds=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="storm"):
        for i in range(8_764):  # an outage: the same failure 8,764 times in 15 s
            clock.now = 1000.0 + i * 15 / 8_764
            quiet.warning("Redis unavailable: %s", "Connection refused")
    # one line at the start; the next 10 s later (call 5,843, the first at or after 1010 s) tells of the 5,842 between
    assert lines(caplog) == [
        "Redis unavailable: Connection refused",
        "Redis unavailable: Connection refused [5842 more like this left out since the last one logged]",
    ]


def test_the_count_is_exact_and_the_next_interval_starts_again(caplog):
    clock = FakeClock()
    quiet = RepeatLimiter(logging.getLogger("exact"), interval_seconds=30, clock=clock)
    with caplog.at_level(logging.WARNING, logger="exact"):
        assert quiet.warning("down: %s", "x") is True
        for _ in range(5):
            clock.now += 1
            assert quiet.warning("down: %s", "y") is False
        clock.now = 1030.0  # the interval has passed
        assert quiet.warning("down: %s", "z") is True
        assert quiet.warning("down: %s", "z") is False
        clock.now = 1061.0
        assert quiet.warning("down: %s", "w") is True
    assert lines(caplog) == [
        "down: x",
        "down: z [5 more like this left out since the last one logged]",
        "down: w [1 more like this left out since the last one logged]",
    ]


def test_different_messages_and_levels_are_limited_apart(caplog):
    clock = FakeClock()
    quiet = RepeatLimiter(logging.getLogger("apart"), interval_seconds=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="apart"):
        quiet.warning("snapshot refresh failed: %s", "a")
        quiet.warning("partner %s unreachable", "p1")
        quiet.error("snapshot refresh failed: %s", "a")
        quiet.warning("partner %s unreachable", "p2")
        quiet.warning("one %s", "k1", key="shared")
        quiet.warning("two %s", "k2", key="shared")
    assert lines(caplog) == ["snapshot refresh failed: a", "partner p1 unreachable", "snapshot refresh failed: a", "one k1"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING, logging.ERROR, logging.WARNING]


def test_exception_keeps_the_traceback(caplog):
    quiet = RepeatLimiter(logging.getLogger("trace"), clock=FakeClock())
    with caplog.at_level(logging.ERROR, logger="trace"):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            quiet.exception("batch failed")
    (record,) = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


def test_a_librarys_logger_is_limited_by_a_filter(caplog):
    from wallet_market.quiet_logs import RepeatFilter

    clock = FakeClock()
    library = logging.getLogger("some.library")
    gate = RepeatFilter(interval_seconds=5, clock=clock)
    library.addFilter(gate)
    try:
        with caplog.at_level(logging.WARNING, logger="some.library"):
            for _ in range(100):
                library.error("RedisError")
                clock.now += 0.01
            clock.now += 5
            library.error("RedisError")
            library.warning("another %s", "thing")
    finally:
        library.removeFilter(gate)
    assert lines(caplog) == [
        "RedisError",
        "RedisError [99 more like this left out since the last one logged]",
        "another thing",
    ]
