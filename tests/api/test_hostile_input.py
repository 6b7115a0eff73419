"""Nothing a stranger or a typo sends is answered with a 5xx: each is a 4xx JSON naming the field or header."""
import io
import json

import orjson
import pytest

from partner_fakes import XINGYUN_SECRET, configure_partner
from wallet_market.domain.signing import signed_headers

NESTED = b'{"a": ' * 1000 + b"1" + b"}" * 1000


def _error(response, status):
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.is_json, response.get_data(as_text=True)[:200]
    return response.get_json()


def _partner(client, auth):
    return client.get("/admin/v1/partners/xingyun_cf", headers=auth("pm")).get_json()


# -- signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/partner/v1/postbacks", "/partner/v1/joint-login/exchange"])
def test_a_non_ascii_signature_is_a_401_naming_the_header(demo_app, client, auth, comps, path):
    configure_partner(client, auth, comps, "xingyun_cf", signing_secret=XINGYUN_SECRET)
    body = b'{"token": "x"}'
    headers = signed_headers("xingyun_cf", XINGYUN_SECRET, body)
    headers["X-Signature"] = "é" * 64
    body_json = _error(client.post(path, data=body, headers={**headers, "Content-Type": "application/json"}), 401)
    assert "X-Signature" in body_json["errors"]


@pytest.mark.parametrize("path", ["/partner/v1/postbacks", "/partner/v1/joint-login/exchange"])
def test_a_non_ascii_timestamp_is_a_401(demo_app, client, auth, comps, path):
    configure_partner(client, auth, comps, "xingyun_cf", signing_secret=XINGYUN_SECRET)
    headers = {"X-Partner-Id": "xingyun_cf", "X-Timestamp": "١٧٠٠٠٠٠٠٠٠", "X-Signature": "0" * 64}
    _error(client.post(path, data=b"{}", headers=headers), 401)


# -- numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [("daily_lead_cap", 2**70), ("daily_approval_cap", 2**64 + 1), ("daily_lead_cap", 2**63), ("timeout_ms", 2**65)],
)
def test_integers_beyond_64_bits_or_any_sane_cap_are_a_422_naming_the_field(demo_app, client, auth, field, value):
    partner = {**_partner(client, auth), field: value}
    raw = json.dumps(partner).encode()  # the standard library writes big integers exactly
    response = client.put("/admin/v1/partners/xingyun_cf", data=raw, headers=auth("pm", **{"Content-Type": "application/json"}))
    assert field in _error(response, 422)["errors"]["json"]


@pytest.mark.parametrize("value", [99.99, 99.0, "99", True])
def test_money_is_an_integer_or_a_422_never_truncated(demo_app, client, auth, value):
    product = client.get("/admin/v1/products/xingyun_loan", headers=auth("pm")).get_json()
    product["settlement"]["fee_fen"] = value
    response = client.put("/admin/v1/products/xingyun_loan", json=product, headers=auth("pm"))
    assert "fee_fen" in _error(response, 422)["errors"]["json"]["settlement"]
    stored = client.get("/admin/v1/products/xingyun_loan", headers=auth("pm")).get_json()
    assert stored["settlement"]["fee_fen"] != 99


def test_a_rollback_to_a_version_beyond_64_bits_is_a_422(demo_app, client, auth):
    raw = json.dumps({"version": 2**80}).encode()
    response = client.post("/admin/v1/rulesets/rollback", data=raw, headers=auth("pm", **{"Content-Type": "application/json"}))
    assert "version" in _error(response, 422)["errors"]["json"]


@pytest.mark.parametrize("occurred_at", [1e300, -1e300, -1, 2**70, "0001-01-01T00:00:00-23:59"])
def test_an_event_time_outside_any_calendar_is_a_422_naming_it(demo_app, client, auth, occurred_at):
    raw = json.dumps({"events": [{"type": "impression", "impression_token": "t", "occurred_at": occurred_at}]}).encode()
    response = client.post("/v1/events", data=raw, headers=auth("app", **{"Content-Type": "application/json"}))
    assert "events.0.occurred_at" in _error(response, 422)["errors"]


# -- JSON itself ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path, role",
    [
        ("post", "/admin/v1/rules", "pm"),
        ("put", "/v1/users/u-deep", "internal"),
        ("post", "/v1/events", "app"),
        ("post", "/finance/v1/compare", "finance"),
        ("post", "/admin/v1/preview", "pm"),
    ],
)
def test_json_nested_a_thousand_deep_is_a_400_naming_json(demo_app, client, auth, method, path, role):
    response = getattr(client, method)(path, data=NESTED, headers=auth(role, **{"Content-Type": "application/json"}))
    assert "json" in _error(response, 400)["errors"]


def test_a_rule_condition_nested_too_deep_is_refused_before_it_is_stored(demo_app, client, auth):
    condition = {"region": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}
    rule = {"rule_id": "deep", "action": "pin", "product_id": "xingyun_loan", "slot_id": "top", "page_id": "home",
            "condition": condition}
    response = client.post("/admin/v1/rules", json=rule, headers=auth("pm"))
    assert "json" in _error(response, 400)["errors"]
    assert client.get("/admin/v1/rules/deep", headers=auth("pm")).status_code == 404


def test_a_lone_surrogate_in_a_secret_is_a_400_and_nothing_is_stored(demo_app, client, auth, comps):
    partner = {**_partner(client, auth), "signing_secret": "abcdefghijklmnop\\ud800"}
    raw = json.dumps(partner).replace("\\\\ud800", "\\ud800").encode()
    assert b"\\ud800" in raw
    response = client.put("/admin/v1/partners/xingyun_cf", data=raw, headers=auth("pm", **{"Content-Type": "application/json"}))
    assert "json" in _error(response, 400)["errors"]
    assert comps.catalogue_store.partner_secret("xingyun_cf") is None


