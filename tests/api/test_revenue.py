"""``GET /finance/v1/revenue``: earned revenue beside the model's expectation, grouped for finance."""
import time
from pathlib import Path

import orjson
import pytest

from wallet_market.services.catalogue_files import read_catalogue_file
from wallet_market.domain.signing import signed_headers
from wallet_market.services.ledger_worker import LedgerWorker

CATALOGUE_FILE = Path(__file__).resolve().parent.parent / "funnel_catalogue.toml"
PARTNERS = ["lender_a", "bank_b", "card_c", "lender_e", "lender_f"]
SECRET = "shared-test-secret-0123456789"
ROW_FIELDS = {
    "impressions", "clicks", "applications", "approvals", "loans", "disbursed_fen", "platform_revenue_fen",
    "group_contribution_fen", "expected_platform_revenue_fen", "expected_group_contribution_fen",
}


@pytest.fixture
def today():
    return time.strftime("%Y-%m-%d", time.gmtime())


@pytest.fixture
def earned(app, client, comps, auth):
    """One tier-A user's and one visitor's home page seen, a card clicked and approved, a CPS loan lent."""
    catalogue = read_catalogue_file(CATALOGUE_FILE)
    for partner in catalogue["partners"]:
        partner["signing_secret"] = SECRET
    comps.admin.load(catalogue, actor="test", publish=True)
    comps.snapshots.refresh()
    comps.profiles.users.put_profile("u1", {"user_id": "u1", "risk_tier": "A",
                                   "consents": {"personalized": True, "share_with_partners": PARTNERS}})
    user = client.get("/v1/layout?page=home", headers=auth("app", **{"X-User-Token": comps.user_tokens.mint("u1")})).json
    visitor = client.get("/v1/layout?page=home", headers=auth("app")).json
    shown = {s["slot"]: s for s in user["slots"]}
    assert [s["product"]["product_id"] for s in user["slots"]] == ["cps_loan", "own_loan", "gold_card"]
    assert [s["product"]["product_id"] for s in visitor["slots"]] == ["own_loan"]
    events = [{"type": "impression", "impression_token": s["impression_token"]} for s in user["slots"] + visitor["slots"]]
    events.append({"type": "click", "impression_token": shown["low"]["impression_token"]})
    assert client.post("/v1/events", json={"events": events}, headers=auth("app")).json["accepted"] == 5
    for partner, body in (
        ("card_c", {"event_id": "c1", "type": "approved", "impression_token": shown["low"]["impression_token"]}),
        ("lender_a", {"event_id": "l1", "type": "disbursed", "impression_token": shown["top"]["impression_token"],
                      "amount": 1_000_000}),
    ):
        raw = orjson.dumps(body)
        assert client.post("/partner/v1/postbacks", data=raw, headers=signed_headers(partner, SECRET, raw)).status_code == 202
    LedgerWorker(comps.redis, comps.keys, consumer="test", claim_idle_ms=1, block_ms=1).run_until_idle()
    return comps


def revenue(client, auth, group_by, first, last=None):
    response = client.get(f"/finance/v1/revenue?from={first}&to={last or first}&group_by={group_by}", headers=auth("finance"))
    assert response.status_code == 200, response.json
    body = response.json
    assert body["group_by"] == group_by and body["from"] == first
    for row in body["rows"]:
        assert set(row) == ROW_FIELDS | {group_by}
    return {row[group_by]: row for row in body["rows"]}


