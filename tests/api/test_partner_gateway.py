"""Pre-screens in real layouts, against partners on loopback (docs/guards.md, guards 5, 6, 8; the data-share log of docs/api.md)."""
import logging
import time

import pytest

from partner_fakes import DEMO_PARTNERS, HAOYUE_SECRET, TEST_PHONE, XINGYUN_SECRET, FakePartner, configure_partner, phone_hash, put_user


@pytest.fixture
def settings_overrides(settings_overrides):
    return {**settings_overrides, "breaker_fail_max": 2, "breaker_reset_seconds": 2}


@pytest.fixture
def xingyun(demo_app, client, auth, comps):
    """Xingyun consumer finance pre-screens its users; the demo's wallet story needs a new customer."""
    fake = FakePartner("xingyun_cf", XINGYUN_SECRET)
    configure_partner(client, auth, comps, "xingyun_cf", **fake.partner_fields(timeout_ms=1000))
    yield fake
    fake.close()


def _layout(client, auth, comps, user_id):
    token = comps.user_tokens.mint(user_id)
    response = client.get("/v1/layout?page=home", headers=auth("app", **{"X-User-Token": token}))
    assert response.status_code == 200, response.get_json()
    return [slot["product"]["product_id"] for slot in response.get_json()["slots"]]


def _shares(client, auth, user_id):
    response = client.get(f"/admin/v1/data-shares?user_id={user_id}", headers=auth("pm"))
    assert response.status_code == 200
    return response.get_json()["shares"]


def _wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _settle(comps):
    """Wait until the pre-screens on their way (asked in the background) have their answers cached."""
    _wait_for(lambda: comps.prescreen.pending() == 0)


def _prepared(client, auth, comps, user_id, **changes):
    """Store the user's profile and let the pre-screens it prompts finish."""
    put_user(client, auth, user_id, **changes)
    _settle(comps)


def test_a_new_customer_gets_the_partner_loan_on_top_after_a_consented_prescreen(xingyun, client, auth, comps):
    _prepared(client, auth, comps, "u-new")
    products = _layout(client, auth, comps, "u-new")
    assert products[0] == "xingyun_loan"
    (received,) = xingyun.prescreens()
    assert received.signature_ok and received.json()["product_id"] == "xingyun_loan"
    assert received.json()["phone_sha256"] == phone_hash(TEST_PHONE)

    (share,) = _shares(client, auth, "u-new")
    assert share["partner_id"] == "xingyun_cf" and share["purpose"] == "prescreen"
    assert share["fields"] == ["phone_sha256"] and share["request_id"] == received.json()["request_id"]
    assert share["consent"] == "share_with_partners:xingyun_cf" and share["outcome"] == "new"
    assert share["consents"]["share_with_partners"] == DEMO_PARTNERS

    products = _layout(client, auth, comps, "u-new")  # the answer is cached: nobody is asked again
    assert products[0] == "xingyun_loan" and len(xingyun.prescreens()) == 1


def test_an_existing_customer_is_not_shown_that_partner(xingyun, client, auth, comps):
    xingyun.mode = "existing"
    _prepared(client, auth, comps, "u-existing")
    products = _layout(client, auth, comps, "u-existing")
    assert "xingyun_loan" not in products
    assert comps.redis.get(comps.keys.prescreen("u-existing", "xingyun_cf")) == b"existing"


@pytest.mark.parametrize("mode", ["error", "garbage", "wrong_shape", "silent"])
def test_guard_8_a_failed_prescreen_leaves_the_partner_out_never_the_page(xingyun, client, auth, comps, mode):
    xingyun.mode = mode
    put_user(client, auth, "u-failed")
    products = _layout(client, auth, comps, "u-failed")  # while the pre-screen may still be on its way
    assert "xingyun_loan" not in products and products  # the rest of the page is served
    _settle(comps)
    products = _layout(client, auth, comps, "u-failed")
    assert "xingyun_loan" not in products and products
    assert comps.redis.get(comps.keys.prescreen("u-failed", "xingyun_cf")) == b"failed"


