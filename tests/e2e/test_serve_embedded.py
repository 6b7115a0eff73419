"""The embedded set-up can't be knocked over: the serve master owns the embedded Redis.

Real ``wallet-market serve`` processes in fresh directories (no Redis URL),
signalled by pid: a web worker that exits or is recycled leaves layouts and
readiness untouched, and ``kill -9`` of the master takes every descendant with
it — the embedded redis-server included — and leaves nothing in the way of a
restart in the same directory.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.processes import Served, children, command_line, descendants, identity, running, service_env, wait_until
from wallet_market.cli.serve import ORPHAN_GRACE_SECONDS

pytestmark = pytest.mark.e2e


LAYOUT_COUNT = re.compile(
    r'^wallet_market_request_seconds_count\{endpoint="/v1/layout",method="GET",status="200"\} ([0-9.e+]+)$', re.M
)


def layout(served: Served, key: str) -> requests.Response:
    answer = requests.get(
        f"{served.base}/v1/layout", params={"page": "home"}, headers={"Authorization": f"Bearer {key}"}, timeout=20
    )
    if answer.status_code == 200:
        served.layouts_served = getattr(served, "layouts_served", 0) + 1
    return answer


def layouts_in_metrics(served: Served) -> int:
    """The layouts ``/metrics`` counts: the samples of every worker, the exited ones included."""
    text = requests.get(f"{served.base}/metrics", timeout=20).text
    return int(sum(float(value) for value in LAYOUT_COUNT.findall(text)))


def answers_for(served: Served, key: str, seconds: float) -> list[tuple[int, int, str]]:
    """Layouts and readiness, asked in turn for ``seconds``: (layout status, readyz status, readyz status text)."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready = requests.get(f"{served.base}/readyz", timeout=20)
        seen.append((layout(served, key).status_code, ready.status_code, ready.json()["status"]))
    return seen


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_sigterm_to_a_web_worker_leaves_layouts_and_readiness_untouched(tmp_path, server):
    extra = ("--max-requests", "25") if server == "gunicorn" else ()
    served = Served(tmp_path, service_env(), "--server", server, "--workers", "2", *extra).start()
    try:
        key = served.keys["app"]
        assert layout(served, key).status_code == 200
        redis_server = [pid for pid in descendants(served.pid) if "redis-server" in command_line(pid)]
        assert len(redis_server) == 1  # the master's own child
        # /readyz answers as soon as one worker does: wait for the other too, so one can carry on alone
        assert wait_until(lambda: len(served.listening_workers()) == 2, 30), "a web worker never started listening"
        victim = served.web_workers()[0]
        os.kill(victim, signal.SIGTERM)
        assert wait_until(lambda: victim not in served.web_workers(), 15)

        seen = answers_for(served, key, 3.0)
        assert seen and all(answer == (200, 200, "ready") for answer in seen), seen
        assert wait_until(lambda: len(served.listening_workers()) == 2, 30), "the worker was not replaced"
        if server == "gunicorn":
            # gunicorn recycles each worker after about 25 requests: many recycles, never a failure
            before = set(served.web_workers())
            for _ in range(80):
                assert layout(served, key).status_code == 200
            assert set(served.web_workers()) != before
        assert all(answer == (200, 200, "ready") for answer in answers_for(served, key, 0.5))
        assert redis_server == [pid for pid in descendants(served.pid) if "redis-server" in command_line(pid)]
        # /metrics sums every worker's samples, those of the workers that exited too
        assert layouts_in_metrics(served) == served.layouts_served
    finally:
        code = served.stop()
    assert code == 0, served.log()
    assert "DB saved on disk" in (tmp_path / "var" / "wallet_market.db.log").read_text()


# A master that forks one web worker set up as serve sets them up; the worker prints its pid and serves
# on (sleeps). With IGNORE_SIGTERM it then ignores SIGTERM, as a graceful stop that never ends would.
MASTER_AND_WORKER = """
import os, signal, sys, time
from wallet_market.cli import serve
serve._master_pid = os.getpid()
if os.fork() == 0:
    serve.prepare_worker_process()
    if sys.argv[1] == "IGNORE_SIGTERM":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(os.getpid(), flush=True)
while True:
    time.sleep(1)
"""


def reaper_of(worker: tuple[int, str]) -> tuple[int, str]:
    """The worker's one child, once it has named itself the reaper."""

    def named() -> list[int]:
        found = []
        for pid in children(worker[0]):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "wm-reaper":
                    found.append(pid)
            except OSError:
                pass
        return found

    assert wait_until(lambda: len(named()) == 1, 5.0), [command_line(pid) for pid in children(worker[0])]
    (reaper,) = named()
    return identity(reaper)


