"""A poison entry cannot wedge the ledger: it is retried a few times, set aside with its reason, and replayed once."""
import copy
import tomllib
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY

from wallet_market import metrics
from wallet_market.domain.funnel import LedgerEvent, app_event_key, revenue_rows
from wallet_market.services.ledger_worker import LedgerWorker
from wallet_market.store.catalogue import CatalogueStore
from wallet_market.store.keys import Keys
from wallet_market.store.ledger import Ledger, encode_event

CATALOGUE = tomllib.loads((Path(__file__).resolve().parent.parent / "funnel_catalogue.toml").read_text(encoding="utf-8"))
DAY1 = 1_767_268_800  # 2026-01-01 12:00 UTC
DAY2 = DAY1 + 86_400  # 2026-01-02 12:00 UTC
INT64_MAX = 2**63 - 1
# lender_a's cps_loan disbursals on 2026-01-02, as the counters name them
DISBURSED_FIELD = "cps|lender_a|cps_loan|home|top|A|disbursed_fen"
LOANS_FIELD = "cps|lender_a|cps_loan|home|top|A|loans"


@pytest.fixture
def keys(key_prefix):
    return Keys(key_prefix)


@pytest.fixture
def ledger(redis_client, keys):
    CatalogueStore(redis_client, keys).publish(CATALOGUE, actor="test", expected_revision=0)
    ledger = Ledger(redis_client, keys)
    ledger.ensure_group()
    return ledger


def worker(redis_client, keys, **options):
    return LedgerWorker(redis_client, keys, consumer="w1", claim_idle_ms=1, block_ms=10, **options)


def impressions(ledger, *decisions, at=DAY1):
    events = [
        LedgerEvent(type="impression", occurred_at=at, source="app", decision_id=d, page_id="home", slot_id="mid",
                    product_id="own_loan", ruleset_version=1, user_id="u1", risk_tier="A")
        for d in decisions
    ]
    assert ledger.append_app_events([(app_event_key(e.decision_id, e.slot_id, e.type), e) for e in events], 3600)


def disbursal(event_id, amount_fen):
    return LedgerEvent(type="disbursed", occurred_at=DAY2, source="lender_a", decision_id="d9", page_id="home",
                       slot_id="top", product_id="cps_loan", ruleset_version=1, user_id="u1", risk_tier="A",
                       event_id=event_id, amount_fen=amount_fen)


def by_product(ledger, *days):
    return {row["product"]: row for row in revenue_rows(ledger.counters(list(days)), "product")}


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_poison_entry_between_good_ones_is_set_aside_and_the_stream_keeps_flowing(redis_client, keys, ledger):
    metrics.WORKER_APPLY_FAILURES  # created before the first sample is read
    before = {o: sample("wallet_market_worker_apply_failures_total", outcome=o) for o in ("retried", "set_aside")}
    # A counter someone left next to its limit: the next disbursal on it cannot be added.
    redis_client.hset(keys.counters("20260102"), DISBURSED_FIELD, INT64_MAX - 10)
    impressions(ledger, "a1", "a2", "a3")
    poison = redis_client.xadd(keys.event_stream(), {"e": encode_event(disbursal("loan-1", 2_000_000))}).decode()
    impressions(ledger, "b1", "b2")

    assert worker(redis_client, keys).run_until_idle() == 5
    assert by_product(ledger, "20260101")["own_loan"]["impressions"] == 5
    assert ledger.lag() == 0 and redis_client.xpending(keys.event_stream(), "ledger")["pending"] == 0
    (dead,) = ledger.dead_letters()
    assert dead.entry_id == poison and dead.attempts == 3
    assert "overflow" in dead.reason and DISBURSED_FIELD in dead.reason
    assert dead.event == disbursal("loan-1", 2_000_000)
    # nothing of the poison entry was kept: its loan count was taken back when its amount failed
    assert redis_client.hget(keys.counters("20260102"), LOANS_FIELD) in (None, b"0")
    assert not redis_client.exists(keys.apply_failures())
    assert sample("wallet_market_worker_apply_failures_total", outcome="retried") - before["retried"] == 2
    assert sample("wallet_market_worker_apply_failures_total", outcome="set_aside") - before["set_aside"] == 1

    # The cause is fixed; the replay counts the disbursal exactly once: 1 loan, 3% of 20,000 RMB = 60,000 fen.
    redis_client.hdel(keys.counters("20260102"), DISBURSED_FIELD)
    replayed = ledger.replay_dead_letter(dead.dead_letter_id)
    assert replayed is not None and ledger.replay_dead_letter(dead.dead_letter_id) is None
    assert ledger.dead_letters() == []
    assert worker(redis_client, keys).run_until_idle() == 1
    assert worker(redis_client, keys).run_until_idle() == 0
    loan = by_product(ledger, "20260102")["cps_loan"]
    assert (loan["loans"], loan["disbursed_fen"], loan["platform_revenue_fen"]) == (1, 2_000_000, 60_000)


