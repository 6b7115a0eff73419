"""Joint-login tokens: one user, one partner, one product, about a minute; the user id never shows."""
import base64
import json

import pytest

from wallet_market.domain.users import UserProfile
from wallet_market.services.joint_login import JointLoginTokens, shared_fields, user_ref, with_query
from wallet_market.services.tokens import InvalidToken

SECRET = "joint-login-test-secret-0123456789abcdef"
NOW = 1_772_000_000


def test_a_token_names_user_partner_product_and_expires_after_its_ttl():
    tokens = JointLoginTokens(SECRET, ttl_seconds=60)
    grant = tokens.open(tokens.mint("u-1001", "xingyun_cf", "xingyun_loan", now=NOW), now=NOW + 59)
    assert (grant.user_id, grant.partner_id, grant.product_id) == ("u-1001", "xingyun_cf", "xingyun_loan")
    assert grant.expires_at == NOW + 60
    with pytest.raises(InvalidToken) as refused:
        tokens.open(tokens.mint("u-1001", "xingyun_cf", "xingyun_loan", now=NOW), now=NOW + 61)
    assert refused.value.reason == "expired"


def test_the_user_id_cannot_be_read_from_the_token_and_two_tokens_do_not_link():
    tokens = JointLoginTokens(SECRET, ttl_seconds=60)
    first = tokens.mint("wallet-user-424242", "xingyun_cf", "xingyun_loan", now=NOW)
    second = tokens.mint("wallet-user-424242", "xingyun_cf", "xingyun_loan", now=NOW)
    payload = json.loads(base64.urlsafe_b64decode(first.split(".")[0] + "=="))
    assert "wallet-user-424242" not in first and "wallet-user-424242" not in json.dumps(payload)
    assert set(payload) == {"j", "u", "p", "pr", "exp"}
    other = json.loads(base64.urlsafe_b64decode(second.split(".")[0] + "=="))
    assert payload["j"] != other["j"] and payload["u"] != other["u"]


def test_a_forged_or_altered_token_is_refused():
    tokens = JointLoginTokens(SECRET, ttl_seconds=60)
    token = tokens.mint("u-1001", "xingyun_cf", "xingyun_loan", now=NOW)
    forged = JointLoginTokens("another-secret-0123456789abcdef0123", ttl_seconds=60).mint(
        "u-1001", "xingyun_cf", "xingyun_loan", now=NOW
    )
    for bad in (forged, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), "", "x" * 5000):
        with pytest.raises(InvalidToken):
            tokens.open(bad, now=NOW)


def test_the_user_ref_is_stable_per_partner_and_unlinkable_across_partners():
    assert user_ref(SECRET, "xingyun_cf", "u-1001") == user_ref(SECRET, "xingyun_cf", "u-1001")
    assert user_ref(SECRET, "xingyun_cf", "u-1001") != user_ref(SECRET, "haoyue_mcl", "u-1001")
    assert user_ref(SECRET, "xingyun_cf", "u-1001") != user_ref(SECRET, "xingyun_cf", "u-1002")
    assert "u-1001" not in user_ref(SECRET, "xingyun_cf", "u-1001")


def test_the_link_keeps_the_partners_own_parameters():
    assert with_query("https://p.example/login?channel=wallet", token="abc") == (
        "https://p.example/login?channel=wallet&token=abc"
    )
    assert with_query("https://p.example/login", token="a.b-c") == "https://p.example/login?token=a.b-c"


def test_only_the_fields_the_profile_has_are_shared():
    full = UserProfile(user_id="u-1", age=31, region="guangdong", phone_sha256="b" * 64)
    assert shared_fields(full) == ("user_ref", "phone_sha256", "age_band", "region")
    assert shared_fields(UserProfile(user_id="u-2", age=16)) == ("user_ref",)  # no band under 18