def test_guard_8_a_layout_never_waits_for_a_hanging_partner_and_places_it_once_it_answers(xingyun, client, auth, comps):
    configure_partner(client, auth, comps, "xingyun_cf", timeout_ms=10_000)
    xingyun.hold()
    put_user(client, auth, "u-slow")  # storing the profile asks xingyun in the background
    _wait_for(lambda: len(xingyun.prescreens()) == 1)  # the question is at the partner, unanswered
    products = _layout(client, auth, comps, "u-slow")  # answered while the partner still holds its answer
    assert "xingyun_loan" not in products and products
    products = _layout(client, auth, comps, "u-slow")  # nor is the question asked again meanwhile
    assert "xingyun_loan" not in products and len(xingyun.prescreens()) == 1
    assert comps.prescreen.pending() == 1
    xingyun.release()
    _settle(comps)
    assert comps.redis.get(comps.keys.prescreen("u-slow", "xingyun_cf")) == b"new"
    assert _layout(client, auth, comps, "u-slow")[0] == "xingyun_loan"
    assert len(xingyun.prescreens()) == 1


def test_a_profile_update_asks_ahead_so_the_first_layout_finds_the_answer(xingyun, client, auth, comps):
    put_user(client, auth, "u-ahead")
    _wait_for(lambda: comps.redis.get(comps.keys.prescreen("u-ahead", "xingyun_cf")) == b"new")
    assert _layout(client, auth, comps, "u-ahead")[0] == "xingyun_loan"
    assert len(xingyun.prescreens()) == 1


def test_a_layout_without_an_answer_places_without_the_partner_and_asks_for_the_next_one(xingyun, client, auth, comps):
    _prepared(client, auth, comps, "u-expired")
    comps.redis.delete(comps.keys.prescreen("u-expired", "xingyun_cf"))  # as if the cached answer expired
    products = _layout(client, auth, comps, "u-expired")
    assert "xingyun_loan" not in products and products  # cached answers only: no waiting on the partner
    _settle(comps)
    assert len(xingyun.prescreens()) == 2
    assert _layout(client, auth, comps, "u-expired")[0] == "xingyun_loan"


def test_guard_5_without_consent_no_request_leaves_and_nothing_is_recorded(xingyun, client, auth, comps):
    _prepared(client, auth, comps, "u-private", share_with=[p for p in DEMO_PARTNERS if p != "xingyun_cf"])
    products = _layout(client, auth, comps, "u-private")
    assert "xingyun_loan" not in products
    _settle(comps)
    assert xingyun.received == [] and _shares(client, auth, "u-private") == []


def test_a_partner_with_no_product_the_user_could_be_shown_is_not_asked(xingyun, client, auth, comps):
    put_user(client, auth, "u-tier-d", risk_tier="D")  # xingyun_loan is for tiers A–C
    _layout(client, auth, comps, "u-tier-d")
    _settle(comps)
    assert xingyun.received == [] and _shares(client, auth, "u-tier-d") == []


def test_without_a_phone_hash_nobody_is_asked(xingyun, client, auth, comps):
    _prepared(client, auth, comps, "u-nophone", phone_sha256=None)
    _layout(client, auth, comps, "u-nophone")
    _settle(comps)
    assert xingyun.received == [] and _shares(client, auth, "u-nophone") == []


def test_guard_5_revoking_consent_stops_the_next_request(xingyun, client, auth, comps):
    _prepared(client, auth, comps, "u-revokes")
    _layout(client, auth, comps, "u-revokes")
    assert len(xingyun.prescreens()) == 1
    _prepared(client, auth, comps, "u-revokes", share_with=["haoyue_mcl"])
    comps.redis.delete(comps.keys.prescreen("u-revokes", "xingyun_cf"))  # as if the cached answer expired
    products = _layout(client, auth, comps, "u-revokes")
    assert "xingyun_loan" not in products
    _settle(comps)
    assert len(xingyun.prescreens()) == 1 and len(_shares(client, auth, "u-revokes")) == 1


