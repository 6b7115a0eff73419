"""Product managers' console pages: partial edits through the admin service, guard errors by field, draft diff,
publish, rollback, audit, preview and the data-share log."""
from __future__ import annotations

import re

from tests.console_fixtures import PROFILE


def _field_block(html: str, name: str) -> str:
    match = re.search(rf'<div class="field[^"]*" data-field="{re.escape(name)}">(.*?)</div>\s*(?=<div class="field|</div>)', html, re.S)
    assert match, f"no field {name}"
    return match.group(1)


def test_an_edit_merges_only_the_submitted_fields(pm, comps):
    before = comps.admin.get("products", "xingyun_loan")
    response = pm.post("/console/catalogue/products/xingyun_loan", {"promo": "最高可借30万元，新用户15天免息"})
    assert response.status_code == 303
    after = comps.admin.get("products", "xingyun_loan")
    assert after == {**before, "promo": "最高可借30万元，新用户15天免息"}
    page = pm.get(response.headers["Location"]).get_data(as_text=True)
    assert "Saved product xingyun_loan to the draft." in page


def test_nested_and_tiered_fields_are_merged_into_their_objects(pm, comps):
    before = comps.admin.get("products", "inhouse_loan")
    response = pm.post("/console/catalogue/products/inhouse_loan", {
        "funnel.approval_rate_bps": "A=3600, B=2800, C=2000, D=1200", "lending.apr_bps": "1750",
        "eligibility.risk_tiers": ["", "A", "B"], "requires_login": ["0"],
    })
    assert response.status_code == 303, response.get_data(as_text=True)
    after = comps.admin.get("products", "inhouse_loan")
    assert after["funnel"] == {**before["funnel"], "approval_rate_bps": {"A": 3600, "B": 2800, "C": 2000, "D": 1200}}
    assert after["lending"] == {**before["lending"], "apr_bps": 1750}
    assert after["eligibility"]["risk_tiers"] == ["A", "B"]
    assert after["requires_login"] is False
    assert {k: v for k, v in after.items() if k not in ("funnel", "lending", "eligibility", "requires_login")} == {
        k: v for k, v in before.items() if k not in ("funnel", "lending", "eligibility", "requires_login")}


