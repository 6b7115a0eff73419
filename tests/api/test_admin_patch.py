"""Changing draft entities a field at a time: merge patches, entity tags and If-Match, kept secrets, no-op publishes."""
from tests.catalogue_builders import admin_catalogue, admin_partner

MERGE = "application/merge-patch+json"


def _load(client, auth, body=None):
    body = body or admin_catalogue()
    for kind in ("partners", "products", "pages", "rules"):
        for entity in body[kind]:
            response = client.post(f"/admin/v1/{kind}", json=entity, headers=auth("pm"))
            assert response.status_code == 201, response.get_json()


def _patch(client, auth, path, body, content_type=MERGE, **headers):
    return client.patch(path, json=body, headers={**auth("pm"), "Content-Type": content_type, **headers})


def test_patch_changes_one_field_and_keeps_the_rest(client, auth):
    _load(client, auth)
    before = client.get("/admin/v1/products/lender_a_loan", headers=auth("pm")).get_json()
    response = _patch(client, auth, "/admin/v1/products/lender_a_loan", {"title": "Faster loan", "funnel": {"ctr_bps": 450}})
    assert response.status_code == 200, response.get_json()
    after = response.get_json()
    assert after["title"] == "Faster loan"
    assert after["funnel"] == {**before["funnel"], "ctr_bps": 450}  # a nested object merges key by key
    assert {k: v for k, v in after.items() if k not in ("title", "funnel")} == {
        k: v for k, v in before.items() if k not in ("title", "funnel")
    }
    assert client.get("/admin/v1/products/lender_a_loan", headers=auth("pm")).get_json() == after


def test_patch_accepts_plain_json_and_null_removes_a_field(client, auth):
    _load(client, auth)
    set_url = _patch(
        client, auth, "/admin/v1/partners/lender_a", {"prescreen_url": "http://127.0.0.1:9/p"}, content_type="application/json"
    )
    assert set_url.status_code == 200 and set_url.get_json()["prescreen_url"] == "http://127.0.0.1:9/p"
    cleared = _patch(client, auth, "/admin/v1/partners/lender_a", {"prescreen_url": None})
    assert cleared.status_code == 200 and cleared.get_json()["prescreen_url"] is None


def test_patch_is_validated_like_put_and_nothing_is_half_written(client, auth):
    _load(client, auth)
    before = client.get("/admin/v1/products/lender_a_loan", headers=auth("pm")).get_json()
    shape = _patch(client, auth, "/admin/v1/products/lender_a_loan", {"title": "ok", "funnel": {"ctr_bps": 20_000}})
    assert shape.status_code == 422
    assert shape.get_json()["errors"]["json"]["funnel"]["ctr_bps"]
    guard = _patch(client, auth, "/admin/v1/products/lender_a_loan", {"title": "ok", "apr_max_bps": 3600})
    assert guard.status_code == 422 and any("apr_max_bps" in field for field in guard.get_json()["errors"])
    removed = _patch(client, auth, "/admin/v1/products/lender_a_loan", {"disclosure": None})
    assert removed.status_code == 422 and "disclosure" in removed.get_json()["errors"]["json"]
    renamed = _patch(client, auth, "/admin/v1/products/lender_a_loan", {"product_id": "other"})
    assert renamed.status_code == 422 and "product_id" in renamed.get_json()["errors"]
    assert client.get("/admin/v1/products/lender_a_loan", headers=auth("pm")).get_json() == before


