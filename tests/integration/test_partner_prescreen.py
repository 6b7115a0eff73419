"""Pre-screens against partners on loopback: background asks, cache, consent, the data-share log (guards 5, 6, 8)."""
import logging
import time
from concurrent.futures import wait
from datetime import datetime

import pytest

from partner_fakes import FakePartner, phone_hash
from wallet_market.domain.placement import PlacementPolicy, UserState
from wallet_market.domain.users import UserProfile
from wallet_market.partners.client import PartnerClient
from wallet_market.store.breakers import redis_breaker_storage
from wallet_market.services.prescreen import PrescreenService
from wallet_market.services.layouts import build_serving
from wallet_market.store.data_shares import DataShareStore
from wallet_market.store.keys import Keys
from wallet_market.store.users import UserStore
from tests.catalogue_builders import partner, product

PHONE = "13800138000"
HASH = phone_hash(PHONE)
TTL_NEW = 3600
TTL_EXISTING = 30 * 86400


def _partner(fake, partner_id):
    return partner(partner_id, prescreen_url=fake.prescreen_url, timeout_ms=1500)


class World:
    def __init__(self, redis_client, key_prefix):
        self.redis = redis_client
        self.keys = Keys(key_prefix)
        self.alpha = FakePartner("alpha", "alpha-secret-0123456789abcdef")
        self.beta = FakePartner("beta", "beta-secret-0123456789abcdef")
        self.secrets = {"alpha": self.alpha.secret, "beta": self.beta.secret}
        catalogue = {
            "partners": [_partner(self.alpha, "alpha"), _partner(self.beta, "beta")],
            "products": [product("alpha_loan", "alpha"), product("beta_loan", "beta")],
        }
        self.serving = build_serving({"version": 1, "catalogue": catalogue}, PlacementPolicy())
        self.client = PartnerClient(
            self.secrets.get, redis_breaker_storage(redis_client, self.keys), fail_max=5, reset_seconds=30
        )
        self.shares = DataShareStore(redis_client, self.keys)
        self.users = UserStore(redis_client, self.keys)
        self.service = PrescreenService(
            self.client,
            self.shares,
            redis_client,
            self.keys,
            ttl_new_seconds=TTL_NEW,
            ttl_existing_seconds=TTL_EXISTING,
            failed_ttl_seconds=30,
        )

    def user(self, user_id="u-1", share_with=("alpha", "beta"), phone_sha256=HASH) -> UserProfile:
        profile = UserProfile(
            user_id=user_id, risk_tier="A", age=30, share_with_partners=frozenset(share_with), phone_sha256=phone_sha256
        )
        self.users.put_profile(user_id, profile.to_dict())
        return profile

    def ask(self, profile, state=None):
        """Start the pre-screens ``state`` lacks, wait for them, and return every answer known then."""
        state = state or UserState()
        futures = self.service.schedule(profile, state, self.serving)
        wait(futures.values(), timeout=30)
        answers = {p: f.result() for p, f in futures.items() if f.done() and f.result() is not None}
        return {**state.prescreen, **answers}

    def cached(self, user_id, partner_id):
        key = self.keys.prescreen(user_id, partner_id)
        value = self.redis.get(key)
        return (value.decode() if value else None), self.redis.ttl(key)

    def close(self):
        self.service.close()
        self.client.close()
        self.alpha.close()
        self.beta.close()


@pytest.fixture
def world(redis_client, key_prefix):
    w = World(redis_client, key_prefix)
    yield w
    w.close()


def test_answers_are_cached_for_their_ttl(world):
    world.beta.existing_hashes.add(HASH)
    assert world.ask(world.user()) == {"alpha": "new", "beta": "existing"}
    value, ttl = world.cached("u-1", "alpha")
    assert value == "new" and TTL_NEW - 5 <= ttl <= TTL_NEW
    value, ttl = world.cached("u-1", "beta")
    assert value == "existing" and TTL_EXISTING - 5 <= ttl <= TTL_EXISTING


def test_each_send_is_recorded_before_it_leaves_and_matches_what_the_partner_received(world):
    world.beta.existing_hashes.add(HASH)
    world.ask(world.user())
    shares = {s.partner_id: s for s in world.shares.list("u-1")}
    assert set(shares) == {"alpha", "beta"}
    for fake, outcome in ((world.alpha, "new"), (world.beta, "existing")):
        (received,) = fake.prescreens()
        body = received.json()
        share = shares[fake.partner_id]
        assert received.signature_ok
        assert set(body) == {"request_id", "product_id", "phone_sha256"}
        assert body["phone_sha256"] == HASH and body["product_id"] == f"{fake.partner_id}_loan"
        assert share.request_id == body["request_id"] and share.product_id == body["product_id"]
        assert share.fields == ("phone_sha256",) and share.purpose == "prescreen"
        assert share.consent == f"share_with_partners:{fake.partner_id}" and share.outcome == outcome
        recorded_at = datetime.fromisoformat(share.at.replace("Z", "+00:00")).timestamp()
        assert recorded_at <= received.at + 0.001


