"""``POST /partner/v1/postbacks``: signed, replay-protected, idempotent, attributed, reversible (guard 9)."""
import time
from pathlib import Path

import orjson
import pytest

from wallet_market.services.catalogue_files import read_catalogue_file
from wallet_market.domain.signing import signed_headers
from wallet_market.services.ledger_worker import LedgerWorker
from wallet_market.services.tokens import Impression

CATALOGUE_FILE = Path(__file__).resolve().parent.parent / "funnel_catalogue.toml"
PARTNERS = ["lender_a", "bank_b", "card_c", "lender_e", "lender_f"]
SECRETS = {p: f"{p}-secret-0123456789" for p in PARTNERS}


@pytest.fixture
def market(app, comps):
    """The app serving tests/funnel_catalogue.toml, every partner with its signing secret."""
    catalogue = read_catalogue_file(CATALOGUE_FILE)
    for partner in catalogue["partners"]:
        partner["signing_secret"] = SECRETS[partner["partner_id"]]
    comps.admin.load(catalogue, actor="test", publish=True)
    comps.snapshots.refresh()
    return comps


def sign_in(comps, user_id, tier="A"):
    comps.profiles.users.put_profile(user_id, {
        "user_id": user_id, "risk_tier": tier, "in_house_decision": {"status": "none", "decided_at": None},
        "consents": {"personalized": True, "share_with_partners": PARTNERS},
    })
    return comps.user_tokens.mint(user_id)


def layout(client, auth, user_token):
    response = client.get("/v1/layout?page=home", headers=auth("app", **{"X-User-Token": user_token}))
    assert response.status_code == 200
    return {s["slot"]: s for s in response.json["slots"]}


def send(client, partner, body, *, secret=None, now=None):
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = signed_headers(partner, secret or SECRETS.get(partner, "x" * 20), raw, now=now)
    return client.post("/partner/v1/postbacks", data=raw, headers={**headers, "Content-Type": "application/json"})


def work(comps):
    return LedgerWorker(comps.redis, comps.keys, consumer="test", claim_idle_ms=1, block_ms=1).run_until_idle()


def revenue(client, auth, group_by="partner"):
    today = time.strftime("%Y-%m-%d", time.gmtime())
    response = client.get(f"/finance/v1/revenue?from={today}&to={today}&group_by={group_by}", headers=auth("finance"))
    assert response.status_code == 200
    return {row[group_by]: row for row in response.json["rows"]}


@pytest.fixture
def top_token(client, auth, market):
    """The impression token of cps_loan (lender_a's), on top of a tier-A user's home page."""
    slots = layout(client, auth, sign_in(market, "u1"))
    assert slots["top"]["product"]["product_id"] == "cps_loan"
    return slots["top"]["impression_token"]


def test_guard_9_a_postback_is_recorded_once_per_event_id(client, auth, market, top_token):
    body = {"event_id": "loan-1", "type": "disbursed", "impression_token": top_token, "amount": 2_000_000}
    first = send(client, "lender_a", body)
    assert first.status_code == 202 and first.json == {"status": "accepted", "event_id": "loan-1"}
    again = send(client, "lender_a", body)
    assert again.status_code == 200 and again.json == {"status": "duplicate", "event_id": "loan-1"}
    work(market)
    row = revenue(client, auth)["lender_a"]
    # one loan of 20,000 RMB at 3% CPS: 600 RMB = 60,000 fen, counted once
    assert (row["loans"], row["disbursed_fen"], row["platform_revenue_fen"]) == (1, 2_000_000, 60_000)


def test_guard_9_a_reversal_takes_back_exactly_the_revenue_once(client, auth, market, top_token):
    assert send(client, "lender_a", {"event_id": "loan-1", "type": "disbursed", "impression_token": top_token,
                                     "amount": 1_500_000}).status_code == 202
    work(market)
    assert revenue(client, auth)["lender_a"]["platform_revenue_fen"] == 45_000  # 3% of 15,000 RMB
    undo = {"event_id": "undo-1", "type": "reversed", "reverses": "loan-1"}
    assert send(client, "lender_a", undo).status_code == 202
    assert send(client, "lender_a", undo).status_code == 200
    second = send(client, "lender_a", {"event_id": "undo-2", "type": "reversed", "reverses": "loan-1"})
    assert second.status_code == 409 and "reverses" in second.json["errors"]
    work(market)
    row = revenue(client, auth)["lender_a"]
    assert (row["loans"], row["disbursed_fen"], row["platform_revenue_fen"], row["group_contribution_fen"]) == (0, 0, 0, 0)


def test_guard_9_a_postback_replayed_after_the_window_is_refused(client, market, top_token):
    body = {"event_id": "app-1", "type": "applied", "impression_token": top_token}
    window = market.settings.postback_replay_window_seconds
    stale = send(client, "lender_a", body, now=time.time() - window - 5)
    assert stale.status_code == 401
    assert stale.json["errors"] == {"X-Timestamp": ["stale_timestamp"]}
    assert send(client, "lender_a", body, now=time.time() - window + 30).status_code == 202


