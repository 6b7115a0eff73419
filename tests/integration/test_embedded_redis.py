"""The embedded Redis: one owner runs it; joiners and forked children only connect; it dies with its owner."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.processes import ROOT, identity, running, wait_until
from wallet_market.store.connection import EmbeddedRedis

OWNER = (
    "import sys, time\n"
    "from wallet_market.store.connection import EmbeddedRedis\n"
    "embedded = EmbeddedRedis(sys.argv[1])\n"
    "print(embedded.pid, embedded.socket_file, flush=True)\n"
    "time.sleep(120)\n"
)


def answers(socket_file: str) -> bool:
    client = redis.Redis(unix_socket_path=socket_file, socket_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def test_a_joiner_and_a_forked_child_never_stop_the_owners_server(tmp_path):
    owner = EmbeddedRedis(tmp_path / "shared.db")
    try:
        assert owner.owner and owner.pid is not None and answers(owner.socket_file)
        joiner = EmbeddedRedis(tmp_path / "shared.db")
        assert not joiner.owner and joiner.socket_file == owner.socket_file
        joiner.close()
        assert answers(owner.socket_file)

        child = os.fork()
        if child == 0:  # a web worker forked from the owner, leaving the way gunicorn's workers leave
            try:
                owner.close()
            finally:
                os._exit(0)
        assert os.waitpid(child, 0)[1] == 0
        assert answers(owner.socket_file)
    finally:
        owner.close()
    assert not answers(owner.socket_file)
    assert (tmp_path / "shared.db").exists()  # saved on the way out


def test_the_server_dies_with_its_owner_and_the_next_owner_starts_at_once_with_the_data(tmp_path):
    data_file = tmp_path / "var" / "wallet_market.db"
    process = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(data_file)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        server_pid, socket_file = process.stdout.readline().split()
        server = identity(int(server_pid))
        joined = EmbeddedRedis(data_file)
        assert not joined.owner and joined.socket_file == socket_file
        client = redis.Redis.from_url(joined.url)
        client.set("wmtest-embedded:kept", "yes")
        client.close()
        joined.close()
        assert answers(socket_file)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert wait_until(lambda: not running(server), 5.0), "the embedded Redis outlived its owner"

    successor = EmbeddedRedis(data_file)
    try:
        assert successor.owner
        client = redis.Redis.from_url(successor.url)
        assert client.get("wmtest-embedded:kept") == b"yes"  # saved as the server went down with its owner
        client.delete("wmtest-embedded:kept")
        client.close()
    finally:
        successor.close()