def test_patch_refuses_what_is_not_a_merge_patch(client, auth):
    _load(client, auth)
    listed = _patch(client, auth, "/admin/v1/pages/home", [{"title": "x"}])
    assert listed.status_code == 400 and listed.get_json()["errors"]["json"]
    wrong_type = client.patch(
        "/admin/v1/pages/home", data="title=x", headers={**auth("pm"), "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert wrong_type.status_code == 415 and "Content-Type" in wrong_type.get_json()["errors"]
    assert _patch(client, auth, "/admin/v1/pages/nowhere", {"title": "x"}).status_code == 404


def test_answers_carry_an_etag_that_if_match_checks(client, auth):
    _load(client, auth)
    read = client.get("/admin/v1/pages/home", headers=auth("pm"))
    etag = read.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10
    assert client.get("/admin/v1/pages/home", headers=auth("pm")).headers["ETag"] == etag  # a hash of what is stored
    created = client.post("/admin/v1/pages", json={"page_id": "other", "slots": [{"slot_id": "a"}]}, headers=auth("pm"))
    assert created.headers["ETag"] == client.get("/admin/v1/pages/other", headers=auth("pm")).headers["ETag"]

    changed = _patch(client, auth, "/admin/v1/pages/home", {"title": "Home"}, **{"If-Match": etag})
    assert changed.status_code == 200
    new_etag = changed.headers["ETag"]
    assert new_etag != etag
    assert client.get("/admin/v1/pages/home", headers=auth("pm")).headers["ETag"] == new_etag

    # A change based on the older read is refused, naming If-Match, and nothing changes.
    stale = _patch(client, auth, "/admin/v1/pages/home", {"title": "Stale"}, **{"If-Match": etag})
    assert stale.status_code == 412
    assert "If-Match" in stale.get_json()["errors"]
    page = client.get("/admin/v1/pages/home", headers=auth("pm")).get_json()
    stale_put = client.put("/admin/v1/pages/home", json={**page, "title": "Stale"}, headers={**auth("pm"), "If-Match": etag})
    assert stale_put.status_code == 412 and "If-Match" in stale_put.get_json()["errors"]
    stale_delete = client.delete("/admin/v1/pages/home", headers={**auth("pm"), "If-Match": etag})
    assert stale_delete.status_code == 412
    assert client.get("/admin/v1/pages/home", headers=auth("pm")).get_json()["title"] == "Home"

    put = client.put("/admin/v1/pages/home", json={**page, "title": "Put"}, headers={**auth("pm"), "If-Match": new_etag})
    assert put.status_code == 200 and put.headers["ETag"] not in (etag, new_etag)
    assert client.put("/admin/v1/pages/home", json={**page, "title": "Any"}, headers={**auth("pm"), "If-Match": "*"}).status_code == 200
    # Without If-Match the write goes ahead.
    assert _patch(client, auth, "/admin/v1/pages/home", {"title": "No precondition"}).status_code == 200
    current = client.get("/admin/v1/pages/home", headers=auth("pm")).headers["ETag"]
    assert client.delete("/admin/v1/pages/home", headers={**auth("pm"), "If-Match": current}).status_code == 204


def test_put_and_patch_without_a_signing_secret_keep_the_stored_one(client, auth, comps):
    created = client.post("/admin/v1/partners", json={**admin_partner(), "signing_secret": "first-secret-0123456789"}, headers=auth("pm"))
    assert created.status_code == 201
    assert client.put("/admin/v1/partners/lender_a", json=admin_partner(legal_name="Renamed"), headers=auth("pm")).status_code == 200
    assert comps.catalogue_store.partner_secret("lender_a") == "first-secret-0123456789"
    assert _patch(client, auth, "/admin/v1/partners/lender_a", {"timeout_ms": 500}).status_code == 200
    assert comps.catalogue_store.partner_secret("lender_a") == "first-secret-0123456789"
    rotated = _patch(client, auth, "/admin/v1/partners/lender_a", {"signing_secret": "second-secret-0123456789"})
    assert rotated.status_code == 200 and "signing_secret" not in rotated.get_json()
    assert comps.catalogue_store.partner_secret("lender_a") == "second-secret-0123456789"


def test_a_405_names_the_allowed_methods(client, auth):
    response = client.delete("/admin/v1/partners", headers=auth("pm"))
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert "DELETE" not in response.headers["Allow"]
    assert response.get_json()["code"] == 405
    item = client.post("/admin/v1/partners/lender_a", json={}, headers=auth("pm"))
    assert item.status_code == 405 and "PATCH" in item.headers["Allow"]


def test_publishing_an_unchanged_draft_makes_no_new_version(client, auth):
    _load(client, auth)
    first = client.post("/admin/v1/rulesets/publish", json={"note": "first"}, headers=auth("pm"))
    assert first.status_code == 201 and first.get_json()["version"] == 1 and first.get_json()["published"] is True
    for _ in range(2):
        again = client.post("/admin/v1/rulesets/publish", json={}, headers=auth("pm"))
        assert again.status_code == 200
        assert again.get_json() == {
            "version": 1,
            "published": False,
            "message": "the draft equals version 1; nothing to publish",
        }
    versions = client.get("/admin/v1/rulesets", headers=auth("pm")).get_json()
    assert versions["current"] == 1 and [v["version"] for v in versions["versions"]] == [1]
    _patch(client, auth, "/admin/v1/pages/home", {"title": "Changed"})
    changed = client.post("/admin/v1/rulesets/publish", json={}, headers=auth("pm"))
    assert changed.status_code == 201 and changed.get_json()["version"] == 2


def test_a_malformed_if_match_is_a_412_not_an_error(client, auth):
    _load(client, auth)
    response = _patch(client, auth, "/admin/v1/partners/lender_a", {"timeout_ms": 400}, **{"If-Match": '"abc", "", W/"1/0"'})
    assert response.status_code == 412, response.get_json()
    assert "If-Match" in response.get_json()["errors"]
    assert client.get("/admin/v1/partners/lender_a", headers=auth("pm")).get_json()["timeout_ms"] == 300
