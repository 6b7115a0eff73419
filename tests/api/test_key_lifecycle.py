"""API keys: listed without their secret, revoked everywhere within seconds, nothing stored for made-up keys."""
import hashlib
import json
import time

import pytest
import redis

from wallet_market.services.access import Access
from wallet_market.services.errors import Unavailable
from wallet_market.store.access import ApiKeyStore
from wallet_market.store.layout_reads import parse_key_reads, queue_key_reads


def dead_redis():
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))


def bearer(api_key):
    return {"Authorization": f"Bearer {api_key}"}


def key_id(api_key):
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


def test_keys_list_shows_ids_names_roles_and_use_never_the_key_or_its_hash(cli, client, comps):
    used = comps.api_keys.create("pm", name="catalogue-team")
    idle = comps.api_keys.create("finance", name="cfo-office")
    assert client.get("/admin/v1/products", headers=bearer(used)).status_code == 200

    listed = {k["name"]: k for k in json.loads(cli("keys", "list", "--json").output)}
    assert {(k["key_id"], name, k["role"]) for name, k in listed.items()} == {
        (key_id(used), "catalogue-team", "pm"), (key_id(idle), "cfo-office", "finance"),
    }
    assert listed["catalogue-team"]["created_at"].endswith("Z") and listed["catalogue-team"]["last_used_at"].endswith("Z")
    assert listed["cfo-office"]["last_used_at"] is None
    table = cli("keys", "list")
    assert table.exit_code == 0 and "catalogue-team" in table.output and "never" in table.output
    for secret in (used, idle, hashlib.sha256(used.encode()).hexdigest(), hashlib.sha256(idle.encode()).hexdigest()):
        assert secret not in table.output and secret not in json.dumps(listed)


def test_last_use_is_written_once_a_minute_at_most(redis_client, comps):
    api_key = comps.api_keys.create("app")
    digest = hashlib.sha256(api_key.encode()).hexdigest()
    start = 60 * 29_500_000  # the first second of a minute

    def check(now):
        pipe = redis_client.pipeline(transaction=False)
        queue_key_reads(pipe, comps.keys, digest, read_record=False, now=now)
        return parse_key_reads(pipe.execute(), read_record=False)[0]

    assert [check(start + s).rate_count for s in (0, 10, 59)] == [1, 2, 3]
    assert redis_client.hget(comps.keys.api_keys_last_used(), digest) == str(start).encode()  # the first of the minute
    assert check(start + 75).rate_count == 1  # the next minute: counted anew, last use moved on
    assert redis_client.hget(comps.keys.api_keys_last_used(), digest) == str(start + 75).encode()


def test_made_up_keys_leave_nothing_in_redis(client, comps, redis_client, key_prefix):
    comps.api_keys.create("pm")
    before = set(redis_client.scan_iter(match=f"{key_prefix}:*"))
    for n in range(20):
        assert client.get("/admin/v1/products", headers=bearer(f"wm_pm_made-up-{n}")).status_code == 401
    assert set(redis_client.scan_iter(match=f"{key_prefix}:*")) == before


def test_a_key_deleted_by_hand_is_refused_at_its_next_request(client, comps, redis_client):
    api_key = comps.api_keys.create("pm")
    assert client.get("/admin/v1/products", headers=bearer(api_key)).status_code == 200  # cached now
    redis_client.hdel(comps.keys.api_keys(), hashlib.sha256(api_key.encode()).hexdigest())
    response = client.get("/admin/v1/products", headers=bearer(api_key))
    assert response.status_code == 401 and response.get_json()["errors"] == {"Authorization": ["unknown API key"]}


def test_keys_revoke_refuses_the_key_and_names_an_unknown_one(cli, client, comps):
    api_key = comps.api_keys.create("pm", name="leaver")
    keep = comps.api_keys.create("pm", name="stayer")
    assert client.get("/admin/v1/products", headers=bearer(api_key)).status_code == 200
    revoked = cli("keys", "revoke", key_id(api_key))
    assert revoked.exit_code == 0 and revoked.output == f"Revoked key {key_id(api_key)} (pm, leaver).\n"
    assert client.get("/admin/v1/products", headers=bearer(api_key)).status_code == 401
    assert client.get("/admin/v1/products", headers=bearer(keep)).status_code == 200
    assert [k["name"] for k in json.loads(cli("keys", "list", "--json").output)] == ["stayer"]
    again = cli("keys", "revoke", key_id(api_key))
    assert again.exit_code == 2 and "no API key with id" in again.output


class FakeClock:
    def __init__(self):
        self.now = 5_000.0

    def __call__(self):
        return self.now