def test_revenue_by_channel_shows_earned_beside_expected(client, auth, earned, today):
    rows = revenue(client, auth, "channel", today)
    # cps: cps_loan on top for tier A, expected 136.08 fen; a 10,000 RMB loan at 3% earned 300 RMB.
    assert rows["cps"] == {
        "channel": "cps", "impressions": 1, "clicks": 0, "applications": 0, "approvals": 0, "loans": 1,
        "disbursed_fen": 1_000_000, "platform_revenue_fen": 30_000, "group_contribution_fen": 30_000,
        "expected_platform_revenue_fen": 136, "expected_group_contribution_fen": 136,
    }
    # per_card: gold_card in the 30% slot, 24 × 0.3 = 7.2 fen expected; one approved card, 150 RMB.
    assert rows["per_card"] == {
        "channel": "per_card", "impressions": 1, "clicks": 1, "applications": 0, "approvals": 1, "loans": 0,
        "disbursed_fen": 0, "platform_revenue_fen": 15_000, "group_contribution_fen": 15_000,
        "expected_platform_revenue_fen": 7, "expected_group_contribution_fen": 7,
    }
    # self: own_loan for the tier-A user in the 60% slot (platform 10.5 × 0.6 = 6.3, group 51.1875 × 0.6 = 30.7125)
    # and on top for the visitor, whose tier is unknown: approval 23.75% (mean of tiers), annual loss 5.12%
    # (mean, whole bps), so 3% × 25% × 23.75% × 50% = 0.000890625 loans per impression:
    #   platform 0.000890625 × 800,000 × 1% = 7.125 fen
    #   group    0.000890625 × 800,000 × 13/24 × (18 − 3 − 5.12 − 2 − 1.5)% = 24.6228 fen
    # in all 13.425 → 13 fen and 55.3353 → 55 fen, rounded once.
    assert rows["self"]["impressions"] == 2
    assert rows["self"]["expected_platform_revenue_fen"] == 13
    assert rows["self"]["expected_group_contribution_fen"] == 55
    assert rows["self"]["platform_revenue_fen"] == 0


def test_revenue_groups_by_partner_product_slot_tier_and_day(client, auth, earned, today):
    assert {p: r["platform_revenue_fen"] for p, r in revenue(client, auth, "partner", today).items()} == {
        "card_c": 15_000, "in_house": 0, "lender_a": 30_000,
    }
    assert {p: r["impressions"] for p, r in revenue(client, auth, "product", today).items()} == {
        "cps_loan": 1, "gold_card": 1, "own_loan": 2,
    }
    assert {s: r["impressions"] for s, r in revenue(client, auth, "slot", today).items()} == {
        "home/top": 2, "home/mid": 1, "home/low": 1,
    }
    tiers = revenue(client, auth, "risk_tier", today)
    assert set(tiers) == {"A", None}  # None: the visitor
    assert tiers[None]["impressions"] == 1 and tiers["A"]["platform_revenue_fen"] == 45_000
    days = revenue(client, auth, "day", today)
    assert list(days) == [today] and days[today]["loans"] == 1


def test_without_from_and_to_the_answer_covers_the_last_7_days_and_says_so(client, auth, earned, today):
    from datetime import date, timedelta

    response = client.get("/finance/v1/revenue?group_by=day", headers=auth("finance"))
    assert response.status_code == 200, response.json
    body = response.json
    week_ago = (date.fromisoformat(today) - timedelta(days=6)).isoformat()
    assert (body["from"], body["to"]) == (week_ago, today)
    assert "last 7 days" in body["note"] and week_ago in body["note"] and today in body["note"]
    assert [row["day"] for row in body["rows"]] == [today]

    only_to = client.get("/finance/v1/revenue?to=2026-01-10", headers=auth("finance")).json
    assert (only_to["from"], only_to["to"]) == ("2026-01-04", "2026-01-10") and "from not given" in only_to["note"]
    given = client.get(f"/finance/v1/revenue?from={today}&to={today}", headers=auth("finance")).json
    assert "note" not in given


def test_days_without_events_have_no_rows(client, auth, earned):
    assert revenue(client, auth, "channel", "2001-01-01", "2001-01-31") == {}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-01-02&to=2026-01-01", "to"),
        ("from=2026-01-01&to=2026-01-01&group_by=colour", "group_by"),
        ("from=2024-01-01&to=2026-01-01", "to"),
        ("from=yesterday&to=2026-01-01", "from"),
    ],
)
def test_bad_queries_name_the_field(client, auth, app, query, field):
    response = client.get(f"/finance/v1/revenue?{query}", headers=auth("finance"))
    assert response.status_code == 422
    errors = response.json["errors"]
    assert field in errors.get("query", errors), response.json


def test_only_finance_reads_revenue(client, auth, app):
    assert client.get("/finance/v1/revenue?from=2026-01-01&to=2026-01-01", headers=auth("app")).status_code == 403
    assert client.get("/finance/v1/revenue?from=2026-01-01&to=2026-01-01").status_code == 401
