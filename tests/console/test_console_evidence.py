"""Product managers' evidence pages: candidates, experiments (create, list, results, stop, ship) and off-policy
evaluation, on the same services as the API; their checks' errors next to the field, and nothing half-written."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from html import unescape

import pytest

from tests.console.test_console_catalogue import _field_block
from tests.evidence_log import (
    add_pin_rule,
    count_events,
    evaluation_settings,
    log_decisions,
    put_users,
    show_home,
)
from tests.finance_ledger import post_postback, publish_demo
from wallet_market.reports.finance import percent, yuan

NOW = datetime.now(timezone.utc).replace(microsecond=0)
EXPERIMENT_FIELDS = ("experiment_id", "page", "treatment_version", "traffic_bps", "treatment_bps", "starts_at", "ends_at")


def _form(version: int, **overrides) -> dict:
    body = {"experiment_id": "pin-card", "page": "home", "treatment_version": str(version), "traffic_bps": "10000",
            "treatment_bps": "5000", "starts_at": (NOW - timedelta(hours=1)).isoformat(),
            "ends_at": (NOW + timedelta(days=7)).isoformat()}
    return {**body, **overrides}


def _money(fen) -> str:
    """As the console shows money: the sign before the ¥."""
    if fen is None:
        return "–"
    return f"-¥{yuan(-fen)}" if fen < 0 else f"¥{yuan(fen)}"


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def _row(html: str, table_id: str, attribute: str, value: str) -> str:
    table = re.search(rf'<table[^>]* id="{table_id}">(.*?)</table>', html, re.S)
    assert table, f"no table {table_id}"
    row = re.search(rf'<tr {attribute}="{re.escape(value)}"[^>]*>(.*?)</tr>', table.group(1), re.S)
    assert row, f"no row {value} in {table_id}"
    return row.group(1)


def _cell(row: str, css_class: str) -> str:
    match = re.search(rf'<td class="{css_class}">(.*?)</td>', row, re.S)
    assert match, f"no cell {css_class}"
    return _text(match.group(1))


@pytest.fixture
def candidate(pm, comps) -> int:
    """The draft pins the in-house loan to the home top banner, frozen as a candidate through the console."""
    add_pin_rule(comps)
    assert "No candidate" not in pm.get("/console/experiments/new").get_data(as_text=True)
    response = pm.post("/console/candidates", {"note": "置顶自营贷款", "then": "experiment"})
    assert response.status_code == 303, response.get_data(as_text=True)
    version = comps.admin.candidates()[-1]["version"]
    assert response.headers["Location"] == f"/console/experiments/new?treatment_version={version}"
    return version


@pytest.fixture
def started(pm, comps, candidate) -> int:
    """``pin-card`` running on the home page for everyone, half of them on the candidate; the candidate's version."""
    response = pm.post("/console/experiments/new", _form(candidate))
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"] == "/console/experiments/pin-card"
    comps.experiment_serving.refresh()
    return candidate


# -- pages and roles ------------------------------------------------------------------------------------


def test_every_evidence_page_renders_for_pm_and_is_refused_to_finance(pm, finance, comps, started):
    paths = ["/console/experiments", "/console/experiments/new", "/console/experiments/pin-card", "/console/evaluate"]
    for path in paths:
        response = pm.get(path)
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        assert 'href="/console/experiments"' in html and 'href="/console/evaluate"' in html  # the navigation
        assert html.count('name="csrf_token"') == html.count('method="post"'), path
        refused = finance.get(path)
        assert refused.status_code == 403, path
        assert "for product managers" in refused.get_data(as_text=True)
    nav = re.search(r'<nav aria-label="Pages">(.*?)</nav>', finance.get("/console/revenue").get_data(as_text=True), re.S)
    assert "Experiments" not in nav.group(1) and "Evaluate" not in nav.group(1)
    candidates = comps.admin.candidates()
    for path, data in (
        ("/console/candidates", {"note": "finance"}),
        ("/console/experiments/new", _form(started, experiment_id="finance-exp")),
        ("/console/experiments/pin-card/stop", {}),
        ("/console/experiments/pin-card/ship", {}),
    ):
        assert finance.post(path, data).status_code == 403, path
    assert comps.admin.candidates() == candidates
    assert [e["experiment_id"] for e in comps.experiments.list()] == ["pin-card"]
    assert comps.experiments.get("pin-card")["status"] == "running"
    assert comps.admin.versions()["current"] == 1


