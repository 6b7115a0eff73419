"""The per-partner, per-day index of postbacks, and reconciliation reading a day through it."""
from datetime import timedelta

import pytest
import redis

from tests.finance_ledger import at, impression_token, post_postback, publish_demo, settlement_day
from tests.processes import free_port
from wallet_market.services.reconciliation import ledger_settlement_lines
from wallet_market.store.ledger import Ledger, decode_event


def _day_key(day) -> str:
    return day.strftime("%Y%m%d")


def _index(redis_client, keys, partner_id, day):
    return [(m.decode(), int(s)) for m, s in redis_client.zrange(keys.postbacks_of_day(partner_id, _day_key(day)), 0, -1, withscores=True)]


def _event(ledger, partner_id, event_id):
    """The event of an accepted postback, as its record keeps it."""
    return decode_event(ledger.postback_record(partner_id, event_id)["entry"].encode())


def _disbursed(comps, client, partner_id, product_id, event_id, amount, occurred_at, version):
    token = impression_token(comps, product_id, "A", occurred_at - 3_600, version)
    post_postback(
        client,
        partner_id,
        {"event_id": event_id, "type": "disbursed", "impression_token": token, "amount": amount, "occurred_at": occurred_at},
    )


def test_a_postback_lands_in_the_index_of_its_partner_and_day(app, comps, client, redis_client):
    version = publish_demo(comps)
    day = settlement_day()
    next_day = day + timedelta(days=1)
    _disbursed(comps, client, "xingyun_cf", "xingyun_loan", "x-late", 100_000, at(day, 14), version)
    _disbursed(comps, client, "xingyun_cf", "xingyun_loan", "x-early", 200_000, at(day, 9), version)
    _disbursed(comps, client, "xingyun_cf", "xingyun_loan", "x-next", 300_000, at(next_day, 10), version)
    _disbursed(comps, client, "haoyue_mcl", "haoyue_loan", "h-1", 400_000, at(day, 11), version)
    # A duplicate is not indexed twice; a reversal is indexed on its own day, not on the day of what it reverses.
    ledger = Ledger(comps.redis, comps.keys)
    assert ledger.append_postback(_event(ledger, "xingyun_cf", "x-early")) == "duplicate"
    post_postback(client, "xingyun_cf", {"event_id": "x-undo", "type": "reversed", "reverses": "x-late", "occurred_at": at(next_day, 12)})

    keys = comps.keys
    assert _index(redis_client, keys, "xingyun_cf", day) == [("x-early", at(day, 9)), ("x-late", at(day, 14))]
    assert _index(redis_client, keys, "xingyun_cf", next_day) == [("x-next", at(next_day, 10)), ("x-undo", at(next_day, 12))]
    assert _index(redis_client, keys, "haoyue_mcl", day) == [("h-1", at(day, 11))]
    assert _index(redis_client, keys, "haoyue_mcl", next_day) == []
    # The index lives as long as the records it points to.
    record_ttl = redis_client.ttl(keys.postback_record("xingyun_cf", "x-early"))
    assert 0 < record_ttl - 5 <= redis_client.ttl(keys.postbacks_of_day("xingyun_cf", _day_key(day))) <= record_ttl
    assert ledger.postbacks_of_days("xingyun_cf", [_day_key(day), _day_key(next_day)]) == ["x-early", "x-late", "x-next", "x-undo"]
    assert ledger.postbacks_of_days("xingyun_cf", []) == []


def test_reconciliation_reads_the_day_from_its_index(app, comps, client, redis_client):
    version = publish_demo(comps)
    day = settlement_day()
    next_day = day + timedelta(days=1)
    # xingyun_loan pays 3% of the amount disbursed: 3% of 1,000,000 = 30,000; 3% of 500,000 = 15,000.
    _disbursed(comps, client, "xingyun_cf", "xingyun_loan", "x-1", 1_000_000, at(day, 9), version)
    _disbursed(comps, client, "xingyun_cf", "xingyun_loan", "x-2", 500_000, at(day, 10), version)
    # 3% of 2,000,000 = 60,000 on the next day, and the reversal of x-2 (−15,000) booked on that day.
    _disbursed(comps, client, "xingyun_cf", "xingyun_loan", "x-3", 2_000_000, at(next_day, 9), version)
    post_postback(client, "xingyun_cf", {"event_id": "x-4", "type": "reversed", "reverses": "x-2", "occurred_at": at(next_day, 11)})

    def lines(d):
        return [(line.event_id, line.type, line.amount_fen, line.date) for line in ledger_settlement_lines(comps, "xingyun_cf", d)]

    assert lines(day) == [("x-1", "disbursed", 30_000, day), ("x-2", "disbursed", 15_000, day)]
    # The reversal is priced from the record of the day before, which that day's index alone would not name.
    assert lines(next_day) == [("x-3", "disbursed", 60_000, next_day), ("x-4", "reversed", -15_000, next_day)]
    # The index decides what a day holds: a record it does not name is not read for that day.
    redis_client.zrem(comps.keys.postbacks_of_day("xingyun_cf", _day_key(day)), "x-1")
    assert lines(day) == [("x-2", "disbursed", 15_000, day)]
    assert redis_client.exists(comps.keys.postback_record("xingyun_cf", "x-1")) == 1


