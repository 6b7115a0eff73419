"""Rate limits answer 429 with Retry-After: per API key, and per partner for its signed calls; /metrics access."""
import json

import pytest

from partner_fakes import HAOYUE_SECRET, XINGYUN_SECRET, configure_partner
from wallet_market.domain.signing import signed_headers


@pytest.fixture
def settings_overrides(settings_overrides):
    return {**settings_overrides, "partner_rate_limit_per_minute": 3, "rate_limit_per_minute": 1000}


@pytest.fixture
def partners(demo_app, client, auth, comps):
    configure_partner(client, auth, comps, "xingyun_cf", signing_secret=XINGYUN_SECRET)
    configure_partner(client, auth, comps, "haoyue_mcl", signing_secret=HAOYUE_SECRET)
    return demo_app


def _signed(client, path, partner_id, secret, body):
    raw = json.dumps(body).encode()
    headers = {**signed_headers(partner_id, secret, raw), "Content-Type": "application/json"}
    return client.post(path, data=raw, headers=headers)


def _assert_limited(response):
    assert response.status_code == 429, response.get_json()
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert "X-Partner-Id" in response.get_json()["errors"]


@pytest.mark.parametrize(
    "path, body",
    [
        ("/partner/v1/postbacks", {"event_id": "e-1", "type": "applied", "impression_token": "not-a-token"}),
        ("/partner/v1/joint-login/exchange", {"token": "not-a-token"}),
    ],
)
def test_a_partners_signed_calls_are_limited_per_minute_with_retry_after(partners, client, path, body):
    for _ in range(3):  # within the allowance: answered on their merits (a bad token here)
        assert _signed(client, path, "xingyun_cf", XINGYUN_SECRET, body).status_code in (403, 422)
    _assert_limited(_signed(client, path, "xingyun_cf", XINGYUN_SECRET, body))
    # Another partner has its own allowance.
    assert _signed(client, path, "haoyue_mcl", HAOYUE_SECRET, body).status_code in (403, 422)


def test_postbacks_and_exchanges_share_one_allowance_per_partner(partners, client):
    for _ in range(2):
        _signed(client, "/partner/v1/postbacks", "xingyun_cf", XINGYUN_SECRET, {"event_id": "e", "type": "applied"})
    _signed(client, "/partner/v1/joint-login/exchange", "xingyun_cf", XINGYUN_SECRET, {"token": "t"})
    _assert_limited(_signed(client, "/partner/v1/joint-login/exchange", "xingyun_cf", XINGYUN_SECRET, {"token": "t"}))


def test_forged_calls_do_not_use_up_a_partners_allowance(partners, client):
    for _ in range(5):
        forged = _signed(client, "/partner/v1/postbacks", "xingyun_cf", "not-the-secret-0123456789", {"event_id": "e"})
        assert forged.status_code == 401
    body = {"event_id": "e-1", "type": "applied", "impression_token": "not-a-token"}
    assert _signed(client, "/partner/v1/postbacks", "xingyun_cf", XINGYUN_SECRET, body).status_code == 422


def test_an_api_key_over_its_rate_gets_429_with_retry_after(app, comps, client):
    key = comps.api_keys.create("pm", name="busy")
    comps.access.rate_limit_per_minute = 2
    statuses = [client.get("/admin/v1/partners", headers={"Authorization": f"Bearer {key}"}) for _ in range(3)]
    assert [r.status_code for r in statuses[:2]] == [200, 200]
    limited = statuses[2]
    assert limited.status_code == 429 and limited.is_json
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_metrics_are_open_by_default(app, client):
    response = client.get("/metrics")
    assert response.status_code == 200 and b"wallet_market_" in response.data


@pytest.mark.parametrize("role, status", [(None, 401), ("app", 403), ("pm", 403), ("internal", 200)])
def test_metrics_need_an_internal_key_when_the_setting_says_so(settings_overrides, role, status):
    from wallet_market.app import create_app

    application = create_app({**settings_overrides, "metrics_require_key": True}, start_background=False)
    try:
        comps = application.extensions["wallet_market"]
        headers = {} if role is None else {"Authorization": f"Bearer {comps.api_keys.create(role)}"}
        response = application.test_client().get("/metrics", headers=headers)
        assert response.status_code == status
        if status != 200:
            assert response.is_json and "Authorization" in response.get_json()["errors"]
    finally:
        application.extensions["wallet_market"].close()

