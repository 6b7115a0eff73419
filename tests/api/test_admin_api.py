"""Catalogue administration over HTTP: schemas, guards at write time, publish, rollback, preview."""
from tests.catalogue_builders import admin_catalogue, admin_page, admin_partner, admin_product


def _load(client, auth, body=None):
    body = body or admin_catalogue()
    for kind in ("partners", "products", "pages", "rules"):
        for entity in body[kind]:
            response = client.post(f"/admin/v1/{kind}", json=entity, headers=auth("pm"))
            assert response.status_code == 201, response.get_json()


def test_create_read_update_delete_through_the_draft(client, auth):
    _load(client, auth)
    got = client.get("/admin/v1/products/lender_a_loan", headers=auth("pm")).get_json()
    assert got["settlement"] == {"model": "cps", "cps_rate_bps": 200, "fee_fen": 0, "transfer_price_bps": 0}
    changed = client.put(
        "/admin/v1/products/lender_a_loan", json=admin_product("lender_a_loan", "lender_a", title="Better loan"), headers=auth("pm")
    )
    assert changed.status_code == 200 and changed.get_json()["title"] == "Better loan"
    assert client.delete("/admin/v1/products/lender_b_loan", headers=auth("pm")).status_code == 204
    assert client.get("/admin/v1/products/lender_b_loan", headers=auth("pm")).status_code == 404


def test_guard_10_bad_input_is_a_4xx_naming_the_field(client, auth):
    response = client.post("/admin/v1/partners", json={**admin_partner(), "licence_type": "pawnshop"}, headers=auth("pm"))
    assert response.status_code == 422
    assert "licence_type" in response.get_json()["errors"]["json"]
    response = client.post("/admin/v1/partners", data="{not json", headers={**auth("pm"), "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500


def test_guard_violations_are_refused_at_write_naming_the_field(client, auth):
    _load(client, auth)
    response = client.post("/admin/v1/products", json=admin_product("usury", "lender_a", apr_max_bps=3600), headers=auth("pm"))
    assert response.status_code == 422
    assert any("apr_max_bps" in field for field in response.get_json()["errors"])
    assert client.get("/admin/v1/products/usury", headers=auth("pm")).status_code == 404


def test_the_signing_secret_is_write_only(client, auth):
    created = client.post("/admin/v1/partners", json={**admin_partner(), "signing_secret": "0123456789abcdef-secret"}, headers=auth("pm"))
    assert created.status_code == 201 and "signing_secret" not in created.get_json()
    listed = client.get("/admin/v1/partners", headers=auth("pm")).get_json()
    assert "0123456789abcdef-secret" not in repr(listed)


def test_publish_then_layouts_use_the_new_version_and_rollback_restores(client, auth, comps):
    _load(client, auth)
    first = client.post("/admin/v1/rulesets/publish", json={"note": "first"}, headers=auth("pm"))
    assert first.status_code == 201 and first.get_json()["version"] == 1
    comps.snapshots.refresh()
    layout = client.get("/v1/layout?page=home", headers=auth("app")).get_json()
    assert layout["ruleset_version"] == 1
    client.delete("/admin/v1/pages/home", headers=auth("pm"))
    client.post("/admin/v1/pages", json=admin_page("home", title="v2", slots=[{"slot_id": "only"}]), headers=auth("pm"))
    assert client.post("/admin/v1/rulesets/publish", json={}, headers=auth("pm")).get_json()["version"] == 2
    comps.snapshots.refresh()
    assert [s["slot"] for s in client.get("/v1/layout?page=home", headers=auth("app")).get_json()["slots"]] == ["only"]
    rolled = client.post("/admin/v1/rulesets/rollback", json={"version": 1}, headers=auth("pm"))
    assert rolled.status_code == 201 and rolled.get_json()["rollback_of"] == 1
    comps.snapshots.refresh()
    layout = client.get("/v1/layout?page=home", headers=auth("app")).get_json()
    assert layout["ruleset_version"] == 3 and layout["slots"][0]["slot"] == "top"
    versions = client.get("/admin/v1/rulesets", headers=auth("pm")).get_json()
    assert versions["current"] == 3 and [v["version"] for v in versions["versions"]] == [1, 2, 3]
    assert client.post("/admin/v1/rulesets/rollback", json={"version": 99}, headers=auth("pm")).status_code == 404


def test_preview_explains_every_candidate(demo_app, client, auth):
    response = client.post(
        "/admin/v1/preview",
        json={"page": "home", "user": {"risk_tier": "A", "consents": {"share_with_partners": ["xingyun_cf"]}}},
        headers=auth("pm"),
    )
    assert response.status_code == 200
    body = response.get_json()
    outcomes = {e["product_id"]: e for e in body["explanation"]}
    assert outcomes["xingyun_loan"]["outcome"] == "chosen" and outcomes["xingyun_loan"]["slot_id"] == "top_banner"
    # no consent to share with the other card issuers: filtered, and the reason says so
    assert outcomes["donghai_card"]["outcome"] == "filtered" and outcomes["donghai_card"]["filtered_by"] == "no_consent"
    assert set(outcomes) == set(demo_app.extensions["wallet_market"].snapshots.current.built.catalogue.products)


def test_audit_log_over_http(client, auth):
    _load(client, auth)
    entries = client.get("/admin/v1/audit", headers=auth("pm")).get_json()["entries"]
    newest = entries[0]
    assert (newest["action"], newest["kind"], newest["id"]) == ("create", "pages", "home")
    assert all(e["actor"].startswith("pm:") for e in entries)


def test_openapi_document_and_docs_page(client):
    spec = client.get("/openapi.json").get_json()
    for path in ("/v1/layout", "/admin/v1/products", "/admin/v1/rulesets/publish", "/admin/v1/preview", "/v1/users/{user_id}"):
        assert path in spec["paths"], path
    assert client.get("/docs").status_code == 200