def test_the_breaker_opens_after_failures_and_closes_after_the_partner_recovers(xingyun, client, auth, comps):
    xingyun.mode = "error"
    for user_id in ("u-b1", "u-b2"):  # breaker_fail_max = 2
        _prepared(client, auth, comps, user_id)
        assert "xingyun_loan" not in _layout(client, auth, comps, user_id)
    assert len(xingyun.prescreens()) == 2

    _prepared(client, auth, comps, "u-b3")
    assert "xingyun_loan" not in _layout(client, auth, comps, "u-b3")
    assert len(xingyun.prescreens()) == 2  # open: the third user's data never left
    assert _shares(client, auth, "u-b3") == []

    xingyun.mode = "new"
    breaker = comps.partner_client
    _wait_for(lambda: not breaker.breaker_open("xingyun_cf"))
    _prepared(client, auth, comps, "u-b4")
    assert _layout(client, auth, comps, "u-b4")[0] == "xingyun_loan"
    assert breaker.breaker_state("xingyun_cf") == "closed"
    assert len(xingyun.prescreens()) == 3


def test_guard_5_data_share_records_match_what_partners_received_one_for_one(xingyun, client, auth, comps):
    haoyue = FakePartner("haoyue_mcl", HAOYUE_SECRET)
    try:
        configure_partner(client, auth, comps, "haoyue_mcl", **haoyue.partner_fields(timeout_ms=1000))
        haoyue.mode = "existing"
        users = ["u-r1", "u-r2", "u-r3"]
        # Tier B: both haoyue_loan (tiers B–D) and xingyun_loan (A–C) could be shown.
        _prepared(client, auth, comps, "u-r1", risk_tier="B")
        _prepared(client, auth, comps, "u-r2", share_with=["haoyue_mcl"], risk_tier="B")
        _prepared(client, auth, comps, "u-r3", share_with=["xingyun_cf"], risk_tier="B")
        for user_id in users:
            _layout(client, auth, comps, user_id)
        received = {
            (fake.partner_id, r.json()["request_id"], r.json()["phone_sha256"])
            for fake in (xingyun, haoyue)
            for r in fake.prescreens()
        }
        recorded = {
            (s["partner_id"], s["request_id"], phone_hash(TEST_PHONE))
            for user_id in users
            for s in _shares(client, auth, user_id)
        }
        assert len(received) == 4 and received == recorded  # u-r1 → both, u-r2 → haoyue, u-r3 → xingyun
    finally:
        haoyue.close()


def test_guard_6_the_phone_number_never_appears_in_requests_logs_or_keys(xingyun, client, auth, comps, caplog, key_prefix):
    caplog.set_level(logging.DEBUG)
    _prepared(client, auth, comps, "u-phone")
    _layout(client, auth, comps, "u-phone")
    xingyun.mode = "error"
    _prepared(client, auth, comps, "u-phone-2")
    _layout(client, auth, comps, "u-phone-2")
    assert len(xingyun.received) == 2
    assert all(TEST_PHONE not in r.raw() for r in xingyun.received)
    assert TEST_PHONE not in caplog.text
    for key in comps.redis.scan_iter(match=f"{key_prefix}:*"):
        assert TEST_PHONE.encode() not in key
        kind = comps.redis.type(key)
        dumped = {
            b"string": lambda: comps.redis.get(key),
            b"hash": lambda: comps.redis.hgetall(key),
            b"stream": lambda: comps.redis.xrange(key),
            b"list": lambda: comps.redis.lrange(key, 0, -1),
            b"set": lambda: comps.redis.smembers(key),
        }.get(kind, lambda: b"")()
        assert TEST_PHONE not in repr(dumped)


def test_the_data_share_log_is_for_product_managers_and_needs_a_user(demo_app, client, auth):
    assert client.get("/admin/v1/data-shares?user_id=u-1", headers=auth("app")).status_code == 403
    missing = client.get("/admin/v1/data-shares", headers=auth("pm"))
    assert missing.status_code == 422 and "user_id" in missing.get_json()["errors"]["query"]


def test_partner_calls_are_counted_per_partner_and_outcome(xingyun, client, auth, comps):
    _prepared(client, auth, comps, "u-metrics")
    _layout(client, auth, comps, "u-metrics")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'wallet_market_partner_requests_total{outcome="ok",partner="xingyun_cf",purpose="prescreen"}' in text
    assert 'wallet_market_prescreen_answers_total{answer="new",partner="xingyun_cf"}' in text
    assert 'wallet_market_partner_request_seconds_bucket{le="0.25",outcome="ok",partner="xingyun_cf"' in text
