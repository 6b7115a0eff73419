"""``wallet-market ledger dead-letters``: list what the worker set aside, replay it once after a fix."""
import json
import tomllib
from pathlib import Path

from wallet_market.domain.funnel import LedgerEvent, revenue_rows
from wallet_market.services.ledger_worker import LedgerWorker
from wallet_market.store.catalogue import CatalogueStore
from wallet_market.store.keys import Keys
from wallet_market.store.ledger import Ledger, encode_event

CATALOGUE = tomllib.loads((Path(__file__).resolve().parent.parent / "funnel_catalogue.toml").read_text(encoding="utf-8"))
DAY1 = 1_767_268_800  # 2026-01-01 12:00 UTC


def click_event(decision):
    return LedgerEvent(type="click", occurred_at=DAY1, source="app", decision_id=decision, page_id="home",
                       slot_id="low", product_id="click_loan", ruleset_version=1, user_id="u1", risk_tier="A")


def test_dead_letters_are_listed_and_replayed_once(cli, redis_client, key_prefix):
    keys = Keys(key_prefix)
    CatalogueStore(redis_client, keys).publish(CATALOGUE, actor="test", expected_revision=0)
    ledger = Ledger(redis_client, keys)
    ledger.ensure_group()
    assert cli("ledger", "dead-letters").output == "0 dead letters\n"
    redis_client.set(keys.counters("20260101"), "in the way")  # every entry of that day fails
    entry = redis_client.xadd(keys.event_stream(), {"e": encode_event(click_event("d1"))}).decode()
    worker = LedgerWorker(redis_client, keys, consumer="w1", claim_idle_ms=1, block_ms=10)
    worker.run_until_idle()

    listed = cli("ledger", "dead-letters")
    assert listed.exit_code == 0, listed.output
    assert listed.output.startswith("1 dead letter\n") and f"after 3 attempts  entry {entry}" in listed.output
    assert "holds a string, not a hash" in listed.output and '"k": "click"' in listed.output
    (dead,) = json.loads(cli("ledger", "dead-letters", "--json").output)
    assert dead["entry_id"] == entry and dead["attempts"] == 3 and dead["event"]["p"] == "click_loan"
    assert dead["set_aside_at"].endswith("Z")
    assert cli("ledger", "dead-letters", "--replay", "--id", "1-0").exit_code == 2  # no such dead letter

    redis_client.delete(keys.counters("20260101"))  # the fix
    replayed = json.loads(cli("ledger", "dead-letters", "--replay", "--json").output)["replayed"]
    assert [(r["dead_letter_id"], r["entry_id"]) for r in replayed] == [(dead["dead_letter_id"], entry)]
    assert cli("ledger", "dead-letters", "--replay").output == "0 dead letters replayed\n"
    assert worker.run_until_idle() == 1
    (row,) = revenue_rows(ledger.counters(["20260101"]), "product")
    assert (row["clicks"], row["platform_revenue_fen"]) == (1, 100)  # counted once: 1 RMB per click


def test_an_entry_that_is_not_even_text_is_listed(cli, redis_client, key_prefix):
    keys = Keys(key_prefix)
    ledger = Ledger(redis_client, keys)
    ledger.ensure_group()
    redis_client.xadd(keys.event_stream(), {"e": b"\xff\xfe not utf-8"})
    LedgerWorker(redis_client, keys, consumer="w1", claim_idle_ms=1, block_ms=10).run_until_idle()
    (dead,) = json.loads(cli("ledger", "dead-letters", "--json").output)
    assert dead["reason"] == "unreadable" and dead["attempts"] == 1
    assert dead["event"] == "\ufffd\ufffd not utf-8"
