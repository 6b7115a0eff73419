"""One style of answer: ISO 8601 UTC times, UTF-8 JSON, empty 204s, honest flags and reasons."""
from datetime import datetime, timedelta, timezone

from tests.catalogue_builders import admin_catalogue, admin_partner


def _load(client, auth, body):
    for kind in ("partners", "products", "pages", "rules"):
        for entity in body[kind]:
            assert client.post(f"/admin/v1/{kind}", json=entity, headers=auth("pm")).status_code == 201


def _recent_utc(text: str) -> datetime:
    assert isinstance(text, str) and text.endswith("Z"), text
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert abs(datetime.now(timezone.utc) - moment) < timedelta(minutes=5)
    return moment


def test_published_at_and_audit_times_are_iso_8601_utc(client, auth):
    _load(client, auth, admin_catalogue())
    published = client.post("/admin/v1/rulesets/publish", json={}, headers=auth("pm")).get_json()
    _recent_utc(published["published_at"])
    listed = client.get("/admin/v1/rulesets", headers=auth("pm")).get_json()
    assert listed["versions"][0]["published_at"] == published["published_at"]
    entries = client.get("/admin/v1/audit", headers=auth("pm")).get_json()["entries"]
    assert entries and all(_recent_utc(entry["at"]) for entry in entries)


def test_json_is_utf8_not_escaped(demo_app, client, auth):
    response = client.get("/admin/v1/partners/beichen_bank", headers=auth("pm"))
    assert response.status_code == 200
    assert "北辰银行".encode("utf-8") in response.data and b"\\u" not in response.data
    assert response.get_json()["legal_name"].startswith("北辰银行")


def test_a_204_has_no_body_and_no_json_content_type(client, auth):
    _load(client, auth, {"partners": [admin_partner("lender_z")], "products": [], "pages": [], "rules": []})
    response = client.delete("/admin/v1/partners/lender_z", headers=auth("pm"))
    assert response.status_code == 204
    assert response.data == b"" and "Content-Type" not in response.headers


def test_a_visitors_layout_is_not_personalized(demo_app, client, auth, comps):
    visitor = client.get("/v1/layout?page=home", headers=auth("app")).get_json()
    assert visitor["personalized"] is False
    profile = {"risk_tier": "A", "consents": {"personalized": True, "share_with_partners": []}}
    assert client.put("/v1/users/u-style", json=profile, headers=auth("internal")).status_code == 200
    token = comps.user_tokens.mint("u-style")
    user = client.get("/v1/layout?page=home", headers={**auth("app"), "X-User-Token": token}).get_json()
    assert user["personalized"] is True
    preview = client.post("/admin/v1/preview", json={"page": "home", "user": {"logged_in": False}}, headers=auth("pm"))
    assert preview.get_json()["personalized"] is False


def test_decided_at_takes_a_date_or_a_full_timestamp(client, auth):
    def put(decided_at):
        body = {"risk_tier": "B", "in_house_decision": {"status": "declined", "decided_at": decided_at}}
        return client.put("/v1/users/u-decided", json=body, headers=auth("internal"))

    assert put("2026-03-01").get_json()["in_house_decision"]["decided_at"] == "2026-03-01"
    # 23:30 at UTC−2 is already the next day in UTC, the day the cool-down counts in.
    stamped = put("2026-03-01T23:30:00-02:00")
    assert stamped.status_code == 200, stamped.get_json()
    assert stamped.get_json()["in_house_decision"]["decided_at"] == "2026-03-02"
    assert put("2026-03-05T08:00:00Z").get_json()["in_house_decision"]["decided_at"] == "2026-03-05"
    read = client.get("/v1/users/u-decided", headers=auth("internal")).get_json()
    assert read["in_house_decision"]["decided_at"] == "2026-03-05"
    bad = put("2026-13-01T00:00:00")
    assert bad.status_code == 422
    assert "decided_at" in bad.get_json()["errors"]["json"]["in_house_decision"]


def test_an_ineligible_prescreen_answer_is_explained_as_such(client, auth):
    body = admin_catalogue()
    body["partners"][0]["prescreen_url"] = "http://127.0.0.1:9/prescreen"
    _load(client, auth, body)

    def filtered_by(answer):
        user = {"risk_tier": "A", "consents": {"share_with_partners": ["lender_a"]}, "prescreen": {"lender_a": answer}}
        response = client.post("/admin/v1/preview", json={"page": "home", "draft": True, "user": user}, headers=auth("pm"))
        assert response.status_code == 200, response.get_json()
        outcomes = {e["product_id"]: e for e in response.get_json()["explanation"]}
        return outcomes["lender_a_loan"]["filtered_by"]

    assert filtered_by("ineligible") == "prescreen:ineligible"
    assert filtered_by("existing") == "prescreen:existing"
    assert filtered_by("failed:timeout") == "prescreen:failed"
    assert filtered_by("new") is None
