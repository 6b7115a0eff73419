"""GET /v1/layout: the contract of docs/api.md, signed impressions, one Redis round trip, degraded serving."""
import pytest
import redis
from redis.cluster import RedisCluster

from wallet_market.services.tokens import InvalidToken

CARD_FIELDS = {
    "product_id", "owner", "action_url", "title", "lender_name", "licence_id", "limit_min_fen", "limit_max_fen",
    "apr_min_bps", "apr_max_bps", "term_min_days", "term_max_days", "promo", "disclosure",
}
PARTNERS = ["beichen_bank", "donghai_bank", "haoyue_mcl", "nanfeng_bank", "qingshan_bank", "xingyun_cf"]


def _prime_user(client, auth, comps, user_id="u-prime", **changes):
    profile = {
        "risk_tier": "A",
        "in_house_decision": {"status": "approved", "decided_at": "2026-01-10"},
        "consents": {"personalized": True, "share_with_partners": PARTNERS},
        "age": 31,
        "region": "guangdong",
    }
    profile.update(changes)
    assert client.put(f"/v1/users/{user_id}", json=profile, headers=auth("internal")).status_code == 200
    return comps.user_tokens.mint(user_id)


def test_layout_has_the_contract_shape(demo_app, client, auth, comps):
    body = client.get("/v1/layout?page=home", headers=auth("app")).get_json()
    assert set(body) >= {"page", "decision_id", "ruleset_version", "personalized", "slots"}
    assert body["page"] == "home" and body["ruleset_version"] == 1
    for position, slot in enumerate(body["slots"]):
        assert set(slot) == {"slot", "position", "product", "impression_token"}
        assert CARD_FIELDS <= set(slot["product"])
        assert slot["position"] >= position


def test_visitor_gets_the_in_house_loan_and_the_prime_user_a_partner_loan_on_top(demo_app, client, auth, comps):
    visitor = client.get("/v1/layout?page=home", headers=auth("app")).get_json()
    assert visitor["slots"][0]["product"]["product_id"] == "inhouse_loan"
    assert all(s["product"]["owner"] == "in_house" for s in visitor["slots"])  # partners need a login
    token = _prime_user(client, auth, comps)
    logged_in = client.get("/v1/layout?page=home", headers=auth("app", **{"X-User-Token": token})).get_json()
    assert logged_in["slots"][0]["product"]["product_id"] == "xingyun_loan"
    assert len({s["product"]["product_id"] for s in logged_in["slots"]}) == len(logged_in["slots"])


def test_each_impression_token_names_decision_slot_product_version_and_user(demo_app, client, auth, comps):
    token = _prime_user(client, auth, comps)
    body = client.get("/v1/layout?page=home", headers=auth("app", **{"X-User-Token": token})).get_json()
    for slot in body["slots"]:
        impression = comps.impression_tokens.verify(slot["impression_token"])
        assert impression.decision_id == body["decision_id"]
        assert (impression.slot_id, impression.position) == (slot["slot"], slot["position"])
        assert impression.product_id == slot["product"]["product_id"]
        assert impression.ruleset_version == body["ruleset_version"]
        assert impression.user_id == "u-prime" and impression.risk_tier == "A"
    tampered = body["slots"][0]["impression_token"].replace("ey", "eX", 1)
    try:
        comps.impression_tokens.verify(tampered)
    except InvalidToken as exc:
        assert exc.reason in ("bad_signature", "malformed")
    else:
        raise AssertionError("a tampered impression token verified")


def test_unknown_page_is_404_and_bad_query_names_the_field(demo_app, client, auth):
    response = client.get("/v1/layout?page=nowhere", headers=auth("app"))
    assert response.status_code == 404 and response.get_json()["errors"] == {"page": ["unknown page"]}
    response = client.get("/v1/layout", headers=auth("app"))
    assert response.status_code == 422 and "page" in response.get_json()["errors"]["query"]
    response = client.get("/v1/layout?page=home&app_version=latest", headers=auth("app"))
    assert response.status_code == 422 and "app_version" in response.get_json()["errors"]["query"]


def test_query_strings_are_checked_once_and_a_refused_one_stays_refused(demo_app, client, auth):
    from wallet_market.api import app_api

    good = "/v1/layout?page=home&device_model=pura-70&app_version=5.2.0"
    first = client.get(good, headers=auth("app"))
    assert first.status_code == 200
    assert app_api._layout_queries[b"page=home&device_model=pura-70&app_version=5.2.0"]["app_version"] == "5.2.0"
    again = client.get(good, headers=auth("app"))
    assert again.status_code == 200 and again.get_json()["page"] == "home"
    bad = "/v1/layout?page=home&app_version=5..0"
    for _ in range(2):  # a refused string is never kept: the second ask is checked, and refused, again
        response = client.get(bad, headers=auth("app"))
        assert response.status_code == 422 and "app_version" in response.get_json()["errors"]["query"]
    assert b"page=home&app_version=5..0" not in app_api._layout_queries
    with pytest.raises(TypeError):
        app_api._layout_queries[b"page=home&device_model=pura-70&app_version=5.2.0"]["page"] = "other"


