"""API keys with one role each, stored hashed; user tokens signed and expiring."""
import hashlib

import pytest


def test_a_missing_key_is_401_and_a_wrong_role_403(client, auth):
    assert client.get("/admin/v1/products").status_code == 401
    assert client.get("/admin/v1/products", headers={"Authorization": "Bearer wm_pm_not-a-key"}).status_code == 401
    wrong = client.get("/admin/v1/products", headers=auth("app"))
    assert wrong.status_code == 403
    body = wrong.get_json()
    assert set(body) == {"code", "status", "message", "errors"} and body["code"] == 403
    assert client.get("/admin/v1/products", headers=auth("pm")).status_code == 200


@pytest.mark.parametrize("path, role", [("/v1/layout?page=home", "pm"), ("/admin/v1/rulesets", "finance")])
def test_each_endpoint_admits_only_its_role(demo_app, client, auth, path, role):
    assert client.get(path, headers=auth(role)).status_code == 403


def test_keys_are_stored_hashed_never_in_clear(comps, redis_client, key_prefix):
    api_key = comps.api_keys.create("app", name="wallet-ios")
    stored = redis_client.hgetall(f"{key_prefix}:{{auth}}:api_keys")
    assert hashlib.sha256(api_key.encode()).hexdigest().encode() in stored
    assert api_key.encode() not in b"".join(list(stored) + list(stored.values()))


def test_a_bad_or_expired_user_token_is_401_never_a_silent_visitor(demo_app, client, auth, comps):
    forged = comps.user_tokens.mint("u1") + "x"
    response = client.get("/v1/layout?page=home", headers=auth("app", **{"X-User-Token": forged}))
    assert response.status_code == 401 and "X-User-Token" in response.get_json()["errors"]
    from wallet_market.services.tokens import TokenSigner

    expired = TokenSigner(comps.settings.secret_key, salt="wallet-market.user").sign({"u": "u1"}, ttl_seconds=-5)
    response = client.get("/v1/layout?page=home", headers=auth("app", **{"X-User-Token": expired}))
    assert response.status_code == 401 and response.get_json()["errors"]["X-User-Token"] == ["expired"]


def test_a_token_signed_with_another_secret_is_refused(demo_app, client, auth):
    from wallet_market.services.tokens import UserTokens

    other = UserTokens("another-secret-another-secret-000", 600).mint("u1")
    assert client.get("/v1/layout?page=home", headers=auth("app", **{"X-User-Token": other})).status_code == 401


def test_rate_limit_per_key(settings_overrides):
    from wallet_market.app import create_app

    app = create_app({**settings_overrides, "rate_limit_per_minute": 3}, start_background=False)
    try:
        key = app.extensions["wallet_market"].api_keys.create("pm")
        client = app.test_client()
        codes = [client.get("/admin/v1/rulesets", headers={"Authorization": f"Bearer {key}"}).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    finally:
        app.extensions["wallet_market"].close()
