"""Settlement pulls through the partner client, read by the reconciliation parser."""
from datetime import date

import pytest

from partner_fakes import FakePartner
from wallet_market.domain.catalogue import Partner
from wallet_market.domain.reconcile import parse_settlement_csv
from wallet_market.partners.client import PartnerClient
from wallet_market.store.breakers import redis_breaker_storage
from wallet_market.services.settlement import SettlementClient
from wallet_market.services.errors import Invalid, NotFound, Unavailable
from wallet_market.store.keys import Keys
from tests.catalogue_builders import partner as partner_entry

SECRET = "alpha-settlement-secret-0123456789"


@pytest.fixture
def fake():
    partner = FakePartner("alpha", SECRET)
    yield partner
    partner.close()


@pytest.fixture
def setup(fake, redis_client, key_prefix):
    def partner(partner_id, **over):
        return Partner.from_dict(partner_entry(partner_id, **fake.partner_fields(**over)))

    partners = {"alpha": partner("alpha"), "no_file": partner("no_file", settlement_url=None)}
    client = PartnerClient(
        {"alpha": SECRET, "no_file": SECRET}.get,
        redis_breaker_storage(redis_client, Keys(key_prefix)),
        fail_max=1,
        reset_seconds=60,
    )
    yield client, SettlementClient(client, partners.get), partners
    client.close()


def test_the_days_file_comes_back_as_text_the_parser_reads(fake, setup):
    _, settlement, _ = setup
    fake.settlement_files["2026-03-01"] = (
        "event_id,type,amount_fen,date\n"
        "xy-881,disbursed,60000,2026-03-01\n"
        "xy-882,reversed,-60000,2026-03-01\n"
    )
    text = settlement.fetch("alpha", date(2026, 3, 1))
    lines = parse_settlement_csv(text)
    assert [(line.event_id, line.amount_fen) for line in lines] == [("xy-881", 60000), ("xy-882", -60000)]
    (request,) = fake.received
    assert request.method == "GET" and request.query == {"date": "2026-03-01"} and request.signature_ok


def test_an_unknown_partner_or_one_without_a_settlement_url_is_named(setup):
    _, settlement, _ = setup
    with pytest.raises(NotFound):
        settlement.fetch("nobody", date(2026, 3, 1))
    with pytest.raises(Invalid) as no_url:
        settlement.fetch("no_file", date(2026, 3, 1))
    assert "settlement_url" in no_url.value.errors


def test_a_failing_partner_is_unavailable_not_a_crash(fake, setup):
    _, settlement, _ = setup
    fake.mode = "error"
    with pytest.raises(Unavailable) as failed:
        settlement.fetch("alpha", date(2026, 3, 1))
    assert failed.value.errors == {"partner": ["http_error"]}


def test_a_struggling_prescreen_service_does_not_block_reconciliation(fake, setup):
    client, settlement, partners = setup
    fake.mode = "error"
    client.call(partners["alpha"], "prescreen", "POST", fake.prescreen_url, payload={"request_id": "r"})
    assert client.breaker_state("alpha") == "open"  # fail_max = 1
    fake.mode = "new"
    assert settlement.fetch("alpha", date(2026, 3, 1)).startswith("event_id,type,amount_fen,date")
