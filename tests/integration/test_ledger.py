"""The ledger on a real Redis: ingestion once, application once, reversals exactly once."""
import threading
import tomllib
from pathlib import Path

import orjson
import pytest

from wallet_market.domain.funnel import LedgerEvent, app_event_key, revenue_rows
from wallet_market.services.ledger_worker import LedgerWorker
from wallet_market.store.caps import UserFacts
from wallet_market.store.catalogue import CatalogueStore
from wallet_market.store.keys import Keys
from wallet_market.store.ledger import Ledger

CATALOGUE = tomllib.loads((Path(__file__).resolve().parent.parent / "funnel_catalogue.toml").read_text(encoding="utf-8"))
DAY1 = 1_767_268_800  # 2026-01-01 12:00 UTC
DAY2 = DAY1 + 86_400  # 2026-01-02 12:00 UTC
MICRO = 1_000_000


@pytest.fixture
def keys(key_prefix):
    return Keys(key_prefix)


@pytest.fixture
def ledger(redis_client, keys):
    CatalogueStore(redis_client, keys).publish(CATALOGUE, actor="test", expected_revision=0)
    return Ledger(redis_client, keys)


def worker(redis_client, keys, name="w1", **options):
    return LedgerWorker(redis_client, keys, consumer=name, claim_idle_ms=1, block_ms=10, **options)


def app_event(kind, product, *, decision="d1", slot="top", user="u1", tier="A", at=DAY1):
    return LedgerEvent(type=kind, occurred_at=at, source="app", decision_id=decision, page_id="home",
                       slot_id=slot, product_id=product, ruleset_version=1, user_id=user, risk_tier=tier)


def postback(partner, event_id, kind, product="", *, amount=0, reverses="", user="u1", at=DAY1):
    return LedgerEvent(type=kind, occurred_at=at, source=partner, decision_id="d1" if product else "",
                       page_id="home" if product else "", slot_id="top" if product else "", product_id=product,
                       ruleset_version=1 if product else 0, user_id=user if product else None,
                       risk_tier="A" if product else None, event_id=event_id, amount_fen=amount, reverses=reverses)


def append(ledger, *events):
    return ledger.append_app_events([(app_event_key(e.decision_id, e.slot_id, e.type), e) for e in events], 3600)


def rows(ledger, group_by, *days):
    return {row[group_by]: row for row in revenue_rows(ledger.counters(list(days)), group_by)}


def test_app_events_are_appended_once_and_counted_once(redis_client, keys, ledger):
    shown = [app_event("impression", "cps_loan", slot="top"), app_event("impression", "own_loan", slot="mid")]
    assert append(ledger, *shown, shown[0]) == [True, True, False]  # the repeat within the batch
    assert append(ledger, *shown) == [False, False]  # and in a later batch
    assert worker(redis_client, keys).run_until_idle() == 2
    assert worker(redis_client, keys, "w2").run_until_idle() == 0
    by_product = rows(ledger, "product", "20260101")
    assert by_product["cps_loan"]["impressions"] == 1
    # cps_loan on top for tier A: 136.08 fen expected; own_loan in mid (60%): 51.1875 × 0.6 = 30.7125 → 31 fen
    assert by_product["cps_loan"]["expected_platform_revenue_fen"] == 136
    assert by_product["own_loan"]["expected_group_contribution_fen"] == 31
    assert by_product["own_loan"]["expected_platform_revenue_fen"] == 6  # 10.5 × 0.6 = 6.3
    assert UserFacts(redis_client, keys).impressions("u1", "20260101") == {"cps_loan": 1, "own_loan": 1}
    assert ledger.learned_counts(["20260101"]) == {
        "cps_loan|A|imp": 1, "cps_loan|A|wimp": 10_000, "own_loan|A|imp": 1, "own_loan|A|wimp": 6_000,
    }