def test_no_consent_means_no_request_and_no_record(world):
    assert world.ask(world.user(share_with=("beta",))) == {"beta": "new"}
    assert world.alpha.received == []
    assert [s.partner_id for s in world.shares.list("u-1")] == ["beta"]
    assert world.cached("u-1", "alpha") == (None, -2)


def test_no_phone_hash_means_nobody_is_asked(world):
    assert world.ask(world.user(phone_sha256=None)) == {}
    assert world.alpha.received == [] and world.beta.received == [] and world.shares.list("u-1") == []


def test_revoking_consent_stops_the_next_send(world):
    before = world.user()
    assert world.ask(before) == {"alpha": "new", "beta": "new"}
    world.user(share_with=("beta",))  # a profile update revokes alpha
    world.redis.delete(world.keys.prescreen("u-1", "alpha"))
    # Even a layout that read the profile just before the revocation sends nothing.
    assert world.ask(before, UserState(prescreen={"beta": "new"})) == {"beta": "new"}
    assert len(world.alpha.prescreens()) == 1
    assert [s.partner_id for s in world.shares.list("u-1")].count("alpha") == 1


def test_partners_are_asked_in_parallel(world):
    world.alpha.hold()
    futures = world.service.schedule(world.user(), UserState(), world.serving)
    assert set(futures) == {"alpha", "beta"}
    # beta answers while alpha is still holding its answer: neither waits for the other.
    assert futures["beta"].result(timeout=10) == "new"
    assert not futures["alpha"].done()
    world.alpha.release()
    assert futures["alpha"].result(timeout=10) == "new"


def test_scheduling_never_waits_and_the_same_question_is_not_asked_twice(world):
    world.alpha.hold()
    profile = world.user()
    first = world.service.schedule(profile, UserState(), world.serving)
    assert not first["alpha"].done()  # scheduled, not awaited
    # The next layout, while alpha is still thinking, does not ask alpha a second time.
    again = world.service.schedule(profile, UserState(prescreen={"beta": "new"}), world.serving)
    assert again["alpha"] is first["alpha"] and "beta" not in again
    world.alpha.release()
    assert first["alpha"].result(timeout=10) == "new"
    assert world.cached("u-1", "alpha")[0] == "new"
    assert len(world.alpha.prescreens()) == 1


def test_a_stored_profile_prompts_the_missing_answers_only(world):
    world.redis.set(world.keys.prescreen("u-1", "beta"), "existing", ex=60)
    futures = world.service.prefetch(world.user(), world.serving)
    assert set(futures) == {"alpha"}
    assert futures["alpha"].result(timeout=10) == "new"
    assert world.beta.received == []


@pytest.mark.parametrize(
    "mode, outcome", [("error", "http_error"), ("garbage", "bad_answer"), ("wrong_shape", "bad_answer")]
)
def test_a_failed_prescreen_means_not_placed_now_and_is_retried_soon(world, mode, outcome):
    world.alpha.mode = mode
    assert world.ask(world.user()) == {"alpha": "failed", "beta": "new"}
    value, ttl = world.cached("u-1", "alpha")
    assert value == "failed" and 0 < ttl <= 30
    (share,) = [s for s in world.shares.list("u-1") if s.partner_id == "alpha"]
    assert share.outcome == f"failed:{outcome}"


def test_a_partner_without_a_signing_secret_is_never_sent_user_data(world):
    del world.secrets["beta"]
    assert world.ask(world.user()) == {"alpha": "new", "beta": "failed"}
    assert world.beta.received == []
    assert [s.partner_id for s in world.shares.list("u-1")] == ["alpha"]


def test_the_phone_number_never_appears_in_clear(world, caplog, redis_client, key_prefix):
    caplog.set_level(logging.DEBUG)
    world.alpha.mode = "error"
    world.ask(world.user())
    for fake in (world.alpha, world.beta):
        for received in fake.received:
            assert PHONE not in received.raw()
    assert PHONE not in caplog.text
    for key in redis_client.scan_iter(match=f"{key_prefix}:*"):
        assert PHONE.encode() not in key
        kind = redis_client.type(key)
        if kind == b"string":
            content = repr(redis_client.get(key))
        elif kind == b"stream":
            content = repr(redis_client.xrange(key))
        elif kind == b"hash":
            content = repr(redis_client.hgetall(key))
        else:
            content = ""
        assert PHONE not in content
