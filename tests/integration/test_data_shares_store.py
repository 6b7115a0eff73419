"""The data-share log in Redis: a send is recorded only with consent, before it leaves, with its outcome."""
import orjson
import pytest

from wallet_market.domain.users import UserProfile
from wallet_market.store.connection import client_from_url
from wallet_market.store.data_shares import DataShareStore
from wallet_market.store.keys import Keys
from wallet_market.store.users import UserStore

HASH = "d" * 64


@pytest.fixture
def keys(key_prefix):
    return Keys(key_prefix)


@pytest.fixture
def store(redis_client, keys):
    return DataShareStore(redis_client, keys)


def _put(redis_client, keys, user_id, share_with=("alpha",), **over):
    profile = UserProfile(user_id=user_id, phone_sha256=HASH, share_with_partners=frozenset(share_with), **over)
    UserStore(redis_client, keys).put_profile(user_id, profile.to_dict())


def _phone_only(profile):
    return ("phone_sha256",) if profile.phone_sha256 else ()


def test_a_consented_send_is_recorded_with_what_it_relied_on(store, redis_client, keys):
    _put(redis_client, keys, "u-1", share_with=("alpha", "beta"), personalized=False)
    send = store.record_send(
        "u-1", "alpha", "prescreen", request_id="req-1", product_id="alpha_loan", fields_for=_phone_only
    )
    assert send is not None and send.fields == ("phone_sha256",) and send.profile.phone_sha256 == HASH
    (share,) = store.list("u-1")
    assert share.share_id == send.share_id
    assert (share.partner_id, share.purpose, share.fields) == ("alpha", "prescreen", ("phone_sha256",))
    assert (share.request_id, share.product_id) == ("req-1", "alpha_loan")
    assert share.consent == "share_with_partners:alpha"
    assert share.consents == {"personalized": False, "share_with_partners": ["alpha", "beta"]}
    assert share.at.endswith("Z") and share.outcome is None

    store.mark_outcome("u-1", send.share_id, "existing")
    (share,) = store.list("u-1")
    assert share.outcome == "existing" and share.outcome_at is not None


def test_nothing_is_recorded_without_a_profile_consent_or_anything_to_send(store, redis_client, keys):
    def send(user_id, partner_id, fields_for=_phone_only):
        return store.record_send(
            user_id, partner_id, "prescreen", request_id="r", product_id="p", fields_for=fields_for
        )

    assert send("nobody", "alpha") is None
    _put(redis_client, keys, "u-2", share_with=("beta",))
    assert send("u-2", "alpha") is None
    assert send("u-2", "beta", fields_for=lambda profile: ()) is None
    assert store.list("nobody") == [] and store.list("u-2") == []
    assert redis_client.exists(keys.data_shares("u-2")) == 0


def test_consent_revoked_while_the_send_is_being_recorded_stops_it(store, redis_client, keys, redis_url):
    _put(redis_client, keys, "u-3")
    other_worker = client_from_url(redis_url)
    revoked = []

    def fields_while_the_user_revokes(profile):
        if not revoked:  # the internal systems push the revocation at this very moment
            _put(other_worker, keys, "u-3", share_with=())
            revoked.append(True)
        return _phone_only(profile)

    send = store.record_send(
        "u-3", "alpha", "prescreen", request_id="r", product_id="p", fields_for=fields_while_the_user_revokes
    )
    other_worker.close()
    assert revoked and send is None
    assert store.list("u-3") == []


def test_the_log_reads_newest_first_with_each_outcome(store, redis_client, keys):
    _put(redis_client, keys, "u-4", share_with=("alpha", "beta"))
    ids = []
    for n in range(5):
        send = store.record_send(
            "u-4", "alpha" if n % 2 else "beta", "joint_login", request_id=f"r-{n}", product_id="p",
            fields_for=lambda profile: ("user_ref", "phone_sha256"),
        )
        ids.append(send.share_id)
    for n, share_id in enumerate(ids):
        store.mark_outcome("u-4", share_id, f"outcome-{n}")
    newest = store.list("u-4", limit=3)
    assert [s.request_id for s in newest] == ["r-4", "r-3", "r-2"]
    assert [s.outcome for s in newest] == ["outcome-4", "outcome-3", "outcome-2"]
    assert [s.partner_id for s in newest] == ["beta", "alpha", "beta"]
    assert len(store.list("u-4")) == 5


def test_the_log_lives_beside_the_profile_under_the_users_hash_tag(store, redis_client, keys):
    _put(redis_client, keys, "u-5")
    store.record_send("u-5", "alpha", "prescreen", request_id="r", product_id="p", fields_for=_phone_only)
    assert "{u:u-5}" in keys.data_shares("u-5") and "{u:u-5}" in keys.profile("u-5")  # one cluster slot
    entries = redis_client.xrange(keys.data_shares("u-5"))
    assert len(entries) == 1 and orjson.loads(entries[0][1][b"fields"]) == ["phone_sha256"]