def test_postbacks_are_idempotent_on_the_partners_event_id(redis_client, keys, ledger):
    lent = postback("lender_a", "e1", "disbursed", "cps_loan", amount=2_000_000)
    assert ledger.append_postback(lent) == "accepted"
    assert ledger.append_postback(lent) == "duplicate"
    assert ledger.append_postback(postback("lender_e", "e1", "applied", "app_loan")) == "accepted"  # another partner's e1
    worker(redis_client, keys).run_until_idle()
    by_partner = rows(ledger, "partner", "20260101")
    # 3% of 20,000 RMB = 600 RMB = 60,000 fen; one application at 30 RMB = 3,000 fen
    assert by_partner["lender_a"]["loans"] == 1
    assert by_partner["lender_a"]["platform_revenue_fen"] == 60_000
    assert by_partner["lender_e"]["applications"] == 1
    assert by_partner["lender_e"]["platform_revenue_fen"] == 3_000


@pytest.mark.parametrize("reversal_first", [False, True])
def test_a_reversal_takes_back_exactly_the_revenue_of_what_it_reverses_once(redis_client, keys, ledger, reversal_first):
    lent = postback("lender_a", "loan-1", "disbursed", "cps_loan", amount=1_000_000, at=DAY1)
    undo = postback("lender_a", "undo-1", "reversed", reverses="loan-1", at=DAY2)
    first, second = (undo, lent) if reversal_first else (lent, undo)
    assert ledger.append_postback(first) == "accepted"
    worker(redis_client, keys).run_until_idle()
    assert ledger.append_postback(second) == "accepted"
    assert ledger.append_postback(undo) == "duplicate"
    worker(redis_client, keys).run_until_idle()

    # Booked when each happened: +30,000 fen (3% of 10,000 RMB) on day 1, −30,000 fen on day 2.
    day1 = rows(ledger, "partner", "20260101")["lender_a"]
    day2 = rows(ledger, "partner", "20260102")["lender_a"]
    assert (day1["loans"], day1["disbursed_fen"], day1["platform_revenue_fen"]) == (1, 1_000_000, 30_000)
    assert (day2["loans"], day2["disbursed_fen"], day2["platform_revenue_fen"]) == (-1, -1_000_000, -30_000)
    both = rows(ledger, "partner", "20260101", "20260102")["lender_a"]
    assert (both["loans"], both["platform_revenue_fen"], both["group_contribution_fen"]) == (0, 0, 0)
    record = ledger.postback_record("lender_a", "loan-1")
    assert record["reversed_by"] == "undo-1" and record["reversal_applied"] == "1"


def test_an_event_is_reversed_at_most_once(redis_client, keys, ledger):
    assert ledger.append_postback(postback("bank_b", "line-1", "approved", "line_loan")) == "accepted"
    assert ledger.append_postback(postback("bank_b", "undo-1", "reversed", reverses="line-1")) == "accepted"
    assert ledger.append_postback(postback("bank_b", "undo-2", "reversed", reverses="line-1")) == "already_reversed"
    assert ledger.append_postback(postback("bank_b", "undo-3", "reversed", reverses="undo-1")) == "reverses_a_reversal"
    worker(redis_client, keys).run_until_idle()
    line = rows(ledger, "partner", "20260101")["bank_b"]
    assert (line["approvals"], line["platform_revenue_fen"]) == (0, 0)  # 200 RMB earned, then taken back once


def test_a_worker_that_dies_between_its_steps_leaves_exact_counters(redis_client, keys, ledger):
    append(ledger, *(app_event("impression", "gold_card", decision=f"d{i}", slot="low") for i in range(5)))
    assert ledger.append_postback(postback("card_c", "card-1", "approved", "gold_card")) == "accepted"
    doomed = worker(redis_client, keys, "doomed")
    doomed.ledger.ensure_group()
    batch = [(e.entry_id, e.event) for e in doomed.ledger.read_new("doomed", 100, None)]
    assert len(batch) == 6
    doomed.apply_user_effects(batch)  # ... and the process dies here, before its counters

    assert worker(redis_client, keys, "heir").run_until_idle() == 6
    assert UserFacts(redis_client, keys).impressions("u1", "20260101") == {"gold_card": 5}
    card = rows(ledger, "product", "20260101")["gold_card"]
    # five impressions in the 30% slot: 24 fen × 0.3 × 5 = 36 fen expected; one approved card earns 150 RMB
    assert (card["impressions"], card["approvals"], card["platform_revenue_fen"]) == (5, 1, 15_000)
    assert card["expected_platform_revenue_fen"] == 36
    assert UserFacts(redis_client, keys).suppressed("u1") == {"card_c": DAY1 + 30 * 86_400}