def test_a_key_of_the_wrong_type_fails_only_its_own_entries(redis_client, keys, ledger):
    redis_client.set(keys.counters("20260102"), "not a hash")
    impressions(ledger, "a1")
    impressions(ledger, "c1", at=DAY2)
    impressions(ledger, "a2")
    assert worker(redis_client, keys, attempts=2).run_until_idle() == 2
    (dead,) = ledger.dead_letters()
    assert dead.attempts == 2 and "holds a string, not a hash" in dead.reason
    assert by_product(ledger, "20260101")["own_loan"]["impressions"] == 2
    assert redis_client.get(keys.counters("20260102")) == b"not a hash"


def test_an_amount_beyond_any_loan_is_set_aside_at_once(redis_client, keys, ledger):
    redis_client.xadd(keys.event_stream(), {"e": encode_event(disbursal("loan-2", 10**19))})
    impressions(ledger, "a1")
    assert worker(redis_client, keys).run_until_idle() == 1
    (dead,) = ledger.dead_letters()
    assert dead.attempts == 1 and dead.reason == "amount_fen 10000000000000000000 is outside 0–100000000 fen"


def test_replaying_a_dead_letter_repeats_no_effect_on_the_user(redis_client, keys, ledger):
    from wallet_market.store.caps import UserFacts

    redis_client.hset(keys.counters("20260101"), "self|in_house|own_loan|home|mid|A|impressions", "x")
    impressions(ledger, "a1")
    worker(redis_client, keys).run_until_idle()
    (dead,) = ledger.dead_letters()
    assert UserFacts(redis_client, keys).impressions("u1", "20260101") == {"own_loan": 1}  # applied on the first try
    redis_client.delete(keys.counters("20260101"))
    ledger.replay_dead_letter(dead.dead_letter_id)
    assert worker(redis_client, keys).run_until_idle() == 1
    assert by_product(ledger, "20260101")["own_loan"]["impressions"] == 1
    assert UserFacts(redis_client, keys).impressions("u1", "20260101") == {"own_loan": 1}  # not twice


# -- counters that cannot overflow --------------------------------------------------------------------------------


def _clicks_catalogue(fee_fen):
    body = copy.deepcopy(CATALOGUE)
    for product in body["products"]:
        if product["product_id"] == "click_loan":
            product["settlement"]["fee_fen"] = fee_fen
    return body


def clicks(ledger, count):
    events = [
        LedgerEvent(type="click", occurred_at=DAY1, source="app", decision_id=f"k{n}", page_id="home", slot_id="low",
                    product_id="click_loan", ruleset_version=1, user_id="u1", risk_tier="A")
        for n in range(count)
    ]
    ledger.append_app_events([(app_event_key(e.decision_id, e.slot_id, e.type), e) for e in events], 3600)


