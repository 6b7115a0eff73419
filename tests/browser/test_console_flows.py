"""The console as a person uses it, in headless Chromium: one test per flow, a screenshot of each."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.console_fixtures import earn_demo_revenue

pytestmark = pytest.mark.browser

NEW_PROMO = "最高可借30万元，新用户15天免息"


def _same_origin(page, urls) -> list[str]:
    origin = urlsplit(page.base)
    return [u for u in urls if u and not u.startswith(("data:", "blob:", "about:"))
            and (urlsplit(u).scheme, urlsplit(u).netloc) != (origin.scheme, origin.netloc)]


def test_sign_in_with_the_keyboard(page):
    from selenium.webdriver.common.keys import Keys

    page.open("/console/catalogue/products")
    assert "/console/login" in page.driver.current_url  # a visitor is asked to sign in first
    field = page.visible("#f-api-key")
    assert page.driver.switch_to.active_element == field  # focus starts in the key field
    assert page.find("label[for='f-api-key']").text == "API key"
    field.send_keys(page.served["keys"]["pm"])
    field.send_keys(Keys.TAB)
    button = page.driver.switch_to.active_element
    assert button.text == "Sign in"
    assert button.value_of_css_property("outline-style") != "none"  # the focus is visible
    button.send_keys(Keys.ENTER)
    page.text_in("main h1", "Catalogue")
    assert page.driver.current_url.endswith("/console/catalogue/products")
    assert "星云借·钱包专享" in page.find("#row-xingyun_loan").text
    assert page.driver.execute_script("return document.characterSet") == "UTF-8"
    assert not _same_origin(page, page.resources())
    assert page.console_errors() == []


def test_edit_a_promotion_and_see_the_draft_diff(page):
    page.sign_in("pm")
    page.open("/console/catalogue/products/xingyun_loan")
    promo = page.visible("#f-promo")
    promo.clear()
    promo.send_keys(NEW_PROMO)
    page.find("form.entity button[type='submit']").click()
    page.text_in("main .notice.ok", "Saved product xingyun_loan to the draft.")
    page.find("header nav a[href='/console/draft']").click()
    row = page.visible("section[data-id='xingyun_loan'] tr[data-path='promo']")
    assert row.find_element("css selector", "td.before").text == "最高可借30万元，新用户7天免息"
    assert row.find_element("css selector", "td.after").text == NEW_PROMO
    assert len(page.find_all("#draft-diff section")) == 1
    assert page.console_errors() == []


def test_a_guard_error_is_shown_next_to_its_field(page):
    page.sign_in("pm")
    page.open("/console/catalogue/products/xingyun_loan")
    promo = page.visible("#f-promo")
    promo.clear()
    promo.send_keys("日利率低至0.02%")
    page.find("form.entity button[type='submit']").click()
    error = page.visible("#f-promo-error")
    assert "may not carry a rate of its own" in error.text
    promo = page.find("#f-promo")
    field = page.find("[data-field='promo']")
    assert error.find_element("xpath", "..") == field
    assert promo.get_attribute("aria-invalid") == "true"
    assert "f-promo-error" in promo.get_attribute("aria-describedby")
    assert promo.get_attribute("value") == "日利率低至0.02%"
    assert 0 < error.location["y"] - promo.location["y"] < 120  # right under the input
    assert page.served["comps"].admin.get("products", "xingyun_loan")["promo"] == "最高可借30万元，新用户7天免息"


def test_publish_the_draft_with_a_note(page):
    page.sign_in("pm")
    page.open("/console/catalogue/products/xingyun_loan")
    promo = page.visible("#f-promo")
    promo.clear()
    promo.send_keys(NEW_PROMO)
    page.find("form.entity button[type='submit']").click()
    page.text_in("main .notice.ok", "Saved")
    page.open("/console/draft")
    page.visible("#f-note").send_keys("春季活动")
    page.find("form.publish button[type='submit']").click()
    page.text_in("main .notice.ok", "Published version 2.")
    assert page.find("#current-version").text == "2"
    assert "春季活动" in page.find("#version-2").text
    assert page.driver.current_url.endswith("/console/versions")
    assert page.served["comps"].admin.versions()["current"] == 2


def test_preview_a_logged_in_user_sees_the_partner_loan_on_top(page):
    page.sign_in("pm")
    page.find("header nav a[href='/console/preview']").click()
    page.visible("#f-risk-tier")
    from selenium.webdriver.support.ui import Select

    Select(page.find("#f-page")).select_by_value("home")
    Select(page.find("#f-risk-tier")).select_by_value("A")
    page.find("#f-age").send_keys("30")
    page.find("label[for='f-share-xingyun_cf']").click()
    assert page.find("#f-logged-in").is_selected()
    page.find("form.preview-form button[type='submit']").click()
    top = page.visible(".phone li.card[data-slot='top_banner']")
    assert top.get_attribute("data-product") == "xingyun_loan"
    assert "星云借·钱包专享" in top.text and "年化利率(单利) 7.2%–24%" in top.text
    chosen = page.find("#candidates tr[data-product='xingyun_loan']")
    assert chosen.get_attribute("data-outcome") == "chosen" and "136.08" in chosen.text
    filtered = page.find("#candidates tr[data-product='qingshan_loan']")
    assert filtered.get_attribute("data-outcome") == "filtered" and "no_consent" in filtered.text
    assert "risk_tier=A" in page.driver.current_url  # the preview can be shared as a link
    assert page.console_errors() == []


def test_roll_back_to_an_earlier_version(page):
    comps = page.served["comps"]
    comps.admin.update("products", "xingyun_loan", {**comps.admin.get("products", "xingyun_loan"), "promo": NEW_PROMO},
                       actor="test")
    comps.admin.publish("test", "spring")
    page.sign_in("pm")
    page.open("/console/versions")
    assert page.visible("#current-version").text == "2"
    page.find("#f-note-1").send_keys("撤回春季活动")
    page.find("#version-1 button[type='submit']").click()
    page.wait(lambda driver: driver.switch_to.alert).accept()  # the confirmation
    page.text_in("main .notice.ok", "Rolled back to version 1")
    assert page.find("#current-version").text == "3"
    assert "rollback of 1" in page.find("#version-3").text
    assert comps.admin.get("products", "xingyun_loan")["promo"] == "最高可借30万元，新用户7天免息"


def test_the_revenue_chart_is_drawn_for_the_demo_data(page):
    served = page.served
    earn_demo_revenue(served["comps"], served["app"].test_client(), served["keys"]["app"])
    page.sign_in("finance")
    page.text_in("main h1", "Revenue")
    series = page.visible("svg#revenue-by-day")
    assert series.size["width"] > 600 and series.size["height"] > 150
    assert len(series.find_elements("css selector", "g[id^='revenue-by-day-series-']")) == 2
    assert len(series.find_elements("css selector", "g[id^='revenue-by-day-series-'] use")) == 14  # the points
    assert "earned" in series.text and "¥0" in series.text  # the legend and the yuan axis, as text
    breakdown = page.visible("svg#revenue-breakdown")
    assert len(breakdown.find_elements("css selector", "g[id^='revenue-breakdown-bar-']")) >= 2
    row = page.find("#revenue-breakdown-table").text
    assert "xingyun_loan" in row and "300.00" in row
    assert not _same_origin(page, page.resources())
    assert page.console_errors() == []


def test_finance_cannot_reach_the_catalogue(page):
    page.sign_in("finance")
    links = [a.text for a in page.find_all("header nav a")]
    assert links == ["Revenue", "Compare", "Reconciliation"]
    page.open("/console/catalogue/products")
    page.text_in("main h1", "Not for this role")
    assert "for product managers" in page.find("main").text
    assert not page.find_all("#row-xingyun_loan")
    page.open("/console/draft")
    page.text_in("main h1", "Not for this role")


def test_the_api_docs_render_their_operations_offline(page):
    page.open("/docs")
    page.wait(lambda driver: len(driver.find_elements("css selector", ".opblock")) >= 10)
    summaries = [e.text for e in page.find_all(".opblock-summary-path")]
    assert "/v1/layout" in summaries and "/admin/v1/preview" in summaries
    sources = page.driver.execute_script(
        "return Array.from(document.querySelectorAll('script[src], link[href], img[src]'))"
        ".map(e => e.src || e.href)"
    )
    assert sources and not _same_origin(page, sources)
    assert not _same_origin(page, page.resources())
