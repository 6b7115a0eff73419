"""Idempotency as a property: any interleaving of duplicates and reversals gives the clean counters."""
import itertools
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wallet_market.domain.funnel import LedgerEvent, app_event_key
from wallet_market.services.ledger_worker import LedgerWorker
from wallet_market.store.catalogue import CatalogueStore
from wallet_market.store.keys import Keys
from wallet_market.store.ledger import Ledger

CATALOGUE = tomllib.loads((Path(__file__).resolve().parent.parent / "funnel_catalogue.toml").read_text(encoding="utf-8"))
DAY1 = 1_767_268_800  # 2026-01-01 12:00 UTC
DAYS = ["20260101", "20260102", "20260103"]
# (partner, product, postback type) of the originals a test may draw
CONVERSIONS = [
    ("lender_a", "cps_loan", "disbursed"),
    ("lender_a", "cps_loan", "approved"),
    ("bank_b", "line_loan", "approved"),
    ("card_c", "gold_card", "approved"),
    ("lender_e", "app_loan", "applied"),
    ("in_house", "own_loan", "disbursed"),
]
_runs = itertools.count()


@st.composite
def histories(draw):
    """A clean history (app events, conversions, reversals) and a messy delivery of it."""
    clean: list[LedgerEvent] = []
    for i in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["impression", "click"]))
        product = draw(st.sampled_from(["cps_loan", "own_loan", "click_loan"]))
        clean.append(LedgerEvent(type=kind, occurred_at=DAY1, source="app", decision_id=f"d{i}", page_id="home",
                                 slot_id="top", product_id=product, ruleset_version=1, user_id="u1", risk_tier="B"))
    originals = []
    for i in range(draw(st.integers(1, 5))):
        partner, product, kind = draw(st.sampled_from(CONVERSIONS))
        amount = draw(st.integers(1, 5_000_000)) if kind == "disbursed" else 0
        event = LedgerEvent(type=kind, occurred_at=DAY1 + draw(st.integers(0, 86_399)), source=partner,
                            decision_id="d0", page_id="home", slot_id="top", product_id=product, ruleset_version=1,
                            user_id="u1", risk_tier=draw(st.sampled_from(["A", "D", None])), event_id=f"e{i}",
                            amount_fen=amount)
        originals.append(event)
    clean.extend(originals)
    reversed_ = draw(st.lists(st.sampled_from(originals), unique_by=lambda e: e.event_id))
    for n, original in enumerate(reversed_):
        clean.append(LedgerEvent(type="reversed", occurred_at=DAY1 + draw(st.integers(0, 2 * 86_399)),
                                 source=original.source, event_id=f"r{n}", reverses=original.event_id))
    duplicates = draw(st.lists(st.sampled_from(clean), max_size=6))
    messy = draw(st.permutations(clean + duplicates))
    # After which deliveries a worker runs (it also runs once at the end).
    pauses = draw(st.sets(st.integers(0, len(messy)), max_size=4))
    return clean, messy, pauses


def deliver(ledger: Ledger, event: LedgerEvent) -> None:
    if event.source == "app":
        ledger.append_app_events([(app_event_key(event.decision_id, event.slot_id, event.type), event)], 3600)
    else:
        assert ledger.append_postback(event) in ("accepted", "duplicate")


def replay(client, prefix: str, events, pauses) -> tuple[list, dict]:
    keys = Keys(prefix)
    CatalogueStore(client, keys).publish(CATALOGUE, actor="test", expected_revision=0)
    ledger = Ledger(client, keys)
    worker = LedgerWorker(client, keys, consumer="w", claim_idle_ms=1, block_ms=1)
    worker.ledger.ensure_group()
    for i, event in enumerate(events):
        if i in pauses:
            worker.run_until_idle()
        deliver(ledger, event)
    worker.run_until_idle()
    return ledger.counters(DAYS), ledger.learned_counts(DAYS)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories())
def test_any_interleaving_of_duplicates_and_reversals_gives_the_clean_counters(redis_client, key_prefix, history):
    clean, messy, pauses = history
    run = next(_runs)
    expected = replay(redis_client, f"{key_prefix}:clean{run}", clean, set())
    assert replay(redis_client, f"{key_prefix}:messy{run}", messy, pauses) == expected
