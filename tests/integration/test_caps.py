"""Partner lead caps and pacing on a real Redis, under concurrent callers: never overshot."""
import copy
import multiprocessing
import threading
import tomllib
from pathlib import Path

import pytest

from wallet_market.domain.funnel import paced_lead_allowance
from wallet_market.services.ledger_worker import LedgerWorker
from wallet_market.store.caps import LeadCaps
from wallet_market.store.catalogue import CatalogueStore
from wallet_market.store.connection import client_from_url
from wallet_market.store.keys import Keys

CATALOGUE = tomllib.loads((Path(__file__).resolve().parent.parent / "funnel_catalogue.toml").read_text(encoding="utf-8"))
DAY = "20260101"
MIDNIGHT = 1_767_225_600  # 2026-01-01 00:00 UTC


@pytest.fixture
def keys(key_prefix):
    return Keys(key_prefix)


def take_many(redis_url, prefix, partner, allowed, marks, out):
    """Count ``marks`` as clicks on ``partner`` one by one, from its own connection."""
    client = client_from_url(redis_url)
    caps = LeadCaps(client, Keys(prefix))
    counted = sum(caps.take(DAY, [(mark, partner, allowed)])[0] for mark in marks)
    client.close()
    if isinstance(out, list):
        out.append(counted)
    else:
        out.put(counted)


def test_concurrent_threads_never_count_more_leads_than_allowed(redis_url, redis_client, keys):
    results: list[int] = []
    threads = [
        threading.Thread(target=take_many, args=(redis_url, keys.prefix, "lender_a", 300,
                                                 [f"t{t}:c{i}" for i in range(50)], results))
        for t in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    caps = LeadCaps(redis_client, keys)
    # 16 × 50 = 800 clicks against 300 allowed: exactly 300 counted, and the partner is out of layouts.
    assert sum(results) == 300
    assert caps.leads(DAY) == {"lender_a": 300}
    assert caps.at_cap(DAY) == {"lender_a"}


def test_concurrent_processes_never_count_more_leads_than_allowed(redis_url, redis_client, keys):
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    processes = [
        context.Process(target=take_many, args=(redis_url, keys.prefix, "bank_b", 150,
                                                [f"p{p}:c{i}" for i in range(100)], out))
        for p in range(4)
    ]
    for p in processes:
        p.start()
    counted = sum(out.get(timeout=60) for _ in processes)
    for p in processes:
        p.join(30)
    assert counted == 150
    assert LeadCaps(redis_client, keys).leads(DAY) == {"bank_b": 150}


def test_a_click_is_decided_once_however_often_it_is_retried(redis_client, keys):
    caps = LeadCaps(redis_client, keys)
    assert caps.take(DAY, [("c1", "lender_a", 1), ("c2", "lender_a", 1)]) == [True, False]
    # retried later with room to spare: the first answers stand
    assert caps.take(DAY, [("c1", "lender_a", 5), ("c2", "lender_a", 5)]) == [True, False]
    assert caps.leads(DAY) == {"lender_a": 1}


def test_pacing_spreads_a_partners_leads_over_the_day(redis_url, redis_client, keys):
    catalogue = copy.deepcopy(CATALOGUE)
    for partner in catalogue["partners"]:
        if partner["partner_id"] == "lender_a":
            partner["daily_lead_cap"] = 1_000
    CatalogueStore(redis_client, keys).publish(catalogue, actor="test", expected_revision=0)
    worker = LedgerWorker(redis_client, keys, consumer="w")
    caps = LeadCaps(redis_client, keys)

    six_am = MIDNIGHT + 6 * 3600
    allowed = paced_lead_allowance(1_000, 6 * 3600)
    assert allowed == 250 + 20  # a quarter of the day's 1,000 plus a 2% burst
    results: list[int] = []
    threads = [
        threading.Thread(target=take_many, args=(redis_url, keys.prefix, "lender_a", allowed,
                                                 [f"six:{t}:{i}" for i in range(40)], results))
        for t in range(10)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 270  # 400 clicks by 6 am, 270 leads: ahead of its pace, so it leaves the layouts
    assert worker.refresh_pacing(now=six_am) == {"lender_a"}

    noon = MIDNIGHT + 12 * 3600
    assert worker.refresh_pacing(now=noon) == set()  # by noon 520 are allowed: placed again
    noon_allowed = paced_lead_allowance(1_000, 12 * 3600)
    assert noon_allowed == 520
    counted = caps.take(DAY, [(f"noon:{i}", "lender_a", noon_allowed) for i in range(300)])
    assert sum(counted) == 250 and caps.leads(DAY) == {"lender_a": 520}
    assert caps.at_cap(DAY) == {"lender_a"}


def test_a_partner_whose_cap_is_lifted_is_placed_again(redis_client, keys):
    CatalogueStore(redis_client, keys).publish(CATALOGUE, actor="test", expected_revision=0)  # no caps
    caps = LeadCaps(redis_client, keys)
    caps.take(DAY, [("c1", "lender_a", 0)])
    assert caps.at_cap(DAY) == {"lender_a"}
    worker = LedgerWorker(redis_client, keys, consumer="w")
    assert worker.refresh_pacing(now=MIDNIGHT + 3600) == set()