def test_during_an_outage_a_cached_key_is_accepted_only_within_the_grace(comps):
    api_key = comps.api_keys.create("pm")
    clock = FakeClock()
    access = Access(ApiKeyStore(comps.redis, comps.keys), comps.user_tokens, 1000, outage_grace_seconds=300, clock=clock)
    assert access.authenticate(f"Bearer {api_key}", ("pm",)).role == "pm"  # verified at 5,000 s
    clock.now += 200
    assert access.authenticate(f"Bearer {api_key}", ("pm",)).role == "pm"  # verified again at 5,200 s
    access.api_keys.client = dead_redis()  # the outage begins
    clock.now += 300
    assert access.authenticate(f"Bearer {api_key}", ("pm",)).role == "pm"  # 300 s after the last check
    clock.now += 1
    with pytest.raises(Unavailable):
        access.authenticate(f"Bearer {api_key}", ("pm",))


def test_the_outage_grace_is_a_setting(settings_overrides):
    from wallet_market.app import create_app

    app = create_app({**settings_overrides, "api_key_outage_grace_seconds": 60}, start_background=False)
    try:
        assert app.extensions["wallet_market"].access.outage_grace_seconds == 60
    finally:
        app.extensions["wallet_market"].close()


def test_a_key_revoked_through_one_instance_is_refused_by_another_within_two_seconds(demo_app, comps, settings_overrides):
    from wallet_market.app import create_app

    other = create_app(settings_overrides, start_background=True)  # its subscriber listens for revocations
    try:
        theirs = other.extensions["wallet_market"]
        theirs.snapshots.refresh()
        client = other.test_client()
        revoked, kept = comps.api_keys.create("app", name="old-app"), comps.api_keys.create("app", name="new-app")
        for api_key in (revoked, kept):
            assert client.get("/v1/layout?page=home", headers=bearer(api_key)).status_code == 200
        digest = hashlib.sha256(revoked.encode()).hexdigest()
        assert theirs.access._cached(digest, fresh=False) is not None

        assert comps.api_keys.revoke(key_id(revoked)) is not None  # through this instance
        deadline = time.monotonic() + 2.0
        while theirs.access._cached(digest, fresh=False) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert theirs.access._cached(digest, fresh=False) is None, "the other instance still holds the revoked key"
        assert client.get("/v1/layout?page=home", headers=bearer(revoked)).status_code == 401

        # Even with Redis gone, the other instance serves the key it still trusts and not the revoked one.
        theirs.layouts.client = dead_redis()
        degraded = client.get("/v1/layout?page=home", headers=bearer(kept))
        assert degraded.status_code == 200 and degraded.get_json()["degraded"] is True
        # (refused outright: its tag verifies, but this instance heard it revoked)
        assert client.get("/v1/layout?page=home", headers=bearer(revoked)).status_code == 401
    finally:
        other.extensions["wallet_market"].close()


def test_a_process_started_after_a_revocation_refuses_the_revoked_key_on_its_tag_during_an_outage(
    demo_app, comps, settings_overrides
):
    from wallet_market.app import create_app

    revoked, kept = comps.api_keys.create("app", name="gone"), comps.api_keys.create("app", name="kept")
    assert comps.api_keys.revoke(key_id(revoked)) is not None  # announced before the other process listens
    assert key_id(revoked) in comps.api_keys.revoked_ids()

    other = create_app(settings_overrides, start_background=False)  # it never heard the announcement
    try:
        theirs = other.extensions["wallet_market"]
        theirs.layouts.client = dead_redis()  # the outage begins before either key was ever seen here
        client = other.test_client()
        degraded = client.get("/v1/layout?page=home", headers=bearer(kept))
        assert degraded.status_code == 200 and degraded.get_json()["degraded"] is True
        refused = client.get("/v1/layout?page=home", headers=bearer(revoked))
        assert refused.status_code == 401 and refused.get_json()["errors"] == {"Authorization": ["revoked API key"]}
    finally:
        other.extensions["wallet_market"].close()


def test_a_process_that_never_read_the_revoked_keys_accepts_no_key_on_its_tag_alone(comps):
    from wallet_market.services.access import KeyTags

    tagged = comps.api_keys.create("app", name="never seen")
    store = ApiKeyStore(dead_redis(), comps.keys)  # started while Redis was away
    access = Access(store, comps.user_tokens, 1000, key_tags=KeyTags(comps.settings.secret_key))
    assert access.load_revoked() is False
    with pytest.raises(Unavailable):
        access.degraded(tagged, ("app",), offline_roles=("app",))

    store.client = comps.redis  # Redis answers once: the revoked ids are read
    assert access.load_revoked() is True
    store.client = dead_redis()  # and goes away again
    assert access.degraded(tagged, ("app",), offline_roles=("app",)).role == "app"
