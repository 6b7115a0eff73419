"""The outbound partner client against partners on loopback: signing, deadlines, failures, the shared breaker."""
import time

import pytest
from prometheus_client import REGISTRY

from partner_fakes import FakePartner, closed_port_url
from wallet_market.domain.catalogue import Partner
from wallet_market.partners.client import PartnerClient
from wallet_market.store.breakers import redis_breaker_storage
from wallet_market.partners.prescreen import read_prescreen_answer
from wallet_market.store.keys import Keys
from tests.catalogue_builders import partner as partner_entry

SECRET = "alpha-signing-secret-0123456789"
PAYLOAD = {"request_id": "r-1", "product_id": "alpha_loan", "phone_sha256": "c" * 64}


@pytest.fixture
def fake():
    partner = FakePartner("alpha", SECRET)
    yield partner
    partner.close()


def _partner(fake, **over):
    return Partner.from_dict(partner_entry("alpha", **fake.partner_fields(**over)))


def _client(redis_client, key_prefix, fail_max=2, reset_seconds=2, secret=SECRET):
    return PartnerClient(
        lambda partner_id: secret if partner_id == "alpha" else None,
        redis_breaker_storage(redis_client, Keys(key_prefix)),
        fail_max=fail_max,
        reset_seconds=reset_seconds,
    )


def _count(outcome, purpose="prescreen"):
    value = REGISTRY.get_sample_value(
        "wallet_market_partner_requests_total", {"partner": "alpha", "purpose": purpose, "outcome": outcome}
    )
    return value or 0.0


def _prescreen(client, partner):
    return client.call(partner, "prescreen", "POST", partner.prescreen_url, payload=PAYLOAD, read=read_prescreen_answer)


def test_every_request_is_signed_with_the_partners_secret(fake, redis_client, key_prefix):
    client = _client(redis_client, key_prefix)
    partner = _partner(fake)
    result = _prescreen(client, partner)
    settlement = client.call(partner, "settlement", "GET", partner.settlement_url, params={"date": "2026-03-01"})
    assert result.ok and result.value.verdict == "new" and settlement.ok
    prescreen, pull = fake.received
    assert prescreen.signature_ok and prescreen.headers["X-Partner-Id"] == "alpha"
    assert prescreen.json() == PAYLOAD
    assert pull.signature_ok and pull.query == {"date": "2026-03-01"} and pull.body == b""
    client.close()


def test_a_cookie_set_by_the_partner_never_rides_along_on_another_request(fake, redis_client, key_prefix):
    client = _client(redis_client, key_prefix)
    for _ in range(2):
        assert _prescreen(client, _partner(fake)).ok
    assert [r.headers.get("Cookie") for r in fake.received] == [None, None]


def test_without_a_secret_nothing_is_sent(fake, redis_client, key_prefix):
    client = _client(redis_client, key_prefix, secret=None)
    result = _prescreen(client, _partner(fake))
    assert result.outcome == "no_secret" and not result.sent
    assert fake.received == []


@pytest.mark.parametrize(
    "mode, outcome, status",
    [("error", "http_error", 500), ("garbage", "bad_answer", 200), ("wrong_shape", "bad_answer", 200)],
)
def test_errors_and_garbage_become_outcomes_not_exceptions(fake, redis_client, key_prefix, mode, outcome, status):
    fake.mode = mode
    before = _count(outcome)
    result = _prescreen(_client(redis_client, key_prefix, fail_max=10), _partner(fake))
    assert (result.outcome, result.status, result.value) == (outcome, status, None)
    assert _count(outcome) == before + 1


@pytest.mark.parametrize("mode, delay", [("silent", 0.0), ("new", 2.0), ("trickle", 0.0)])
def test_a_partner_costs_at_most_its_deadline(fake, redis_client, key_prefix, mode, delay):
    # silent: never answers; new with a 2 s delay: answers too late; trickle: headers at once, then
    # one byte every 50 ms (a ~2.3 s body) — each must be cut at the partner's 300 ms.
    fake.mode, fake.delay_seconds = mode, delay
    client = _client(redis_client, key_prefix, fail_max=10)
    started = time.perf_counter()
    result = _prescreen(client, _partner(fake, timeout_ms=300))
    elapsed = time.perf_counter() - started
    assert result.outcome == "timeout"
    # It waited for the deadline, and gave up long before the partner would have answered (2 s and
    # more); the margin above 300 ms is for a loaded machine, not a speed target.
    assert 0.25 <= elapsed < 1.5


def test_an_unreachable_partner_is_reported_as_such(redis_client, key_prefix):
    client = _client(redis_client, key_prefix)
    unreachable = Partner.from_dict(partner_entry("alpha", prescreen_url=closed_port_url()))
    assert _prescreen(client, unreachable).outcome == "unreachable"


def _wait_until_due(client, seconds=4.0):
    deadline = time.monotonic() + seconds
    while client.breaker_open("alpha"):
        assert time.monotonic() < deadline, "the breaker never became due for a trial"
        time.sleep(0.05)


def test_the_breaker_opens_for_every_worker_and_closes_after_a_good_trial(fake, redis_client, key_prefix):
    worker_1 = _client(redis_client, key_prefix)
    worker_2 = _client(redis_client, key_prefix)  # another process: same Redis, its own objects
    partner = _partner(fake)
    fake.mode = "error"
    assert _prescreen(worker_1, partner).outcome == "http_error"
    assert _prescreen(worker_2, partner).outcome == "http_error"  # fail_max = 2 consecutive failures
    assert len(fake.received) == 2

    assert worker_1.breaker_state("alpha") == "open"
    for worker in (worker_1, worker_2):
        refused = _prescreen(worker, partner)
        assert refused.outcome == "breaker_open" and not refused.sent
    assert len(fake.received) == 2  # nothing more reached the partner
    assert REGISTRY.get_sample_value("wallet_market_partner_breaker_open", {"partner": "alpha"}) == 1

    # Still failing at the first trial: open again at once.
    _wait_until_due(worker_1)
    assert _prescreen(worker_1, partner).outcome == "http_error"
    assert _prescreen(worker_2, partner).outcome == "breaker_open"
    assert len(fake.received) == 3

    # The partner recovers: the next trial closes the breaker for everyone.
    fake.mode = "new"
    _wait_until_due(worker_2)
    assert _prescreen(worker_2, partner).ok
    assert worker_1.breaker_state("alpha") == "closed"
    assert _prescreen(worker_1, partner).ok
    assert len(fake.received) == 5
    worker_1.breaker_open("alpha")
    assert REGISTRY.get_sample_value("wallet_market_partner_breaker_open", {"partner": "alpha"}) == 0


def test_successes_in_between_keep_the_breaker_closed(fake, redis_client, key_prefix):
    client = _client(redis_client, key_prefix, fail_max=2)
    partner = _partner(fake)
    for mode in ("error", "new", "error", "new", "error"):
        fake.mode = mode
        _prescreen(client, partner)
    assert client.breaker_state("alpha") == "closed"  # never two failures in a row
    assert len(fake.received) == 5


def test_latency_is_observed_per_partner_and_outcome(fake, redis_client, key_prefix):
    labels = {"partner": "alpha", "purpose": "prescreen", "outcome": "ok"}
    before = REGISTRY.get_sample_value("wallet_market_partner_request_seconds_count", labels) or 0
    _prescreen(_client(redis_client, key_prefix), _partner(fake))
    assert REGISTRY.get_sample_value("wallet_market_partner_request_seconds_count", labels) == before + 1