def test_a_known_query_string_is_not_parsed_again(demo_app):
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from wallet_market.api import app_api

    def request_for(query: str) -> Request:
        return Request(EnvironBuilder(path="/v1/layout", query_string=query).get_environ())

    first = request_for("page=home&region=shanghai")
    assert app_api.layout_query_args(first)["region"] == "shanghai"
    assert "args" in first.__dict__  # werkzeug keeps the parsed query on the request once it is read
    again = request_for("page=home&region=shanghai")
    assert app_api.layout_query_args(again)["region"] == "shanghai"
    assert "args" not in again.__dict__


def test_a_layout_makes_at_most_one_redis_round_trip(demo_app, client, auth, comps, monkeypatch):
    """One pipeline: on a single Redis one round trip, on a cluster at most one to each node."""
    token = _prime_user(client, auth, comps)
    client.get("/v1/layout?page=home", headers=auth("app"))  # the key is now cached
    client_of_layouts = comps.layouts.client
    if isinstance(client_of_layouts, RedisCluster):
        pools = [node.redis_connection.connection_pool for node in client_of_layouts.get_nodes()]
    else:
        pools = [client_of_layouts.connection_pool]
    sends: list[int] = []
    lookups: list[int] = []

    def counting(pool_index, original):
        def get_connection(*args, **kwargs):
            connection = original(*args, **kwargs)
            if getattr(connection, "_counted", False):
                return connection
            connection._counted = True
            original_send = connection.send_packed_command

            def send(command, *a, **k):
                packed = command if isinstance(command, bytes) else b"".join(command)
                if b"\r\nCOMMAND\r\n$7\r\nGETKEYS\r\n" in packed[:40]:
                    # redis-py's cluster pipeline asks a node for a script call's keys before
                    # sending the pipeline: a lookup of the client library's, not a read of ours
                    lookups.append(pool_index)
                    return original_send(command, *a, **k)
                sends.append(pool_index)
                return original_send(command, *a, **k)

            connection.send_packed_command = send
            return connection

        return get_connection

    for index, pool in enumerate(pools):
        monkeypatch.setattr(pool, "get_connection", counting(index, pool.get_connection))
    for headers in (auth("app"), auth("app", **{"X-User-Token": token})):
        sends.clear()
        lookups.clear()
        assert client.get("/v1/layout?page=home", headers=headers).status_code == 200
        assert sends and len(sends) == len(set(sends)), f"{len(sends)} round trips to {len(set(sends))} node(s)"
        assert len(lookups) <= (1 if isinstance(client_of_layouts, RedisCluster) else 0)  # the key check's one script


def test_redis_down_serves_from_the_snapshot_marked_degraded(demo_app, client, auth, comps):
    token = _prime_user(client, auth, comps)
    assert client.get("/v1/layout?page=home", headers=auth("app")).status_code == 200
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    comps.layouts.client = dead
    before = _metric(client, "wallet_market_degraded_layouts_total")
    response = client.get("/v1/layout?page=home", headers=auth("app", **{"X-User-Token": token}))
    assert response.status_code == 200
    body = response.get_json()
    assert body["degraded"] is True and body["slots"]
    # without the profile the user is treated safely: no personalisation, no partner without consent
    assert body["personalized"] is False
    assert all(s["product"]["owner"] == "in_house" for s in body["slots"])
    assert _metric(client, "wallet_market_degraded_layouts_total") == before + 1


def test_personalisation_off_gives_the_editorial_layout_whatever_the_risk_tier(demo_app, client, auth, comps):
    layouts = []
    for tier in ("A", "D"):
        token = _prime_user(client, auth, comps, user_id=f"u-{tier}", risk_tier=tier, consents={"personalized": False, "share_with_partners": PARTNERS})
        body = client.get("/v1/layout?page=home", headers=auth("app", **{"X-User-Token": token})).get_json()
        assert body["personalized"] is False
        layouts.append([s["product"]["product_id"] for s in body["slots"]])
    assert layouts[0] == layouts[1]


def test_guard_6_profile_refuses_a_clear_phone_number(client, auth):
    response = client.put("/v1/users/u1", json={"risk_tier": "A", "phone": "13800138000"}, headers=auth("internal"))
    assert response.status_code == 422 and "phone" in response.get_json()["errors"]["json"]
    response = client.put("/v1/users/u1", json={"phone_sha256": "13800138000"}, headers=auth("internal"))
    assert response.status_code == 422 and "phone_sha256" in response.get_json()["errors"]["json"]


def _metric(client, name):
    text = client.get("/metrics").get_data(as_text=True)
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