def _unindex(redis_client, keys, partner_id, *days):
    """Make the store look as it did before the per-day index: records kept, their days' index gone."""
    for day in days:
        redis_client.delete(keys.postbacks_of_day(partner_id, _day_key(day)))


def test_the_worker_adds_records_written_before_the_index_to_it_once(app, comps, client, redis_client):
    from wallet_market.services.ledger_worker import LedgerWorker

    version = publish_demo(comps)
    day = settlement_day()
    next_day = day + timedelta(days=1)
    keys = comps.keys
    # 3% of 1,000,000 = 30,000 and of 500,000 = 15,000; x-3 is undone the next day (−15,000 on that day).
    _disbursed(comps, client, "xingyun_cf", "xingyun_loan", "x-1", 1_000_000, at(day, 9), version)
    _disbursed(comps, client, "xingyun_cf", "xingyun_loan", "x-2", 500_000, at(day, 10), version)
    post_postback(client, "xingyun_cf", {"event_id": "x-3", "type": "reversed", "reverses": "x-2", "occurred_at": at(next_day, 11)})
    _unindex(redis_client, keys, "xingyun_cf", day, next_day)
    # A record whose entry cannot be read is left out; the others are not held back by it.
    redis_client.hset(keys.postback_record("xingyun_cf", "x-broken"), mapping={"entry": "{not json", "type": "disbursed"})

    def lines(d):
        return [(line.event_id, line.type, line.amount_fen, line.date) for line in ledger_settlement_lines(comps, "xingyun_cf", d)]

    assert lines(day) == [] and lines(next_day) == []  # what reconciliation saw before: nothing on our side

    worker = LedgerWorker(comps.redis, keys, consumer="w-index")
    assert worker.index_old_postbacks(batch=2) is False  # two records a round: not through yet
    while not worker.index_old_postbacks(batch=2):
        pass
    assert lines(day) == [("x-1", "disbursed", 30_000, day), ("x-2", "disbursed", 15_000, day)]
    assert lines(next_day) == [("x-3", "reversed", -15_000, next_day)]
    assert _index(redis_client, keys, "xingyun_cf", day) == [("x-1", at(day, 9)), ("x-2", at(day, 10))]
    # The index is kept as long as the records it names.
    record_ttl = redis_client.ttl(keys.postback_record("xingyun_cf", "x-1"))
    assert 0 < record_ttl - 5 <= redis_client.ttl(keys.postbacks_of_day("xingyun_cf", _day_key(day))) <= record_ttl

    # Done once per store: a later worker reads the mark and scans nothing.
    assert redis_client.get(keys.postback_index_complete()) == b"1"
    _unindex(redis_client, keys, "xingyun_cf", day)
    later = LedgerWorker(comps.redis, keys, consumer="w-later")
    assert later.index_old_postbacks() is True
    assert _index(redis_client, keys, "xingyun_cf", day) == []


def test_a_scan_broken_by_an_outage_starts_over_rather_than_counting_as_done(app, comps, client, redis_client):
    from wallet_market.services.ledger_worker import LedgerWorker

    version = publish_demo(comps)
    day = settlement_day()
    keys = comps.keys
    for n in range(3):
        _disbursed(comps, client, "xingyun_cf", "xingyun_loan", f"x-{n}", 100_000, at(day, 9 + n), version)
    _unindex(redis_client, keys, "xingyun_cf", day)
    worker = LedgerWorker(comps.redis, keys, consumer="w-broken")
    assert worker.index_old_postbacks(batch=1) is False
    # The next round's writes go to a Redis nobody listens on, as in an outage.
    reachable = worker.ledger.client
    worker.ledger.client = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    with pytest.raises(redis.ConnectionError):
        worker.index_old_postbacks(batch=1)
    worker.ledger.client = reachable
    while not worker.index_old_postbacks(batch=1):
        pass
    assert [m for m, _ in _index(redis_client, keys, "xingyun_cf", day)] == ["x-0", "x-1", "x-2"]
