"""Candidates and experiments over HTTP: frozen drafts, sticky arms, holdouts, per-unit results, stop and ship."""
from datetime import datetime, timedelta, timezone

import pytest

from tests.evidence_log import PIN_RULE, count_events, put_users, show_home
from wallet_market.domain.experiments import assign
from wallet_market.services.experiments import experiment_from_record
NOW = datetime.now(timezone.utc)


def iso(moment):
    return moment.isoformat()


@pytest.fixture
def market(demo_app, comps, client, auth):
    """The demo catalogue published (v1) and a candidate (v2) that pins the in-house loan to the home top banner."""
    assert client.post("/admin/v1/rules", json=PIN_RULE, headers=auth("pm")).status_code == 201
    frozen = client.post("/admin/v1/rulesets/candidates", json={"note": "pin the in-house loan"}, headers=auth("pm"))
    assert frozen.status_code == 201, frozen.get_json()
    assert frozen.get_json()["version"] == 2
    put_users(comps, 60)
    return comps


def experiment(**overrides):
    body = {"experiment_id": "pin-card", "page": "home", "treatment_version": 2, "traffic_bps": 10_000,
            "treatment_bps": 5_000, "starts_at": iso(NOW - timedelta(hours=1)), "ends_at": iso(NOW + timedelta(days=7))}
    return {**body, **overrides}


def start(client, auth, comps, **overrides):
    response = client.post("/admin/v1/experiments", json=experiment(**overrides), headers=auth("pm"))
    assert response.status_code == 201, response.get_json()
    comps.experiment_serving.refresh()
    return response.get_json()


def layout(client, auth, comps, user=None, device=None, page="home"):
    headers = auth("app")
    if user:
        headers["X-User-Token"] = comps.user_tokens.mint(user)
    if device:
        headers["X-Device-Id"] = device
    response = client.get(f"/v1/layout?page={page}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_frozen_candidate_is_stored_but_not_served(market, client, auth):
    listed = client.get("/admin/v1/rulesets", headers=auth("pm")).get_json()
    assert listed["current"] == 1
    assert [c["version"] for c in listed["candidates"]] == [2]
    assert [v["version"] for v in listed["versions"]] == [1]
    assert layout(client, auth, market, "u1")["ruleset_version"] == 1


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"traffic_bps": 20_000}, "traffic_bps"),
        ({"treatment_version": 9}, "treatment_version"),
        ({"ends_at": iso(NOW - timedelta(days=2))}, "ends_at"),
        ({"page": "nowhere"}, "page"),
        ({"experiment_id": "Bad Id"}, "experiment_id"),
        ({"treatment_bps": 50.5}, "treatment_bps"),
    ],
)
def test_an_experiment_that_cannot_run_is_a_4xx_naming_the_field(market, client, auth, overrides, field):
    response = client.post("/admin/v1/experiments", json=experiment(**overrides), headers=auth("pm"))
    assert response.status_code in (400, 422), response.get_json()
    errors = response.get_json()["errors"]
    assert field in errors or field in errors.get("json", {}), errors
    assert client.get("/admin/v1/experiments", headers=auth("pm")).get_json() == []


def test_one_experiment_per_page_at_a_time_but_other_pages_run_concurrently(market, client, auth, comps):
    start(client, auth, comps)
    clash = client.post("/admin/v1/experiments", json=experiment(experiment_id="again"), headers=auth("pm"))
    assert clash.status_code == 422 and "page" in clash.get_json()["errors"]
    other = start(client, auth, comps, experiment_id="loans", page="loan_market")
    assert other["status"] == "running"
    assert {e["experiment_id"] for e in client.get("/admin/v1/experiments", headers=auth("pm")).get_json()} == {
        "pin-card", "loans",
    }
    assert "salt" not in client.get("/admin/v1/experiments/loans", headers=auth("pm")).get_json()
    assert client.get("/admin/v1/experiments/nope", headers=auth("pm")).status_code == 404


