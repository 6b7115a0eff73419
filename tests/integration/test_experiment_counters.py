"""Per-unit experiment counters written by the ledger worker: once per entry, reversals taken back once."""
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from wallet_market.domain.funnel import LedgerEvent, app_event_key
from wallet_market.services.experiments import unit_outcomes
from wallet_market.services.ledger_worker import LedgerWorker
from wallet_market.store.catalogue import CatalogueStore
from wallet_market.store.experiments import ExperimentCounters
from wallet_market.store.keys import Keys
from wallet_market.store.ledger import Ledger

CATALOGUE = tomllib.loads((Path(__file__).resolve().parent.parent / "funnel_catalogue.toml").read_text(encoding="utf-8"))
DAY1 = 1_767_268_800  # 2026-01-01 12:00 UTC
DAY2 = DAY1 + 86_400


@pytest.fixture
def keys(key_prefix):
    return Keys(key_prefix)


@pytest.fixture
def ledger(redis_client, keys):
    CatalogueStore(redis_client, keys).publish(CATALOGUE, actor="test", expected_revision=0)
    return Ledger(redis_client, keys)


def worker(redis_client, keys, name="w1"):
    return LedgerWorker(redis_client, keys, consumer=name, claim_idle_ms=1, block_ms=10)


def shown(kind, product, unit, arm, decision, slot="top"):
    return LedgerEvent(type=kind, occurred_at=DAY1, source="app", decision_id=decision, page_id="home", slot_id=slot,
                       product_id=product, ruleset_version=1, user_id=unit, risk_tier="A",
                       experiment_id="exp-1", arm=arm, unit=f"n-{unit}")


def arm(redis_client, keys, name):
    rows = ExperimentCounters(redis_client, keys).units("exp-1", name)
    return {(unit, measure): value for unit, measure, value in rows}


def test_each_entry_counts_once_on_its_unit_and_arm(redis_client, keys, ledger):
    events = [
        shown("impression", "cps_loan", "u1", "treatment", "d1"),
        shown("impression", "gold_card", "u1", "treatment", "d1", slot="low"),
        shown("click", "gold_card", "u1", "treatment", "d1", slot="low"),
        shown("impression", "cps_loan", "u2", "control", "d2"),
        replace(shown("impression", "cps_loan", "u3", "", "d3"), experiment_id=""),  # not in the experiment
    ]
    keyed = [(app_event_key(e.decision_id, e.slot_id, e.type), e) for e in events]
    assert ledger.append_app_events(keyed, 3600) == [True] * 5
    lent = replace(events[0], type="disbursed", source="lender_a", event_id="loan-1", amount_fen=1_000_000)
    assert ledger.append_postback(lent) == "accepted"
    assert worker(redis_client, keys).run_until_idle() == 6
    treatment = arm(redis_client, keys, "treatment")
    # 3% of 10,000 RMB = 30,000 fen = 3e10 micro-fen, platform and group alike (cps)
    assert treatment == {
        ("n-u1", "impressions"): 2, ("n-u1", "clicks"): 1, ("n-u1", "loans"): 1,
        ("n-u1", "platform_revenue_micro_fen"): 30_000_000_000, ("n-u1", "group_contribution_micro_fen"): 30_000_000_000,
    }
    assert arm(redis_client, keys, "control") == {("n-u2", "impressions"): 1}
    (outcome,) = unit_outcomes(ExperimentCounters(redis_client, keys).units("exp-1", "treatment"))
    assert (outcome.impressions, outcome.loans, outcome.platform_revenue_fen) == (2, 1, 30_000)

    # The same entries delivered again (a worker that died before acknowledging) add nothing.
    again = worker(redis_client, keys, "w2")
    entries = [(e.entry_id, e.event) for e in again.ledger._entries(redis_client.xrange(keys.event_stream()))]
    again.apply_experiment_effects(entries)
    assert arm(redis_client, keys, "treatment") == treatment


@pytest.mark.parametrize("same_batch", [False, True])
def test_a_reversal_takes_back_what_its_postback_added_to_the_unit(redis_client, keys, ledger, same_batch):
    impression = shown("impression", "cps_loan", "u1", "treatment", "d1")
    lent = replace(impression, type="disbursed", source="lender_a", event_id="loan-1", amount_fen=1_000_000)
    undo = LedgerEvent(type="reversed", occurred_at=DAY2, source="lender_a", event_id="undo-1", reverses="loan-1")
    assert ledger.append_postback(lent) == "accepted"
    if not same_batch:
        worker(redis_client, keys).run_until_idle()
        assert arm(redis_client, keys, "treatment")[("n-u1", "loans")] == 1
    assert ledger.append_postback(undo) == "accepted"
    worker(redis_client, keys).run_until_idle()
    after = arm(redis_client, keys, "treatment")
    assert after[("n-u1", "loans")] == 0
    assert after[("n-u1", "platform_revenue_micro_fen")] == 0