def test_visitors_are_sent_to_sign_in(demo_app):
    client = demo_app.test_client()
    for path in ("/console/experiments", "/console/experiments/new", "/console/experiments/x", "/console/evaluate"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["Location"].startswith("/console/login"), path


def test_without_a_candidate_the_form_says_to_freeze_the_draft(pm):
    html = pm.get("/console/experiments/new").get_data(as_text=True)
    assert 'id="no-candidates"' in html
    assert re.search(r'<select id="f-treatment-version" name="treatment_version"[^>]*>\s*<option value="" selected>', html)
    assert 'class="stack freeze-form"' in html and 'name="then" value="experiment"' in html


def test_the_form_offers_the_frozen_candidate_and_the_served_pages(pm, candidate):
    html = pm.get(f"/console/experiments/new?treatment_version={candidate}").get_data(as_text=True)
    assert f"Froze the draft as candidate version {candidate}." in html
    version = _field_block(html, "treatment_version")
    assert re.search(rf'<option value="{candidate}" selected>version {candidate} — 置顶自营贷款', version)
    page = _field_block(html, "page")
    assert '<option value="home" selected>home</option>' in page and 'value="loan_market"' in page
    for name in EXPERIMENT_FIELDS:
        block = _field_block(html, name)
        html_id = "f-" + name.replace("_", "-")
        assert f'<label for="{html_id}">' in block and f'id="{html_id}"' in block, name
        assert "field-errors" not in block


def test_a_candidate_note_too_long_is_refused_next_to_it_and_nothing_is_frozen(pm, comps):
    response = pm.post("/console/candidates", {"note": "长" * 501, "then": "evaluate"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="f-note-error"' in html and "at most 500 characters" in html
    assert 'name="then" value="evaluate"' in html and "<h1>Evaluate a candidate</h1>" in html  # the page it came from
    assert comps.admin.candidates() == []


# -- creating an experiment -------------------------------------------------------------------------------


def test_create_starts_the_experiment_and_lists_it(pm, comps, started):
    record = comps.experiments.get("pin-card")
    assert record["status"] == "running" and record["treatment_version"] == started and record["page"] == "home"
    assert record["traffic_bps"] == 10_000 and record["treatment_bps"] == 5_000
    assert record["starts_at"] == NOW - timedelta(hours=1) and record["ends_at"] == NOW + timedelta(days=7)
    assert record["created_by"].startswith("pm:test-pm:")
    page = pm.get("/console/experiments/pin-card").get_data(as_text=True)
    assert "Started experiment pin-card on page home." in page
    listing = pm.get("/console/experiments").get_data(as_text=True)
    row = _text(re.search(r'<tr id="experiment-pin-card" data-status="running">(.*?)</tr>', listing, re.S).group(1))
    assert row.startswith("pin-card running home")
    assert f"treatment: version {started}, 50.00% of those taking part" in row
    assert "control: the published rules (version 1 at the start)" in row and "taking part: 100.00% of users" in row
    assert (NOW - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S UTC") in row
    assert 'href="/console/experiments/pin-card"' in listing


@pytest.mark.parametrize(("field", "value", "message"), [
    ("traffic_bps", "20000", "from 0 to 10000"),
    ("traffic_bps", "一半", "enter a whole number"),
    ("treatment_bps", "50.5", "enter a whole number"),
    ("treatment_version", "9", "no such rule-set version"),
    ("treatment_version", "", "choose a candidate version"),
    ("ends_at", (NOW - timedelta(minutes=10)).isoformat(), "must be in the future"),
    ("ends_at", (NOW - timedelta(hours=2)).isoformat(), "must be after starts_at"),
    ("starts_at", "2026-01-01T00:00:00", "add the time zone offset"),
    ("starts_at", "next monday", "cannot read this"),
    ("page", "nowhere", "not a page of rule-set version"),
    ("experiment_id", "Bad Id", "must be 1–64 characters"),
])
def test_a_field_that_cannot_work_is_named_next_to_it_and_nothing_is_written(pm, comps, candidate, field, value, message):
    audit = comps.admin.audit(5)
    response = pm.post("/console/experiments/new", _form(candidate, **{field: value}))
    assert response.status_code == 422, response.get_data(as_text=True)
    html = response.get_data(as_text=True)
    block = _field_block(html, field)
    html_id = "f-" + field.replace("_", "-")
    assert f'class="field-errors" id="{html_id}-error"' in block
    assert message in unescape(block)
    assert 'aria-invalid="true"' in block and f"{html_id}-error" in block
    for other in EXPERIMENT_FIELDS:
        if other != field:
            assert "field-errors" not in _field_block(html, other), other
    if field not in ("treatment_version", "page"):  # a select shows its options; an input the text as typed
        assert f'value="{value}"' in block
    assert comps.experiments.list() == []
    assert comps.admin.audit(5) == audit


def test_one_experiment_per_page_and_an_id_once(pm, comps, started):
    response = pm.post("/console/experiments/new", _form(started, experiment_id="again"))
    assert response.status_code == 422
    assert "already runs on page home" in _field_block(response.get_data(as_text=True), "page")
    response = pm.post("/console/experiments/new", _form(started, page="loan_market"))
    assert response.status_code == 422
    assert "experiment pin-card already exists" in _field_block(response.get_data(as_text=True), "experiment_id")
    assert [e["experiment_id"] for e in comps.experiments.list()] == ["pin-card"]


def test_posts_without_the_csrf_token_are_refused_and_change_nothing(pm, comps, started):
    for path, data in (
        ("/console/candidates", {"note": "no token"}),
        ("/console/experiments/new", _form(started, experiment_id="no-token", page="loan_market")),
        ("/console/experiments/pin-card/stop", {}),
        ("/console/experiments/pin-card/ship", {}),
    ):
        response = pm.client.post(path, data=data)
        assert response.status_code == 403, path
        assert "refused" in response.get_data(as_text=True)
    assert [c["version"] for c in comps.admin.candidates()] == [started]
    assert [e["experiment_id"] for e in comps.experiments.list()] == ["pin-card"]
    assert comps.experiments.get("pin-card")["status"] == "running"
    assert comps.admin.versions()["current"] == 1


# -- results, stop and ship ----------------------------------------------------------------------------------


def test_results_show_each_arm_and_the_difference_with_its_interval(pm, comps, client, api_keys, started):
    publish_demo(comps)  # the partners' signing secrets, for their postbacks
    users = put_users(comps, 40)
    shown = show_home(client, comps, api_keys["app"], users)
    assert not shown["units"]["none"] and shown["units"]["control"] and shown["units"]["treatment"]
    earned = {"control": 0, "treatment": 0}
    for n, user in enumerate(users):
        slot = next((s for s in shown["bodies"][user]["slots"] if s["product"]["product_id"] == "xingyun_loan"), None)
        if slot is None:
            continue
        amount = 100_000 * (n % 5 + 1)  # xingyun_loan pays 3% of the amount disbursed: 3,000 fen a step
        post_postback(client, "xingyun_cf", {"event_id": f"exp-{n}", "type": "disbursed", "amount": amount,
                                             "impression_token": slot["impression_token"]})
        arm = "treatment" if user in shown["units"]["treatment"] else "control"
        earned[arm] += amount * 3 // 100
    assert earned["control"] > 0
    count_events(comps)
    html = pm.get("/console/experiments/pin-card").get_data(as_text=True)
    results = comps.experiments.results("pin-card")
    for arm in ("control", "treatment"):
        row = _row(html, "arms-table", "data-arm", arm)
        assert _cell(row, "units") == str(len(shown["units"][arm]))
        assert _cell(row, "impressions") == str(shown["impressions"][arm])
        rpm = (earned[arm] * 1000 * 2 + shown["impressions"][arm]) // (2 * shown["impressions"][arm])  # half-up
        assert _cell(row, "rpm") == _money(rpm)
        assert _money(earned[arm]) in _text(row)
    lift = results["lift"]
    assert lift["estimate_bps"] is not None and lift["ci_low_bps"] < lift["estimate_bps"] < lift["ci_high_bps"]
    row = _row(html, "lift-table", "data-metric", "rpm_group_fen")
    assert _cell(row, "estimate") == percent(lift["estimate_bps"])
    assert _cell(row, "ci-low") == percent(lift["ci_low_bps"]) and _cell(row, "ci-high") == percent(lift["ci_high_bps"])
    chart = re.search(r'<svg [^>]*id="experiment-lift".*?</svg>', html, re.S).group(0)
    assert chart.count('<g id="experiment-lift-estimate-') == 1 and chart.count('<g id="experiment-lift-interval-') == 1
    assert f"p = {results['srm_p_value']:.3f}" in _text(html)


def test_stop_then_ship_change_the_state_and_a_second_ship_is_refused(pm, comps, started):
    html = pm.get("/console/experiments/pin-card").get_data(as_text=True)
    assert 'class="inline stop-form"' in html and "hx-confirm=" in html
    response = pm.post("/console/experiments/pin-card/stop")
    assert response.status_code == 303
    assert comps.experiments.get("pin-card")["status"] == "stopped"
    html = pm.get(response.headers["Location"]).get_data(as_text=True)
    assert "Stopped experiment pin-card" in html and 'id="experiment-status">stopped<' in html
    assert "stop-form" not in html and "ship-form" in html
    response = pm.post("/console/experiments/pin-card/stop")
    assert response.status_code == 409
    assert "experiment &#39;pin-card&#39; is stopped" in response.get_data(as_text=True)
    assert 'role="alert"' in response.get_data(as_text=True)

    response = pm.post("/console/experiments/pin-card/ship")
    assert response.status_code == 303
    assert comps.experiments.get("pin-card")["status"] == "shipped"
    assert comps.admin.versions()["current"] == started
    html = pm.get(response.headers["Location"]).get_data(as_text=True)
    assert f"version {started} is now served to everyone" in html and "ship-form" not in html
    response = pm.post("/console/experiments/pin-card/ship")
    assert response.status_code == 409 and "already shipped" in response.get_data(as_text=True)
    assert comps.admin.versions()["current"] == started


def test_an_unknown_experiment_is_a_404(pm):
    assert pm.get("/console/experiments/nope").status_code == 404
    assert pm.post("/console/experiments/nope/stop").status_code == 404


# -- off-policy evaluation -------------------------------------------------------------------------------------


@pytest.fixture
def settings_overrides(settings_overrides, tmp_path):
    return {**settings_overrides, **evaluation_settings(tmp_path)}


@pytest.fixture
def logged(app, client, comps, api_keys):
    """The funnel catalogue published (version 1), 40 home pages served, reported and exported by the worker."""
    return log_decisions(comps, client, api_keys["app"])


def _estimates(html: str) -> dict[str, tuple[str, str, str]]:
    out = {}
    for key in ("ips", "snips", "dm", "dr"):
        row = _row(html, "estimates-table", "data-estimator", key)
        out[key] = (_cell(row, "estimate"), _cell(row, "ci-low"), _cell(row, "ci-high"))
    return out


def test_evaluating_the_served_version_shows_its_estimates_and_the_counts_behind_them(logged, console_for, comps):
    pm = console_for("pm")
    html = pm.get("/console/evaluate?submitted=1&candidate=1&from=&to=&view=group").get_data(as_text=True)
    expected = comps.evaluation.evaluate("1", None, None, "group")
    assert expected["decisions"] == 40
    assert _text(re.search(r'<dd id="decisions">(.*?)</dd>', html).group(1)) == "40"
    logged_rpm = expected["logged"]["rpm_fen"]
    assert f"{_money(logged_rpm)} per 1,000 slot impressions" in _text(re.search(r'<dd id="logged-rpm">(.*?)</dd>', html).group(1))
    slots = sum(len(b["slots"]) for b in logged["bodies"])
    assert _text(re.search(r'<dd id="ess">(.*?)</dd>', html).group(1)) == f"{slots:,.1f} slot impressions"
    assert _text(re.search(r'<dd id="support">(.*?)</dd>', html).group(1)).startswith("100.00%")
    shown = _estimates(html)
    for key, estimate in expected["estimators"].items():
        assert shown[key] == (_money(estimate["rpm_fen"]), _money(estimate["ci_low_fen"]), _money(estimate["ci_high_fen"]))
    # The same policy: every weight is 1, so IPS and SNIPS are what the log earned.
    assert shown["ips"][0] == shown["snips"][0] == _money(logged_rpm)
    chart = re.search(r'<svg [^>]*id="evaluation-estimates".*?</svg>', html, re.S).group(0)
    assert chart.count('<g id="evaluation-estimates-estimate-') == 4 and '<g id="evaluation-estimates-reference">' in chart
    assert '<option value="1" selected>version 1 (served now)</option>' in html


def test_evaluating_the_draft_over_a_window_in_the_platform_view(logged, console_for, comps):
    comps.admin.create("rules", {"rule_id": "no_cps", "action": "exclude", "product_id": "cps_loan", "priority": 1},
                       actor="test")
    pm = console_for("pm")
    today = datetime.now(timezone.utc).date().isoformat()
    html = pm.get(f"/console/evaluate?submitted=1&candidate=draft&from={today}&to={today}&view=platform").get_data(as_text=True)
    expected = comps.evaluation.evaluate("draft", None, None, "platform")
    assert expected["support_bps"] < 10_000
    assert "the draft, as it is now · platform view" in _text(html)
    assert _text(re.search(r'<dd id="support">(.*?)</dd>', html).group(1)).startswith(percent(expected["support_bps"]))
    assert _estimates(html)["dr"][0] == _money(expected["estimators"]["dr"]["rpm_fen"])
    earlier = pm.get("/console/evaluate?submitted=1&candidate=draft&from=2020-01-01&to=2020-01-02&view=group")
    assert earlier.status_code == 200
    html = earlier.get_data(as_text=True)
    assert _text(re.search(r'<dd id="decisions">(.*?)</dd>', html).group(1)) == "0"
    assert 'id="evaluation-warnings"' in html and 'id="evaluation-estimates"' not in html


@pytest.mark.parametrize(("query", "field", "message"), [
    ("candidate=latest", "candidate", "must be draft or a rule-set version number"),
    ("candidate=99", "candidate", "no such version"),
    ("candidate=1&from=2026-02-30", "from", "enter a date as YYYY-MM-DD"),
    ("candidate=1&to=tomorrow", "to", "enter a date as YYYY-MM-DD"),
    ("candidate=1&from=2026-02-02&to=2026-02-01", "to", "must not be before from"),
    ("candidate=1&view=mine", "view", "must be one of group, platform"),
])
def test_a_bad_evaluation_is_named_next_to_its_field(logged, console_for, query, field, message):
    pm = console_for("pm")
    response = pm.get(f"/console/evaluate?submitted=1&{query}")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    block = _field_block(html, field)
    assert f'id="f-{field}-error"' in block and message in block
    for other in ("candidate", "from", "to", "view"):
        if other != field:
            assert "field-errors" not in _field_block(html, other), other
    assert 'id="estimates-table"' not in html


def test_an_earlier_published_version_can_be_evaluated_as_a_rollback_would_serve_it(logged, console_for, comps):
    comps.admin.create("rules", {"rule_id": "no_cps", "action": "exclude", "product_id": "cps_loan", "priority": 1},
                       actor="test")
    comps.admin.publish("test", note="不要CPS")
    comps.snapshots.refresh()
    pm = console_for("pm")
    html = pm.get("/console/evaluate").get_data(as_text=True)
    assert '<option value="2">version 2 (served now)</option>' in html
    note = re.escape(comps.admin.versions()["versions"][0]["note"])  # what loading the fixture's catalogue noted
    assert re.search(rf'<option value="1">version 1 — {note} \(published \d{{4}}-\d\d-\d\d \d\d:\d\d\)</option>', html)
    # Served and published versions come before candidates, newest first.
    assert html.index('<option value="draft"') < html.index('<option value="2"') < html.index('<option value="1"')
    html = pm.get("/console/evaluate?submitted=1&candidate=1&from=&to=&view=group").get_data(as_text=True)
    expected = comps.evaluation.evaluate("1", None, None, "group")
    assert _estimates(html)["dr"][0] == _money(expected["estimators"]["dr"]["rpm_fen"])
    assert '<option value="1" selected>version 1 — ' in html


def test_freezing_from_the_evaluation_page_comes_back_with_the_candidate_chosen(logged, console_for, comps):
    pm = console_for("pm")
    pm.get("/console/evaluate")
    response = pm.post("/console/candidates", {"note": "评估用", "then": "evaluate"})
    assert response.status_code == 303
    version = comps.admin.candidates()[-1]["version"]
    assert response.headers["Location"] == f"/console/evaluate?candidate={version}"
    html = pm.get(response.headers["Location"]).get_data(as_text=True)
    assert re.search(rf'<option value="{version}" selected>candidate version {version} — 评估用', html)
    assert 'id="estimates-table"' not in html  # chosen, not yet evaluated
    html = pm.get(f"/console/evaluate?submitted=1&candidate={version}").get_data(as_text=True)
    assert _text(re.search(r'<dd id="decisions">(.*?)</dd>', html).group(1)) == "40"


# -- what a page costs ------------------------------------------------------------------------------------------


def test_each_page_makes_only_the_redis_round_trips_it_needs(pm, comps, started, monkeypatch):
    """The list one read, the forms one read of the candidates, an experiment one read of its record and one scan
    per arm; the served pages and version come from the process's snapshot. The key check is not counted."""
    from redis.connection import AbstractConnection

    sends: list[str] = []
    original = AbstractConnection.send_packed_command

    def counted(connection, command, check_health=True):
        packed = command if isinstance(command, (bytes, bytearray)) else b"".join(command)
        if b"{auth}" not in packed:
            sends.append(packed.split(b"\r\n")[2].decode())  # the (first) command's name
        return original(connection, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    for path, expected in (
        ("/console/experiments", ["HGETALL"]),
        ("/console/experiments/new", ["LRANGE"]),
        ("/console/experiments/pin-card", ["HGET", "HSCAN", "HSCAN"]),
        ("/console/evaluate", ["LRANGE"]),
    ):
        pm.get(path)
        sends.clear()
        assert pm.get(path).status_code == 200
        assert sends == expected, path