@pytest.mark.parametrize(
    "method, path, role",
    [("put", "/v1/users/u1", "internal"), ("post", "/admin/v1/preview", "pm"), ("post", "/finance/v1/compare", "finance")],
)
def test_a_lone_surrogate_anywhere_in_a_body_is_a_400(demo_app, client, auth, method, path, role):
    raw = b'{"region": "\\udc80", "page": "home", "name": "\\ud800x", "segments": []}'
    response = getattr(client, method)(path, data=raw, headers=auth(role, **{"Content-Type": "application/json"}))
    assert "json" in _error(response, 400)["errors"]


def test_a_body_larger_than_the_limit_is_a_413_json(app, client, auth):
    limit = app.config["MAX_CONTENT_LENGTH"]
    assert limit == 1_048_576  # the default setting
    raw = b'{"events": [' + b'{"type": "click", "impression_token": "x"},' * (limit // 40) + b"{}]}"
    response = client.post("/v1/events", data=raw, headers=auth("app", **{"Content-Type": "application/json"}))
    body = _error(response, 413)
    assert "body" in body["errors"]


def test_a_chunked_body_past_the_limit_is_a_413_json(app, client, auth):
    limit = app.config["MAX_CONTENT_LENGTH"]
    raw = b'{"events": [' + b" " * (limit + 10) + b"]}"
    response = client.post(
        "/v1/events",
        input_stream=io.BytesIO(raw),
        headers=auth("app", **{"Content-Type": "application/json", "Transfer-Encoding": "chunked"}),
        environ_overrides={"wsgi.input_terminated": True},  # as a server that de-chunks the body says
    )
    _error(response, 413)


# -- bodies that must be there --------------------------------------------------------------


def test_an_empty_body_put_of_a_profile_is_a_400_and_keeps_the_profile(demo_app, client, auth):
    profile = {"risk_tier": "A", "consents": {"personalized": True, "share_with_partners": ["xingyun_cf"]}, "age": 30}
    assert client.put("/v1/users/u-keep", json=profile, headers=auth("internal")).status_code == 200
    for extra in ({}, {"Content-Type": "application/json"}, {"Content-Type": "text/plain"}):
        response = client.put("/v1/users/u-keep", data=b"", headers=auth("internal", **extra))
        assert "json" in _error(response, 400)["errors"]
    kept = client.get("/v1/users/u-keep", headers=auth("internal")).get_json()
    assert kept["risk_tier"] == "A" and kept["consents"]["share_with_partners"] == ["xingyun_cf"]


def test_a_json_body_sent_without_its_content_type_is_still_read_as_json(demo_app, client, auth):
    raw = orjson.dumps({"risk_tier": "B", "age": 40})
    response = client.put("/v1/users/u-plain", data=raw, headers=auth("internal", **{"Content-Type": "text/plain"}))
    assert response.status_code == 200 and response.get_json()["risk_tier"] == "B"


# -- finance scenarios ----------------------------------------------------------------------


def test_a_scenario_with_thousands_of_segments_is_a_422_naming_segments(demo_app, client, auth):
    segments = [{"name": f"s{i}", "risk_tier": "A", "logged_in": True, "impressions": 1000} for i in range(4000)]
    response = client.post("/finance/v1/compare", json={"name": "big", "segments": segments}, headers=auth("finance"))
    errors = _error(response, 422)["errors"]
    assert list(errors) == ["segments"] and "at most 100" in errors["segments"][0]


def test_a_scenario_with_too_many_products_is_a_422_naming_products(demo_app, client, auth):
    scenario = {
        "name": "wide",
        "segments": [{"name": "a", "risk_tier": "A", "logged_in": True, "impressions": 1000}],
        "products": [f"p{i}" for i in range(51)],
    }
    response = client.post("/finance/v1/compare", json=scenario, headers=auth("finance"))
    assert "products" in _error(response, 422)["errors"]


def test_scenario_impressions_and_money_have_an_upper_bound(demo_app, client, auth):
    scenario = {
        "name": "huge",
        "segments": [{"name": "a", "risk_tier": "A", "logged_in": True, "impressions": 10**13}],
        "overrides": {"xingyun_loan": {"funnel": {"avg_loan_fen": 10**13}}},
    }
    errors = _error(client.post("/finance/v1/compare", json=scenario, headers=auth("finance")), 422)["errors"]
    assert {"segments[0].impressions", "overrides.xingyun_loan.funnel.avg_loan_fen"} <= set(errors)


def test_a_scenario_product_that_is_not_a_string_is_a_422_naming_it(demo_app, client, auth):
    scenario = {"name": "n", "segments": [{"name": "a", "logged_in": False, "impressions": 0}], "products": [{}, []]}
    errors = _error(client.post("/finance/v1/compare", json=scenario, headers=auth("finance")), 422)["errors"]
    assert {"products[0]", "products[1]"} <= set(errors)


@pytest.mark.parametrize("value", [0, 1, "true", None])
def test_a_boolean_is_true_or_false_only(demo_app, client, auth, value):
    body = {"risk_tier": "A", "consents": {"personalized": value, "share_with_partners": []}}
    response = client.put("/v1/users/u-bool", json=body, headers=auth("internal"))
    assert "consents" in _error(response, 422)["errors"]["json"]