def test_a_guard_error_is_shown_next_to_its_field_and_nothing_is_written(pm, comps):
    before = comps.admin.get("products", "xingyun_loan")
    audit_before = comps.admin.audit(5)
    response = pm.post("/console/catalogue/products/xingyun_loan", {"promo": "日利率低至0.02%", "title": "星云借"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    promo = _field_block(html, "promo")
    assert 'class="field-errors" id="f-promo-error"' in promo
    assert "promo may not carry a rate of its own" in promo
    assert 'value="日利率低至0.02%"' in promo  # the submitted text is kept for correcting
    assert "field-errors" not in _field_block(html, "title")
    assert comps.admin.get("products", "xingyun_loan") == before
    assert comps.admin.audit(5) == audit_before


def test_a_shape_error_names_its_field(pm, comps):
    before = comps.admin.get("products", "xingyun_loan")
    response = pm.post("/console/catalogue/products/xingyun_loan", {"funnel.ctr_bps": "four", "apr_max_bps": "2600"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "enter a whole number" in _field_block(html, "funnel.ctr_bps")
    assert comps.admin.get("products", "xingyun_loan") == before
    # 26% passes the shape check (0–10000 bps) but not the 24% APR cap, a guard of the admin service
    response = pm.post("/console/catalogue/products/xingyun_loan", {"apr_max_bps": "2600"})
    assert response.status_code == 422
    assert "(apr_cap)" in _field_block(response.get_data(as_text=True), "apr_max_bps")
    assert comps.admin.get("products", "xingyun_loan") == before


def test_the_id_of_an_entity_is_not_edited(pm, comps):
    response = pm.post("/console/catalogue/products/xingyun_loan", {"product_id": "renamed", "promo": "新户专享"})
    assert response.status_code == 303
    assert comps.admin.get("products", "xingyun_loan")["promo"] == "新户专享"
    assert "renamed" not in {p["product_id"] for p in comps.admin.list("products")}


def test_create_and_delete_a_rule(pm, comps):
    response = pm.post("/console/catalogue/rules/new", {
        "rule_id": "boost_qingshan", "action": "boost", "product_id": "qingshan_loan", "factor_bps": "12000",
        "priority": "40", "enabled": ["0", "1"], "condition": '{"risk_tier": ["A"]}', "description": "提升青山",
        "page_id": "", "slot_id": "", "partner_id": "", "floor_rpm_fen": "", "max_slots": "",
        "window.starts_at": "", "window.ends_at": "",
    })
    assert response.status_code == 303, response.get_data(as_text=True)
    rule = comps.admin.get("rules", "boost_qingshan")
    assert rule["factor_bps"] == 12000 and rule["condition"] == {"risk_tier": ["A"]} and rule["enabled"] is True
    listing = pm.get("/console/catalogue/rules").get_data(as_text=True)
    assert 'id="row-boost_qingshan"' in listing
    response = pm.post("/console/catalogue/rules/boost_qingshan/delete")
    assert response.status_code == 303
    assert "boost_qingshan" not in {r["rule_id"] for r in comps.admin.list("rules")}


def test_a_create_that_breaks_a_reference_names_the_field(pm, comps):
    response = pm.post("/console/catalogue/rules/new", {
        "rule_id": "pin_missing", "action": "pin", "product_id": "no_such_loan", "slot_id": "top_banner",
        "page_id": "home", "priority": "5", "condition": "{}",
    })
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "no product &#39;no_such_loan&#39;" in _field_block(html, "product_id")
    assert "pin_missing" not in {r["rule_id"] for r in comps.admin.list("rules")}


def test_deleting_a_product_a_rule_needs_is_refused_with_the_reason(pm, comps):
    response = pm.post("/console/catalogue/products/inhouse_loan/delete")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'role="alert"' in html and "inhouse_loan" in html
    assert "inhouse_loan" in {p["product_id"] for p in comps.admin.list("products")}


def test_the_draft_page_shows_each_changed_field_against_the_published_version(pm):
    assert "The draft is the same as the published version." in pm.get("/console/draft").get_data(as_text=True)
    pm.post("/console/catalogue/products/xingyun_loan", {"promo": "新户专享", "funnel.ctr_bps": "450"})
    html = pm.get("/console/draft").get_data(as_text=True)
    section = re.search(r'data-kind="products" data-id="xingyun_loan">(.*?)</section>', html, re.S).group(1)
    assert sorted(re.findall(r'data-path="([^"]+)"', section)) == ["funnel.ctr_bps", "promo"]
    assert re.search(r'data-path="promo">.*?最高可借30万元，新用户7天免息.*?新户专享', section, re.S)
    assert re.search(r'data-path="funnel.ctr_bps">.*?>400<.*?>450<', section, re.S)


def test_publish_with_a_note_then_roll_back(pm, comps):
    pm.post("/console/catalogue/products/xingyun_loan", {"promo": "新户专享"})
    response = pm.post("/console/draft/publish", {"note": "春季活动"})
    assert response.status_code == 303 and response.headers["Location"] == "/console/versions"
    versions = comps.admin.versions()
    assert versions["current"] == 2 and versions["versions"][-1]["note"] == "春季活动"
    page = pm.get("/console/versions").get_data(as_text=True)
    assert "Published version 2." in page and 'id="version-1"' in page and "春季活动" in page
    response = pm.post("/console/versions/rollback", {"version": "1", "note": "撤回"})
    assert response.status_code == 303
    assert comps.admin.versions()["current"] == 3
    served = {p["product_id"]: p for p in comps.admin.published()["catalogue"]["products"]}
    assert served["xingyun_loan"]["promo"] == "最高可借30万元，新用户7天免息"
    assert comps.admin.get("products", "xingyun_loan")["promo"] == "最高可借30万元，新用户7天免息"
    assert "The draft is the same as the published version." in pm.get("/console/draft").get_data(as_text=True)
    audit = pm.get("/console/audit").get_data(as_text=True)
    assert "rollback" in audit and "publish" in audit and "新户专享" in audit


def test_rolling_back_to_an_unknown_version_is_refused(pm, comps):
    response = pm.post("/console/versions/rollback", {"version": "99"})
    assert response.status_code == 422
    assert "rule-set version 99 does not exist" in response.get_data(as_text=True)
    assert comps.admin.versions()["current"] == 1


def test_preview_shows_the_partner_loan_on_top_for_a_consenting_tier_a_user(pm):
    query = "submitted=1&page=home&logged_in=1&personalized=1&risk_tier=A&age=30&share_with_partners=xingyun_cf"
    response = pm.get(f"/console/preview?{query}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    slots = re.findall(r'<li class="card" data-slot="([^"]+)" data-product="([^"]+)">', html)
    assert slots[0] == ("top_banner", "xingyun_loan")
    assert "星云借·钱包专享" in html and "年化利率(单利) 7.2%–24%" in html
    # 136.08 fen per view: 70% new × 4% ctr × 30% apply × 45% approval × 60% draw × 20,000 RMB × 3%
    assert re.search(r'data-product="xingyun_loan" data-outcome="chosen">.*?136\.08', html, re.S)
    assert re.search(r'data-product="qingshan_loan" data-outcome="filtered">.*?no_consent', html, re.S)


def test_preview_without_consent_keeps_the_partner_off_and_a_visitor_gets_the_in_house_loan(pm):
    html = pm.get("/console/preview?submitted=1&page=home&logged_in=1&personalized=1&risk_tier=A").get_data(as_text=True)
    assert re.findall(r'data-slot="top_banner" data-product="([^"]+)"', html) == ["inhouse_loan"]
    assert re.search(r'data-product="xingyun_loan" data-outcome="filtered">.*?no_consent', html, re.S)
    visitor = pm.get("/console/preview?submitted=1&page=home&personalized=1").get_data(as_text=True)
    assert re.findall(r'data-slot="top_banner" data-product="([^"]+)"', visitor) == ["inhouse_loan"]
    assert re.search(r'data-product="xingyun_loan" data-outcome="filtered">', visitor)


def test_preview_errors_name_the_field(pm):
    response = pm.get("/console/preview?submitted=1&page=home&logged_in=1&age=old")
    assert response.status_code == 422
    assert 'id="f-age-error"' in response.get_data(as_text=True)
    response = pm.get("/console/preview?submitted=1&page=nowhere")
    assert response.status_code == 422 and "page &#39;nowhere&#39; does not exist" in response.get_data(as_text=True)


def test_the_data_share_log_of_a_user(pm, comps):
    comps.profiles.users.put_profile("u-shared", PROFILE | {"user_id": "u-shared"})
    shares = comps.data_shares
    sent = shares.record_send("u-shared", "xingyun_cf", "prescreen", request_id="r-1", product_id="xingyun_loan",
                              fields_for=lambda profile: ("age_band", "region"))
    shares.mark_outcome("u-shared", sent.share_id, "answered")
    html = pm.get("/console/data-shares?user_id=u-shared").get_data(as_text=True)
    row = re.search(r'<table class="data" id="shares">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    assert "xingyun_cf" in row and "prescreen" in row and "age_band, region" in row and "answered" in row
    assert "share_with_partners:xingyun_cf" in row
    assert "Nothing was shared for this user." in pm.get("/console/data-shares?user_id=u-nobody").get_data(as_text=True)
    assert pm.get("/console/data-shares?user_id=").status_code == 422
