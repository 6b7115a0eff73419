"""The user profile of docs/api.md."""
from datetime import date

import pytest

from wallet_market.domain.users import UserProfile

PROFILE = {
    "risk_tier": "B",
    "in_house_decision": {"status": "declined", "decided_at": "2025-05-20"},
    "consents": {"personalized": False, "share_with_partners": ["xingyun_cf", "haoyue_mcl"]},
    "age": 31,
    "region": "GD",
    "phone_sha256": "a" * 64,
}


def test_profile_reads_and_writes_the_design_shape():
    profile = UserProfile.from_dict(PROFILE, user_id="u42")
    assert profile.user_id == "u42"
    assert profile.risk_tier == "B"
    assert (profile.in_house_decision, profile.decided_at) == ("declined", date(2025, 5, 20))
    assert profile.personalized is False
    assert profile.share_with_partners == frozenset({"xingyun_cf", "haoyue_mcl"})
    assert profile.consents_to_share_with("xingyun_cf") and not profile.consents_to_share_with("qingshan_bank")
    out = profile.to_dict()
    assert out["in_house_decision"] == {"status": "declined", "decided_at": "2025-05-20"}
    assert out["consents"] == {"personalized": False, "share_with_partners": ["haoyue_mcl", "xingyun_cf"]}
    assert UserProfile.from_dict(out) == profile


def test_a_bare_profile_has_no_decision_and_personalisation_on():
    profile = UserProfile.from_dict({}, user_id="u1")
    assert (profile.risk_tier, profile.in_house_decision, profile.personalized) == (None, "none", True)
    assert profile.share_with_partners == frozenset()
    assert profile.age_band is None


@pytest.mark.parametrize(
    "age, band",
    [(17, None), (18, "18-24"), (24, "18-24"), (25, "25-34"), (44, "35-44"), (54, "45-54"), (55, "55+"), (80, "55+")],
)
def test_age_bands(age, band):
    assert UserProfile("u", age=age).age_band == band


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"risk_tier": "E"}, "risk_tier"),
        ({"in_house_decision": {"status": "maybe"}}, "in_house_decision.status"),
        ({"in_house_decision": {"status": "declined", "decided_at": "last week"}}, "in_house_decision.decided_at"),
        ({"consents": {"share_with_partners": "xingyun_cf"}}, "consents.share_with_partners"),
        ({"age": "thirty"}, "age"),
    ],
)
def test_bad_profile_values_name_the_field(patch, field):
    with pytest.raises(ValueError) as err:
        UserProfile.from_dict({**PROFILE, **patch}, user_id="u1")
    assert str(err.value).startswith(f"{field}:")


def test_the_decline_cool_down_counts_days_since_the_decision():
    profile = UserProfile.from_dict(PROFILE, user_id="u1")  # declined on 2025-05-20
    assert profile.declined_in_house_within(date(2025, 8, 17), 90)  # 89 days later
    assert not profile.declined_in_house_within(date(2025, 8, 18), 90)  # 90 days later
    undated = UserProfile("u1", in_house_decision="declined")
    assert undated.declined_in_house_within(date(2030, 1, 1), 90)
    assert not UserProfile("u1", in_house_decision="approved").declined_in_house_within(date(2025, 6, 1), 90)