@contextmanager
def master_with_a_worker(worker_mode: str):
    """The master of ``MASTER_AND_WORKER``, its worker and the worker's reaper; whatever is left is killed."""
    master = subprocess.Popen([sys.executable, "-c", MASTER_AND_WORKER, worker_mode], stdout=subprocess.PIPE, text=True)
    worker = reaper = None
    try:
        worker = identity(int(master.stdout.readline()))
        reaper = reaper_of(worker)
        yield master, worker, reaper
    finally:
        master.kill()
        master.wait()
        master.stdout.close()
        for process in (worker, reaper):
            if process is not None and running(process):
                os.kill(process[0], signal.SIGKILL)  # the test failed: leave nothing behind


def test_a_web_worker_whose_stop_hangs_is_ended_soon_after_its_master_is_killed():
    with master_with_a_worker("IGNORE_SIGTERM") as (master, worker, reaper):
        os.kill(master.pid, signal.SIGKILL)
        master.wait()
        assert running(worker)  # the kernel's SIGTERM was ignored: only the reaper can end it
        # The reaper notices within a moment and ends it after the grace; then it goes too.
        assert wait_until(lambda: not running(worker), ORPHAN_GRACE_SECONDS + 3.0)
        assert wait_until(lambda: not running(reaper), 2.0)


def test_a_web_worker_whose_master_lives_is_left_alone_by_its_reaper_which_goes_with_the_worker():
    with master_with_a_worker("SERVE") as (_master, worker, reaper):
        time.sleep(ORPHAN_GRACE_SECONDS + 1.5)  # longer than a reaper that acted wrongly would wait
        assert running(worker) and running(reaper)
        os.kill(worker[0], signal.SIGTERM)  # the worker ends, as a recycled or stopped one does
        assert wait_until(lambda: not running(worker), 5.0)
        assert wait_until(lambda: not running(reaper), 2.0)


# granian's server as serve builds it, with its signal handler installed as granian installs it in the
# master; then a fork that, like a web worker not yet set up, still runs that handler. Prints the
# child's pid, then how SIGTERM ended the child and what it did to the master.
FRESH_FORK = """
import os, signal, sys, time
from wallet_market.cli.serve import _granian_server
server = _granian_server()("wallet_market.app:create_app")
server.pid = os.getpid()
signal.signal(signal.SIGTERM, server.signal_handler_interrupt)
started, running = os.pipe()
child = os.fork()
if child == 0:
    os.write(running, b"x")  # past the fork: a signal now reaches Python's handlers
    while True:
        time.sleep(0.05)
os.read(started, 1)
print(child, flush=True)
os.kill(child, signal.SIGTERM)
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    done, status = os.waitpid(child, os.WNOHANG)
    if done:
        break
    time.sleep(0.05)
else:
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    status = None
print("killed by SIGTERM" if status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
      else f"survived ({status})")
print(server.interrupt_signal, server.main_loop_interrupt.is_set())
os.kill(os.getpid(), signal.SIGTERM)
print(server.interrupt_signal, server.main_loop_interrupt.is_set(), flush=True)
"""


def test_sigterm_to_a_granian_worker_not_yet_set_up_ends_it_and_leaves_the_master_serving():
    done = subprocess.run([sys.executable, "-c", FRESH_FORK], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    _child, ended, master_before, master_after = done.stdout.splitlines()
    assert ended == "killed by SIGTERM"
    assert master_before == "False False"  # the worker's stop asked nothing of the master
    assert master_after == "True True"  # while the master's own SIGTERM asks its serve loop to stop


def test_kill_9_of_serve_takes_every_descendant_and_serve_restarts_in_the_same_directory(tmp_path):
    first = Served(tmp_path, service_env(), "--workers", "2", name="first").start()
    key = first.keys["app"]
    assert layout(first, key).status_code == 200
    family = [identity(pid) for pid in descendants(first.pid)]
    names = " ".join(command_line(pid) for pid, _ in family)
    assert "redis-server" in names and "wallet_market worker" in names and len(family) >= 4

    os.kill(first.pid, signal.SIGKILL)
    first.process.wait()
    assert wait_until(lambda: not any(running(process) for process in family), 5.0), [
        command_line(pid) for pid, _ in family if running((pid, _))
    ]

    second = Served(tmp_path, service_env(), "--workers", "2", name="second").start()
    try:
        # the same store: nothing reloaded, no new keys printed, the first run's key still valid
        assert second.keys == {}
        assert layout(second, key).status_code == 200
        assert requests.get(f"{second.base}/readyz", timeout=5).json()["status"] == "ready"
        family = [identity(pid) for pid in descendants(second.pid)]
    finally:
        assert second.stop() == 0, second.log()
    # a graceful stop leaves nothing behind either
    assert not any(running(process) for process in family if process is not None)
