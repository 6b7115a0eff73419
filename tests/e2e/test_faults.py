"""Faults under load, on real processes: the service runs on a redis-server of this module's own (a free
port, an append-only file so a restart loses nothing acknowledged), stopped and started by its pid.

- Redis away: layouts keep coming (degraded), also for an app key no worker has
  seen yet, whose tag proves it; a forged key is refused, and so is a revoked
  one, also by a worker started after the revocation; events get 503.
- Redis restarted under layout and event load: no layout fails, events refused
  meanwhile are accepted once it is back, and the ledger counts exactly what
  was acknowledged.
- The ledger worker SIGKILLed mid-stream: ``serve`` restarts it and the counts
  stay exact.
- A web worker SIGKILLed under load: only the requests it had in flight fail.
- Two ``serve`` instances on one Redis: a publish reaches both within a second,
  and their ledger workers share the stream without counting anything twice.
"""
from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta

import pytest
import redis
import requests

from tests.processes import SECRET, RedisServer, Served, service_env, wait_until
from wallet_market.services.access import KeyTags
from wallet_market.store.access import ApiKeyStore, key_hash
from wallet_market.store.keys import Keys
from wallet_market.services.tokens import UserTokens
from wallet_market.store.ledger import CONSUMER_GROUP, Ledger

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A durable redis-server, a key prefix of this module's own, and one served instance on them."""
    workdir = tmp_path_factory.mktemp("faults")
    server = RedisServer(workdir, durable=True).start()
    prefix = f"wmfault-{uuid.uuid4().hex[:8]}"
    env = service_env(redis_url=server.url, key_prefix=prefix)
    served = Served(workdir, env, "--workers", "2", name="a").start()
    client = redis.Redis.from_url(server.url)
    try:
        yield {"redis": server, "served": served, "env": env, "prefix": prefix, "client": client, "workdir": workdir}
    finally:
        served.stop()
        client.close()
        server.stop()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def ledger_impressions(served: Served, finance_key: str) -> int:
    today = date.today()
    answer = requests.get(
        f"{served.base}/finance/v1/revenue",
        params={"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()},
        headers=auth(finance_key), timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return sum(row["impressions"] for row in answer.json()["rows"])


def settled(stack) -> int:
    """The ledger's impression count once every entry in the stream has been applied."""
    ledger = Ledger(stack["client"], Keys(stack["prefix"]))
    assert wait_until(lambda: ledger.lag() == 0, 30, 0.1), "the ledger worker did not catch up"
    return ledger_impressions(stack["served"], stack["served"].keys["finance"])


@dataclass
class Load:
    """Clients asking for layouts and reporting each layout's impressions, for a bounded time."""

    targets: list[Served]
    key: str
    layouts: list[tuple[int, bool]] = field(default_factory=list)  # (status, degraded)
    failures: list[str] = field(default_factory=list)
    failure_times: list[float] = field(default_factory=list)  # time.monotonic() of each failed layout
    acknowledged: int = 0  # events answered 202 (accepted, or already recorded)
    sent: int = 0  # distinct events made
    refused: list[list[dict]] = field(default_factory=list)  # batches answered 503, to send again
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, index: int, stop: threading.Event, with_events: bool) -> None:
        session = requests.Session()
        target = self.targets[index % len(self.targets)]
        while not stop.is_set():
            try:
                answer = session.get(
                    f"{target.base}/v1/layout", params={"page": "home"}, headers=auth(self.key), timeout=20
                )
            except requests.RequestException as exc:
                with self.lock:
                    self.failures.append(f"layout: {exc!r}")
                    self.failure_times.append(time.monotonic())
                continue
            body = answer.json() if answer.status_code == 200 else {}
            with self.lock:
                self.layouts.append((answer.status_code, bool(body.get("degraded"))))
            if answer.status_code != 200 or not with_events:
                continue
            batch = [
                {"type": "impression", "impression_token": slot["impression_token"], "occurred_at": int(time.time())}
                for slot in body["slots"]
            ]
            with self.lock:
                self.sent += len(batch)
            self.report(session, target, batch)

    def report(self, session: requests.Session, target: Served, batch: list[dict]) -> bool:
        try:
            answer = session.post(f"{target.base}/v1/events", json={"events": batch}, headers=auth(self.key), timeout=20)
        except requests.RequestException as exc:
            with self.lock:
                self.refused.append(batch)
                self.failures.append(f"events: {exc!r}")
            return False
        with self.lock:
            if answer.status_code == 202:
                counts = answer.json()
                assert counts["rejected"] == 0, counts
                self.acknowledged += counts["accepted"] + counts["duplicate"]
                return True
            if answer.status_code == 503:
                self.refused.append(batch)
            else:
                self.failures.append(f"events: {answer.status_code} {answer.text[:200]}")
        return False

    def run(self, clients: int, seconds: float, during=None, with_events: bool = True) -> None:
        """``clients`` threads for ``seconds``; ``during(elapsed)`` is called from this thread meanwhile."""
        stop = threading.Event()
        threads = [threading.Thread(target=self.client, args=(i, stop, with_events)) for i in range(clients)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        try:
            while time.monotonic() - started < seconds:
                if during is not None:
                    during(time.monotonic() - started)
                time.sleep(0.05)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)

    def resend_refused(self, timeout: float = 30) -> None:
        """The app's retry: every batch refused with 503 is sent again until it is acknowledged."""
        session = requests.Session()
        deadline = time.monotonic() + timeout
        while self.refused and time.monotonic() < deadline:
            batch = self.refused.pop(0)
            if not self.report(session, self.targets[0], batch):
                time.sleep(0.1)
        assert not self.refused, f"{len(self.refused)} batches still refused"


def test_an_uncached_app_key_gets_degraded_layouts_while_redis_is_away_and_a_forged_one_is_refused(stack):
    served, client = stack["served"], stack["client"]
    store = ApiKeyStore(client, Keys(stack["prefix"]), sign=KeyTags(SECRET).sign)
    fresh_app, fresh_pm = store.create("app", name="fresh"), store.create("pm", name="fresh")
    body, tag = fresh_app.rsplit("_", 1)
    forged = f"{body}_{'0' if tag[0] != '0' else '1'}{tag[1:]}"
    legacy = ApiKeyStore(client, Keys(stack["prefix"])).create("app", name="made before tags")
    revoked = store.create("app", name="revoked")
    assert store.revoke(key_hash(revoked)[:12]) is not None  # kept in Redis and announced to every process
    # A worker started after the revocation never hears the announcement: it reads the revoked ids before it listens.
    assert wait_until(lambda: len(served.listening_workers()) == 2, 30), "a web worker never started listening"
    replaced = served.web_workers()[0]
    os.kill(replaced, signal.SIGKILL)
    assert wait_until(
        lambda: replaced not in served.web_workers() and len(served.listening_workers()) == 2, 30
    ), "the killed web worker was not replaced"
    assert requests.get(f"{served.base}/v1/layout", params={"page": "home"}, headers=auth(legacy), timeout=10).status_code == 200
    user_token = UserTokens(SECRET, 600).mint("u-away", 600)

    stack["redis"].stop()
    try:
        for _ in range(6):  # both workers, neither of which has seen the fresh keys
            visitor = requests.get(f"{served.base}/v1/layout", params={"page": "home"}, headers=auth(fresh_app), timeout=10)
            assert visitor.status_code == 200, visitor.text
            assert visitor.json()["degraded"] is True and visitor.json()["slots"]
        logged_in = requests.get(
            f"{served.base}/v1/layout", params={"page": "home"},
            headers={**auth(fresh_app), "X-User-Token": user_token}, timeout=10,
        )
        assert logged_in.status_code == 200 and logged_in.json()["personalized"] is False
        assert requests.get(f"{served.base}/v1/layout", params={"page": "home"}, headers=auth(forged), timeout=10).status_code == 401
        for _ in range(8):  # a tag that verifies, of a key every worker knows revoked (the new one too)
            assert requests.get(
                f"{served.base}/v1/layout", params={"page": "home"}, headers=auth(revoked), timeout=10
            ).status_code == 401
        unknown_untagged = "wm_app_" + "x" * 32
        assert requests.get(
            f"{served.base}/v1/layout", params={"page": "home"}, headers=auth(unknown_untagged), timeout=10
        ).status_code == 503
        # a tag alone opens layouts and nothing else
        assert requests.get(f"{served.base}/admin/v1/products", headers=auth(fresh_pm), timeout=10).status_code == 503
        event = {"type": "impression", "impression_token": visitor.json()["slots"][0]["impression_token"]}
        assert requests.post(
            f"{served.base}/v1/events", json={"events": [event]}, headers=auth(fresh_app), timeout=10
        ).status_code == 503
        ready = requests.get(f"{served.base}/readyz", timeout=10).json()
        assert ready["redis"] == "unreachable"
    finally:
        stack["redis"].start()

    def fresh_again() -> bool:
        answer = requests.get(f"{served.base}/v1/layout", params={"page": "home"}, headers=auth(fresh_app), timeout=10)
        return answer.status_code == 200 and answer.json()["degraded"] is False

    assert wait_until(fresh_again, 15, 0.1)
    assert requests.get(f"{served.base}/admin/v1/products", headers=auth(fresh_pm), timeout=10).status_code == 200


def test_redis_restarted_under_layout_and_event_load_loses_no_acknowledged_event(stack):
    served = stack["served"]
    before = settled(stack)
    load = Load([served], served.keys["app"])
    phases = {"stopped": False, "started": False}

    def restart(elapsed: float) -> None:
        if elapsed > 1.5 and not phases["stopped"]:
            phases["stopped"] = True
            stack["redis"].stop()
        elif elapsed > 4.0 and not phases["started"]:
            phases["started"] = True
            stack["redis"].start()

    load.run(clients=3, seconds=7.0, during=restart)
    refused_during_outage = len(load.refused)
    load.resend_refused()

    statuses = {status for status, _ in load.layouts}
    assert statuses == {200}, f"layouts answered {statuses}; failures: {load.failures[:5]}"
    assert not load.failures, load.failures[:5]
    assert any(degraded for _, degraded in load.layouts), "no layout was served while Redis was away"
    assert not load.layouts[-1][1], "layouts still degraded after Redis came back"
    assert refused_during_outage > 0, "no event batch was refused while Redis was away"
    assert load.acknowledged == load.sent > 0
    assert settled(stack) - before == load.acknowledged
    print(f"\nredis restart: {len(load.layouts)} layouts ({sum(d for _, d in load.layouts)} degraded, 0 failed); "
          f"{load.sent} events, {refused_during_outage} batches refused with 503 and sent again; ledger +{load.acknowledged}")


def test_the_ledger_worker_killed_mid_stream_is_restarted_and_counts_stay_exact(stack):
    served = stack["served"]
    before = settled(stack)
    [worker] = served.ledger_workers()
    ledger = Ledger(stack["client"], Keys(stack["prefix"]))
    backlog: list[int] = []

    def kill(elapsed: float) -> None:
        # paused while events pile up, let go, and killed in the middle of working through them
        if elapsed > 0.3 and not backlog:
            backlog.append(0)
            os.kill(worker, signal.SIGSTOP)
        elif elapsed > 2.0 and len(backlog) == 1:
            backlog[0] = ledger.lag()
            os.kill(worker, signal.SIGCONT)
            time.sleep(0.01)
            os.kill(worker, signal.SIGKILL)
            backlog.append(ledger.lag())

    load = Load([served], served.keys["app"])
    load.run(clients=3, seconds=3.0, during=kill)
    load.resend_refused()
    assert len(backlog) == 2 and backlog[0] > 0, backlog
    assert not load.failures, load.failures[:5]
    assert wait_until(lambda: served.ledger_workers() not in ([], [worker]), 15), "the ledger worker was not restarted"
    assert settled(stack) - before == load.acknowledged == load.sent > 0
    print(f"\nledger worker SIGKILLed with {backlog[0]} entries waiting ({backlog[1]} still unapplied after the kill); "
          f"{load.sent} events, ledger +{load.acknowledged}")


def test_a_web_worker_killed_under_load_fails_only_the_requests_it_had_in_flight(stack):
    served = stack["served"]
    clients = 4
    victims: list[int] = []

    killed_at: list[float] = []

    def kill(elapsed: float) -> None:
        if not victims and elapsed > 1.0:
            victims.append(served.web_workers()[0])
            killed_at.append(time.monotonic())
            os.kill(victims[0], signal.SIGKILL)

    # the other worker must be taking connections already, to carry the load alone
    assert wait_until(lambda: len(served.listening_workers()) == 2, 30), "a web worker never started listening"
    load = Load([served], served.keys["app"])
    load.run(clients=clients, seconds=4.0, during=kill, with_events=False)
    failed = len(load.failures) + sum(status != 200 for status, _ in load.layouts)
    # only what the dying worker held fails: connections reset as it dies, nothing before, nothing after
    assert victims and failed == len(load.failures) <= 2 * clients, (failed, load.failures[:5])
    assert all(0 <= at - killed_at[0] < 1.0 for at in load.failure_times), [t - killed_at[0] for t in load.failure_times]
    assert wait_until(lambda: len(served.listening_workers()) == 2 and victims[0] not in served.web_workers(), 30)
    after = Load([served], served.keys["app"])
    after.run(clients=2, seconds=1.0, with_events=False)
    assert not after.failures and {status for status, _ in after.layouts} == {200}
    print(f"\nweb worker SIGKILLed under {clients} clients: {len(load.layouts)} layouts, {failed} failed")


def test_killing_the_same_web_worker_again_and_again_never_stops_serve(stack):
    served = stack["served"]
    for _ in range(3):  # the newest worker each time, as soon as it is there
        workers = served.web_workers()
        assert len(workers) == 2
        os.kill(max(workers), signal.SIGKILL)
        assert wait_until(lambda: max(workers) not in served.web_workers() and len(served.web_workers()) == 2, 15)
    assert served.process.poll() is None
    after = Load([served], served.keys["app"])
    after.run(clients=2, seconds=1.0, with_events=False)
    assert not after.failures and {status for status, _ in after.layouts} == {200}


def test_two_instances_on_one_redis_share_publishes_within_a_second_and_the_stream_exactly(stack):
    first = stack["served"]
    workdir = stack["workdir"] / "second"
    workdir.mkdir()
    second = Served(workdir, stack["env"], "--workers", "2", name="b").start()
    try:
        keys = first.keys
        # a draft equal to the served version publishes nothing: change something first
        changed = requests.patch(
            f"{first.base}/admin/v1/pages/home", json={"title": f"Home {time.time_ns()}"}, headers=auth(keys["pm"]),
            timeout=10,
        )
        assert changed.status_code == 200, changed.text
        published = requests.post(
            f"{first.base}/admin/v1/rulesets/publish", json={"note": "two instances"}, headers=auth(keys["pm"]), timeout=10
        )
        assert published.status_code == 201, published.text
        version = published.json()["version"]
        started = time.monotonic()

        def serves_new(instance: Served) -> bool:
            answers = [
                requests.get(f"{instance.base}/v1/layout", params={"page": "home"}, headers=auth(keys["app"]), timeout=5)
                for _ in range(4)
            ]
            return all(a.json()["ruleset_version"] == version for a in answers)

        assert wait_until(lambda: serves_new(first) and serves_new(second), 1.0, 0.02), "a publish took over a second"
        reached = time.monotonic() - started
        for instance in (first, second):  # every worker of each, not just the first to answer
            assert all(serves_new(instance) for _ in range(5))

        before = settled(stack)
        load = Load([first, second], keys["app"])
        load.run(clients=4, seconds=3.0)
        load.resend_refused()
        assert not load.failures, load.failures[:5]
        assert settled(stack) - before == load.acknowledged == load.sent > 0
        consumers = {
            (c["name"].decode() if isinstance(c["name"], bytes) else c["name"])
            for c in stack["client"].xinfo_consumers(Keys(stack["prefix"]).event_stream(), CONSUMER_GROUP)
        }
        assert any(name.endswith(f"-serve-{first.port}") for name in consumers)
        assert any(name.endswith(f"-serve-{second.port}") for name in consumers)
        print(f"\ntwo instances: publish served by both in {reached * 1000:.0f} ms; {load.sent} events through both, "
              f"ledger +{load.acknowledged}")
    finally:
        assert second.stop() == 0, second.log()