def test_revenue_far_beyond_a_64_bit_count_of_micro_fen_is_summed_exactly(redis_client, keys):
    # Written without the guards: a fee of 10^12 fen a click; ten clicks earn 10^19 micro-fen, above 2^63.
    CatalogueStore(redis_client, keys).publish(_clicks_catalogue(10**12), actor="test", expected_revision=0)
    ledger = Ledger(redis_client, keys)
    clicks(ledger, 10)
    assert worker(redis_client, keys).run_until_idle() == 10
    assert by_product(ledger, "20260101")["click_loan"]["platform_revenue_fen"] == 10**13
    stored = redis_client.hgetall(keys.counters("20260101"))
    field = "per_click|lender_f|click_loan|home|low|A|platform_revenue_micro_fen"
    assert (int(stored[field.encode()]), int(stored[(field + "_e12").encode()])) == (0, 10**7)


def test_the_low_part_carries_whole_units_into_the_high_part(redis_client, keys, ledger):
    field = "per_click|lender_f|click_loan|home|low|A|platform_revenue_micro_fen"
    redis_client.hset(keys.counters("20260101"), field, 10**12 - 1)  # one micro-fen short of a carry
    clicks(ledger, 1)  # 1 RMB = 100 fen = 10^8 micro-fen
    worker(redis_client, keys).run_until_idle()
    stored = redis_client.hgetall(keys.counters("20260101"))
    # 999,999,999,999 + 100,000,000 = 1,000,099,999,999 micro-fen = 1 unit of 10^12 and 99,999,999
    assert (int(stored[field.encode()]), int(stored[(field + "_e12").encode()])) == (99_999_999, 1)
    # read back: 1,000,099.999999 fen, rounded half-up once
    assert by_product(ledger, "20260101")["click_loan"]["platform_revenue_fen"] == 1_000_100


def test_a_large_reversal_takes_back_both_parts(redis_client, keys):
    body = copy.deepcopy(CATALOGUE)
    for product in body["products"]:
        if product["product_id"] == "line_loan":
            product["settlement"]["fee_fen"] = 3 * 10**6 + 7  # 30,000.07 RMB: above one unit of 10^12 micro-fen
    CatalogueStore(redis_client, keys).publish(body, actor="test", expected_revision=0)
    ledger = Ledger(redis_client, keys)
    line = LedgerEvent(type="approved", occurred_at=DAY1, source="bank_b", decision_id="d1", page_id="home",
                       slot_id="top", product_id="line_loan", ruleset_version=1, user_id="u1", risk_tier="A",
                       event_id="line-1")
    undo = LedgerEvent(type="reversed", occurred_at=DAY1, source="bank_b", event_id="undo-1", reverses="line-1")
    assert ledger.append_postback(line) == "accepted"
    worker(redis_client, keys).run_until_idle()
    assert by_product(ledger, "20260101")["line_loan"]["platform_revenue_fen"] == 3_000_007
    assert ledger.append_postback(undo) == "accepted"
    worker(redis_client, keys).run_until_idle()
    row = by_product(ledger, "20260101")["line_loan"]
    assert (row["approvals"], row["platform_revenue_fen"], row["group_contribution_fen"]) == (0, 0, 0)


def test_a_record_kept_before_money_had_two_parts_is_still_reversed(redis_client, keys, ledger):
    line = LedgerEvent(type="approved", occurred_at=DAY1, source="bank_b", decision_id="d1", page_id="home",
                       slot_id="top", product_id="line_loan", ruleset_version=1, user_id="u1", risk_tier="A",
                       event_id="line-1")
    assert ledger.append_postback(line) == "accepted"
    worker(redis_client, keys).run_until_idle()
    prefix = "per_credit_line|bank_b|line_loan|home|top|A|"
    legacy = {prefix + "approvals": "-1", prefix + "platform_revenue_micro_fen": "-20000000000",
              prefix + "group_contribution_micro_fen": "-20000000000", prefix + "reversals": "1"}
    redis_client.hset(keys.postback_record("bank_b", "line-1"), "undo", orjson.dumps(legacy))
    undo = LedgerEvent(type="reversed", occurred_at=DAY1, source="bank_b", event_id="undo-1", reverses="line-1")
    assert ledger.append_postback(undo) == "accepted"
    worker(redis_client, keys).run_until_idle()
    row = by_product(ledger, "20260101")["line_loan"]
    assert (row["approvals"], row["platform_revenue_fen"]) == (0, 0)
