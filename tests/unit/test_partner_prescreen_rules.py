"""Who gets pre-screened, about which product, and how a partner's answer is read (docs/guards.md, guards 3, 5, 8)."""
from datetime import datetime, timezone

import pytest

from wallet_market.domain.catalogue import Catalogue
from wallet_market.domain.placement import UserState
from wallet_market.domain.users import UserProfile
from wallet_market.partners.client import BadAnswer, PartnerResponse
from wallet_market.partners.prescreen import read_prescreen_answer
from wallet_market.services.prescreen import partners_to_ask
from tests.catalogue_builders import partner, product

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
HASH = "a" * 64


def _partner(partner_id, **over):
    return partner(partner_id, **{"prescreen_url": f"https://{partner_id}.example/prescreen", **over})


CATALOGUE = Catalogue.from_dict(
    {
        "partners": [
            _partner("alpha"),
            _partner("paused_co", status="paused"),
            _partner("expired_co", licence_expires_on="2025-12-31"),
            _partner("no_screen", prescreen_url=None),
            _partner("picky"),
        ],
        "products": [
            product("alpha_loan_b", "alpha", eligibility={"risk_tiers": ["B", "C"]}),
            product("alpha_loan_a", "alpha", eligibility={"risk_tiers": ["A"], "age_min": 22, "age_max": 55}),
            product("paused_loan", "paused_co"),
            product("expired_loan", "expired_co"),
            product("plain_loan", "no_screen"),
            product("picky_loan", "picky", eligibility={"risk_tiers": ["D"], "regions": ["hainan"]}),
        ],
    }
)
ALL = ("alpha", "expired_co", "no_screen", "paused_co", "picky")


def _profile(**over):
    d = dict(
        user_id="u-1",
        risk_tier="A",
        age=31,
        region="guangdong",
        phone_sha256=HASH,
        share_with_partners=frozenset(ALL),
    )
    d.update(over)
    return UserProfile(**d)


def test_a_consenting_user_is_asked_about_the_first_product_they_could_be_shown():
    # alpha_loan_a (tier A, age 22–55) fits the user; alpha_loan_b (tiers B, C) does not.
    # paused_co (guard 3: paused), expired_co (guard 3: licence expired in 2025), no_screen (no
    # prescreen_url) and picky (tier D in hainan only) are not worth the user's data.
    assert partners_to_ask(_profile(), UserState(), CATALOGUE, ALL, NOW) == {"alpha": "alpha_loan_a"}


def test_no_consent_no_phone_hash_or_a_visitor_means_nobody_is_asked():
    assert partners_to_ask(_profile(share_with_partners=frozenset({"picky"})), UserState(), CATALOGUE, ALL, NOW) == {}
    assert partners_to_ask(_profile(phone_sha256=None), UserState(), CATALOGUE, ALL, NOW) == {}
    assert partners_to_ask(None, UserState(), CATALOGUE, ALL, NOW) == {}


def test_a_partner_already_answered_suppressed_or_at_its_lead_cap_is_not_asked_again():
    for state in (
        UserState(prescreen={"alpha": "existing"}),
        UserState(prescreen={"alpha": "failed"}),
        UserState(suppressed_partners=frozenset({"alpha"})),
        UserState(partners_at_lead_cap=frozenset({"alpha"})),
    ):
        assert partners_to_ask(_profile(), state, CATALOGUE, ALL, NOW) == {}


def test_eligibility_follows_the_profile_and_personalisation_off_ignores_the_risk_tier():
    assert partners_to_ask(_profile(risk_tier="C"), UserState(), CATALOGUE, ALL, NOW) == {"alpha": "alpha_loan_b"}
    # Age 60 is over alpha_loan_a's 55 and tier A is outside alpha_loan_b's tiers: no product fits.
    assert partners_to_ask(_profile(age=60), UserState(), CATALOGUE, ALL, NOW) == {}
    # Personalisation off: the risk tier is not used, so alpha_loan_b (no age limit) fits the 60-year-old.
    assert partners_to_ask(_profile(age=60, personalized=False), UserState(), CATALOGUE, ALL, NOW) == {
        "alpha": "alpha_loan_b"
    }
    # A user in hainan with tier D fits picky_loan (with personalisation on).
    d_user = _profile(risk_tier="D", region="hainan")
    assert partners_to_ask(d_user, UserState(), CATALOGUE, ALL, NOW) == {"picky": "picky_loan"}


def _answer(body: bytes) -> PartnerResponse:
    return PartnerResponse(200, {"Content-Type": "application/json"}, body)


def test_the_partner_answer_decides_new_existing_or_ineligible():
    assert read_prescreen_answer(_answer(b'{"eligible": true, "existing_customer": false}')).verdict == "new"
    assert read_prescreen_answer(_answer(b'{"eligible": true, "existing_customer": true}')).verdict == "existing"
    # An existing customer earns no payout even when the partner would lend again.
    assert read_prescreen_answer(_answer(b'{"eligible": false, "existing_customer": true}')).verdict == "existing"
    assert read_prescreen_answer(_answer(b'{"eligible": false, "existing_customer": false}')).verdict == "ineligible"


@pytest.mark.parametrize(
    "body",
    [
        b"<html>busy</html>",
        b"[]",
        b'{"eligible": "true", "existing_customer": false}',
        b'{"eligible": true}',
        b'{"eligible": 1, "existing_customer": 0}',
        b"",
    ],
)
def test_an_answer_of_any_other_shape_is_refused(body):
    with pytest.raises(BadAnswer):
        read_prescreen_answer(_answer(body))
