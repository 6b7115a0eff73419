"""Experiments and evaluation in the console as a product manager uses them, in headless Chromium."""
from __future__ import annotations

import pytest

from tests.evidence_log import add_pin_rule, count_events, evaluation_settings, log_decisions, put_users, show_home

pytestmark = pytest.mark.browser


@pytest.fixture
def settings_overrides(settings_overrides, tmp_path):
    return {**settings_overrides, **evaluation_settings(tmp_path)}


def test_freeze_a_candidate_start_an_experiment_see_its_results_and_stop_it(page):
    comps = page.served["comps"]
    add_pin_rule(comps)  # the draft pins the in-house loan to the home top banner
    page.sign_in("pm")
    page.find("header nav a[href='/console/experiments']").click()
    page.text_in("main h1", "Experiments")
    page.find("main a.button[href='/console/experiments/new']").click()
    page.visible("#no-candidates")
    note = page.visible("#f-note")
    assert page.find("label[for='f-note']").text == "Note for the candidate"
    note.send_keys("置顶自营贷款")
    page.find("form.freeze-form button[type='submit']").click()
    page.text_in("main .notice.ok", "Froze the draft as candidate version 2.")
    assert page.driver.current_url.endswith("/console/experiments/new?treatment_version=2")
    from selenium.webdriver.support.ui import Select

    version = Select(page.find("#f-treatment-version"))
    assert version.first_selected_option.get_attribute("value") == "2"
    assert "置顶自营贷款" in version.first_selected_option.text
    assert Select(page.find("#f-page")).first_selected_option.text == "home"
    page.find("#f-experiment-id").send_keys("pin-card")
    page.find("form.experiment-form button[type='submit']").click()
    page.text_in("main .notice.ok", "Started experiment pin-card on page home.")
    assert page.driver.current_url.endswith("/console/experiments/pin-card")

    comps.experiment_serving.refresh()  # as the experiments channel would tell the process
    shown = show_home(page.served["app"].test_client(), comps, page.served["keys"]["app"], put_users(comps, 20))
    count_events(comps)

    page.find("header nav a[href='/console/experiments']").click()
    row = page.visible("#experiment-pin-card")
    assert "running" in row.text and "home" in row.text and "version 2" in row.text
    row.find_element("css selector", "a[href='/console/experiments/pin-card']").click()
    page.text_in("main h1", "pin-card")
    for arm in ("control", "treatment"):
        cells = page.find(f"#arms-table tr[data-arm='{arm}']")
        assert cells.find_element("css selector", "td.units").text == str(len(shown["units"][arm]))
        assert cells.find_element("css selector", "td.impressions").text == str(shown["impressions"][arm])
    assert "p = " in page.find("#srm").text
    assert page.find("#experiment-status").text == "running"
    page.find("form.stop-form button[type='submit']").click()
    page.wait(lambda driver: driver.switch_to.alert).accept()  # the confirmation
    page.text_in("main .notice.ok", "Stopped experiment pin-card")
    assert page.find("#experiment-status").text == "stopped"
    assert not page.find_all("form.stop-form") and page.find_all("form.ship-form")
    assert comps.experiments.get("pin-card")["status"] == "stopped"
    assert page.console_errors() == []


def test_evaluate_the_served_version_on_the_logged_decisions(page):
    served = page.served
    log_decisions(served["comps"], served["app"].test_client(), served["keys"]["app"])
    version = served["comps"].admin.versions()["current"]
    page.sign_in("pm")
    page.find("header nav a[href='/console/evaluate']").click()
    page.text_in("main h1", "Evaluate a candidate")
    from selenium.webdriver.support.ui import Select

    Select(page.find("#f-candidate")).select_by_value(str(version))
    Select(page.find("#f-view")).select_by_value("group")
    assert page.find("label[for='f-from']").text == "From" and page.find("#f-from").get_attribute("type") == "date"
    page.find("form.evaluate-form button[type='submit']").click()
    page.visible("#estimates-table")
    assert page.find("#decisions").text == "40"
    assert page.find("#support").text.startswith("100.00%")
    for key in ("ips", "snips", "dm", "dr"):
        assert page.find(f"#estimates-table tr[data-estimator='{key}'] td.estimate").text.startswith("¥")
    chart = page.visible("svg#evaluation-estimates")
    assert chart.size["width"] > 600
    assert len(chart.find_elements("css selector", "g[id^='evaluation-estimates-estimate-']")) == 4
    assert f"candidate={version}" in page.driver.current_url  # the evaluation can be shared as a link
    assert page.console_errors() == []