def test_two_workers_holding_the_same_entries_apply_them_once(redis_client, keys, ledger):
    append(ledger, *(app_event("click", "click_loan", decision=f"d{i}") for i in range(50)))
    slow = worker(redis_client, keys, "slow")
    slow.ledger.ensure_group()
    held = slow.ledger.read_new("slow", 100, None)
    fast = worker(redis_client, keys, "fast")
    claimed = fast.ledger.claim_stale("fast", 0, 100)  # the slow one looks dead and its entries are claimed
    assert len(held) == len(claimed) == 50
    applied = []
    threads = [threading.Thread(target=lambda w=w, e=e: applied.append(w.process(e))) for w, e in ((slow, held), (fast, claimed))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(applied) == [0, 50]  # each batch is one script: whoever runs second finds all acknowledged
    clicks = rows(ledger, "product", "20260101")["click_loan"]
    assert (clicks["clicks"], clicks["platform_revenue_fen"]) == (50, 5_000)  # 50 × 1 RMB


def test_an_in_house_rejection_starts_the_decline_cool_down(redis_client, keys, ledger):
    assert ledger.append_postback(postback("in_house", "ih-1", "rejected", "own_loan", user="u9")) == "accepted"
    worker(redis_client, keys).run_until_idle()
    stored = orjson.loads(redis_client.get(keys.profile("u9")))
    assert stored["in_house_decision"] == {"status": "declined", "decided_at": "2026-01-01"}
    assert stored["consents"] == {"personalized": False, "share_with_partners": []}  # the safest profile
    assert UserFacts(redis_client, keys).suppressed("u9") == {}  # the in-house product is governed by the cool-down


def test_stream_lag_counts_what_is_not_applied_yet(redis_client, keys, ledger):
    w = worker(redis_client, keys)
    w.ledger.ensure_group()
    append(ledger, *(app_event("impression", "own_loan", decision=f"d{i}") for i in range(7)))
    assert ledger.lag() == 7
    w.run_until_idle()
    assert ledger.lag() == 0


def test_entries_the_worker_cannot_read_are_set_aside_not_retried_forever(redis_client, keys, ledger):
    w = worker(redis_client, keys)
    w.ledger.ensure_group()
    redis_client.xadd(keys.event_stream(), {"e": b"{not json"})
    append(ledger, app_event("impression", "own_loan"))
    assert w.run_until_idle() == 1
    assert ledger.lag() == 0
    (_, fields), = redis_client.xrange(keys.dead_letters())
    assert fields[b"reason"] == b"unreadable" and fields[b"e"] == b"{not json"


def test_applied_entries_are_trimmed_and_pending_ones_kept(redis_client, keys, ledger):
    append(ledger, *(app_event("impression", "own_loan", decision=f"a{i}") for i in range(3)))
    worker(redis_client, keys).run_until_idle()
    append(ledger, *(app_event("impression", "own_loan", decision=f"b{i}") for i in range(2)))
    held = ledger.read_new("slow", 10, None)  # delivered, not yet applied
    assert len(held) == 2
    now_ms = int(redis_client.time()[0] * 1000) + 10_000
    ledger.trim(keep_seconds=0, now_ms=now_ms)
    assert [entry_id.decode() for entry_id, _ in redis_client.xrange(keys.event_stream())] == [e.entry_id for e in held]