def test_arms_are_sticky_and_the_treatment_is_served_by_the_candidate(market, client, auth, comps):
    start(client, auth, comps)
    record = experiment_from_record(comps.experiments.store.get("pin-card"))
    arms = {}
    for n in range(40):
        user = f"u{n}"
        body = layout(client, auth, comps, user)
        token = comps.impression_tokens.verify(body["slots"][0]["impression_token"])
        assert token.experiment_id == "pin-card" and token.unit == comps.pseudonyms.of_user(user)
        arms[user] = token.arm
        assert token.arm == assign(record, user, NOW)
        assert body["ruleset_version"] == (2 if token.arm == "treatment" else 1)
        if token.arm == "treatment":
            assert {s["slot"]: s["product"]["product_id"] for s in body["slots"]}["top_banner"] == "inhouse_loan"
        again = comps.impression_tokens.verify(layout(client, auth, comps, user)["slots"][0]["impression_token"])
        assert again.arm == token.arm  # sticky
    assert set(arms.values()) == {"control", "treatment"}
    # A visitor takes part by device; without a device id, the published rules and no experiment.
    visitor = comps.impression_tokens.verify(layout(client, auth, comps, device="dev-1")["slots"][0]["impression_token"])
    assert visitor.experiment_id == "pin-card" and visitor.unit == comps.pseudonyms.of_device("dev-1")
    anonymous = layout(client, auth, comps)
    assert anonymous["ruleset_version"] == 1
    assert comps.impression_tokens.verify(anonymous["slots"][0]["impression_token"]).experiment_id is None
    # Another page is not in this experiment.
    loans = layout(client, auth, comps, "u1", page="loan_market")
    assert comps.impression_tokens.verify(loans["slots"][0]["impression_token"]).experiment_id is None


def test_the_holdout_is_served_the_published_rules_outside_the_experiment(market, client, auth, comps):
    start(client, auth, comps, traffic_bps=5_000)
    outside = 0
    for n in range(60):
        body = layout(client, auth, comps, f"u{n}")
        token = comps.impression_tokens.verify(body["slots"][0]["impression_token"])
        if token.experiment_id is None:
            outside += 1
            assert body["ruleset_version"] == 1
    assert 15 <= outside <= 45  # about half, by the hash


def test_results_count_per_unit_and_stop_and_ship(market, client, auth, comps, api_keys):
    start(client, auth, comps)
    shown = show_home(client, comps, api_keys["app"], [f"u{n}" for n in range(40)])
    assert not shown["units"]["none"]  # everyone takes part
    count_events(comps)
    count_events(comps)  # a second pass adds nothing
    results = client.get("/admin/v1/experiments/pin-card/results", headers=auth("pm")).get_json()
    by_arm = {a["arm"]: a for a in results["arms"]}
    for arm in ("control", "treatment"):
        assert by_arm[arm]["units"] == len(shown["units"][arm])
        assert by_arm[arm]["impressions"] == shown["impressions"][arm]
    assert 0 < results["srm_p_value"] <= 1
    assert results["lift"]["metric"] == "rpm_group_fen"

    stopped = client.post("/admin/v1/experiments/pin-card/stop", headers=auth("pm"))
    assert stopped.status_code == 200 and stopped.get_json()["status"] == "stopped"
    assert client.post("/admin/v1/experiments/pin-card/stop", headers=auth("pm")).status_code == 409
    comps.experiment_serving.refresh()
    assert {layout(client, auth, comps, f"u{n}")["ruleset_version"] for n in range(10)} == {1}

    shipped = client.post("/admin/v1/experiments/pin-card/ship", headers=auth("pm"))
    assert shipped.status_code == 200 and shipped.get_json()["status"] == "shipped"
    versions = client.get("/admin/v1/rulesets", headers=auth("pm")).get_json()
    assert versions["current"] == 2 and versions["versions"][-1]["version"] == 2
    comps.snapshots.refresh()
    assert layout(client, auth, comps, "u1")["ruleset_version"] == 2
    assert client.post("/admin/v1/experiments/pin-card/ship", headers=auth("pm")).status_code == 409


def test_another_process_serves_a_new_experiment_within_seconds(market, client, auth, settings_overrides):
    import time

    from wallet_market.app import create_app

    other = create_app(settings_overrides, start_background=True)  # its snapshot listener follows the channels
    try:
        serving = other.extensions["wallet_market"].experiment_serving
        assert not serving.running
        response = client.post("/admin/v1/experiments", json=experiment(), headers=auth("pm"))
        assert response.status_code == 201
        deadline = time.monotonic() + 5
        while not serving.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e.experiment_id for e in serving.experiments] == ["pin-card"]
        assert client.post("/admin/v1/experiments/pin-card/stop", headers=auth("pm")).status_code == 200
        deadline = time.monotonic() + 5
        while serving.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not serving.running
    finally:
        other.extensions["wallet_market"].close()