def test_guard_9_unknown_partners_and_bad_signatures_are_401(client, market, top_token):
    body = orjson.dumps({"event_id": "x-1", "type": "applied", "impression_token": top_token})
    assert send(client, "stranger", body).status_code == 401
    wrong = send(client, "lender_a", body, secret="not-lender-a-secret")
    assert wrong.status_code == 401 and wrong.json["errors"] == {"X-Signature": ["bad_signature"]}
    unsigned = client.post("/partner/v1/postbacks", data=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    # signed, then tampered with in transit
    headers = signed_headers("lender_a", SECRETS["lender_a"], body)
    tampered = body.replace(b"applied", b"approved")
    assert client.post("/partner/v1/postbacks", data=tampered, headers=headers).status_code == 401


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"event_id": "b-1", "type": "paid", "impression_token": "t"}, "type", 422),
        ({"type": "applied", "impression_token": "t"}, "event_id", 422),
        ({"event_id": "b-1", "type": "disbursed"}, "amount", 422),
        ({"event_id": "b-1", "type": "reversed"}, "reverses", 422),
        ({"event_id": "b-1", "type": "reversed", "reverses": "b-1"}, "reverses", 422),
        ({"event_id": "b-1", "type": "applied"}, "impression_token", 422),
        ({"event_id": "b-1", "type": "applied", "impression_token": "forged"}, "impression_token", 422),
        ({"event_id": "b-1", "type": "disbursed", "impression_token": "t", "amount": "lots"}, "amount", 422),
        ({"event_id": "b-1", "type": "applied", "impression_token": "t", "occurred_at": "soon"}, "occurred_at", 422),
        ({"event_id": "b-1", "type": "applied", "impression_token": "t", "phone": "13800138000"}, "phone", 422),
    ],
)
def test_guard_10_malformed_postbacks_get_a_4xx_naming_the_field(client, market, body, field, status):
    response = send(client, "lender_a", body)
    assert response.status_code == status
    assert field in response.json["errors"], response.json


def test_malformed_json_is_a_400(client, market):
    assert send(client, "lender_a", b"{not json").status_code == 400
    assert send(client, "lender_a", b"[1, 2]").status_code == 400


def test_a_partner_may_only_report_on_its_own_products(client, market, top_token):
    response = send(client, "bank_b", {"event_id": "s-1", "type": "approved", "impression_token": top_token})
    assert response.status_code == 422
    assert response.json["errors"] == {"impression_token": ["product 'cps_loan' is not 'bank_b''s"]}


def test_a_conversion_weeks_after_the_impression_is_still_attributed(client, market):
    issued = int(time.time()) - 20 * 86_400  # its token expired long ago (one day), its signature still proves it
    token = market.impression_tokens.sign(Impression(
        decision_id="old", page_id="home", slot_id="mid", position=1, product_id="gold_card", ruleset_version=1,
        user_id="u1", risk_tier="B", propensity_bps=10_000, issued_at=issued,
    ))
    assert send(client, "card_c", {"event_id": "card-1", "type": "approved", "impression_token": token}).status_code == 202


def test_after_applying_the_user_is_not_shown_that_partner_for_the_cool_down(client, auth, market, top_token):
    assert send(client, "lender_a", {"event_id": "a-1", "type": "applied", "impression_token": top_token}).status_code == 202
    work(market)
    shown = {s["product"]["product_id"] for s in layout(client, auth, market.user_tokens.mint("u1")).values()}
    assert "cps_loan" not in shown
    other = {s["product"]["product_id"] for s in layout(client, auth, sign_in(market, "u2")).values()}
    assert "cps_loan" in other


def test_the_partner_secret_is_set_through_the_admin_api_and_never_returned(client, auth, market, top_token):
    partner = client.get("/admin/v1/partners/lender_a", headers=auth("pm")).json
    assert "signing_secret" not in partner
    rotated = "lender-a-rotated-secret-42"
    response = client.put("/admin/v1/partners/lender_a", json={**partner, "signing_secret": rotated}, headers=auth("pm"))
    assert response.status_code == 200 and "signing_secret" not in response.json
    body = {"event_id": "r-1", "type": "applied", "impression_token": top_token}
    assert send(client, "lender_a", body).status_code == 401  # the old secret no longer works
    assert send(client, "lender_a", body, secret=rotated).status_code == 202


def test_the_in_house_lender_reports_the_same_way(cli, client, auth, market):
    result = cli("postback-secret", "in_house", "--secret", "in-house-secret-0123")
    assert result.exit_code == 0, result.output
    slots = layout(client, auth, sign_in(market, "u5", tier="B"))
    own = slots["mid"]
    assert own["product"]["product_id"] == "own_loan"
    lent = {"event_id": "ih-1", "type": "disbursed", "impression_token": own["impression_token"], "amount": 800_000}
    assert send(client, "in_house", lent, secret="in-house-secret-0123").status_code == 202
    rejected = {"event_id": "ih-2", "type": "rejected", "impression_token": own["impression_token"]}
    assert send(client, "in_house", rejected, secret="in-house-secret-0123").status_code == 202
    assert send(client, "in_house", lent, secret=SECRETS["lender_a"]).status_code == 401
    work(market)
    row = revenue(client, auth)["in_house"]
    # 8,000 RMB to a tier-B user: 1% transfer price = 8,000 fen; contribution 800,000 × 13/24 × 7.5% = 32,500 fen
    assert (row["loans"], row["platform_revenue_fen"], row["group_contribution_fen"]) == (1, 8_000, 32_500)
    # the rejection starts the in-house decline cool-down: the in-house loan is no longer offered to u5
    shown = {s["product"]["product_id"] for s in layout(client, auth, market.user_tokens.mint("u5")).values()}
    assert "own_loan" not in shown


def test_a_secret_for_an_unknown_partner_is_refused(cli, market):
    result = cli("postback-secret", "nobody")
    assert result.exit_code != 0
    assert "no partner 'nobody'" in result.output
