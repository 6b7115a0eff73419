"""Signed tokens: exactly itsdangerous's format, forged or expired ones refused."""
import time

import pytest
from itsdangerous import Signer

from wallet_market.services.tokens import Impression, ImpressionTokens, InvalidToken, TokenSigner, UserTokens

SECRET = "unit-secret-0123456789abcdef0123456789"


def test_tokens_are_what_itsdangerous_signs_and_checks():
    signer = TokenSigner(SECRET, salt="wallet-market.user")
    token = signer.sign({"u": "42"}, ttl_seconds=60, now=1_000)
    reference = Signer(SECRET, salt="wallet-market.user", digest_method=signer._signer.digest_method, key_derivation="hmac")
    value = reference.unsign(token.encode())
    assert reference.sign(value).decode() == token
    assert signer.verify(token, now=1_030) == {"u": "42", "exp": 1_060}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-6] + ("A" if t[-6] != "A" else "B") + t[-5:],  # signature changed
        lambda t: t[:5] + ("x" if t[5] != "x" else "y") + t[6:],  # payload changed
        lambda t: t.replace(".", ""),  # no separator
        lambda t: "",
    ],
)
def test_a_forged_token_is_refused(tamper):
    token = UserTokens(SECRET, 60).mint("42")
    with pytest.raises(InvalidToken) as refused:
        UserTokens(SECRET, 60).user_id(tamper(token))
    assert refused.value.reason in ("bad_signature", "malformed")


def test_a_user_token_this_process_has_verified_still_expires_and_its_forgeries_are_still_refused():
    tokens = UserTokens(SECRET, 60)
    token = tokens.mint("42")
    now = time.time()
    assert tokens.user_id(token, now=now) == "42"
    assert tokens.user_id(token, now=now + 30) == "42"  # answered from what this process verified
    for forged in (token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:], token + "x", token[:-1]):
        with pytest.raises(InvalidToken, match="bad_signature|malformed"):
            tokens.user_id(forged, now=now)
    with pytest.raises(InvalidToken, match="expired"):
        tokens.user_id(token, now=now + 61)


def test_an_expired_token_is_refused_and_another_secret_does_not_verify():
    signer = TokenSigner(SECRET, salt="s")
    token = signer.sign({"u": "42"}, ttl_seconds=60, now=1_000)
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(token, now=1_061)
    with pytest.raises(InvalidToken, match="bad_signature"):
        TokenSigner("another-secret-0123456789abcdef", salt="s").verify(token, now=1_000)
    with pytest.raises(InvalidToken, match="bad_signature"):
        TokenSigner(SECRET, salt="other-purpose").verify(token, now=1_000)


def test_impression_token_round_trip():
    tokens = ImpressionTokens(SECRET, ttl_seconds=3600)
    impression = Impression("d1", "home", "top_banner", 0, "xingyun_loan", 7, "u1", "A", 8500, 1_795_000_000)
    assert tokens.verify(tokens.sign(impression), now=1_795_000_100) == impression


def test_a_decision_signs_one_token_per_slot_naming_it():
    tokens = ImpressionTokens(SECRET, ttl_seconds=3600)
    slots = [("top_banner", 0, "xingyun_loan", 10000), ("list_1", 1, "inhouse_loan", 500)]
    signed = tokens.sign_decision("d1", "home", 7, None, None, 1_795_000_000, slots)
    for token, (slot_id, position, product_id, propensity) in zip(signed, slots):
        impression = Impression("d1", "home", slot_id, position, product_id, 7, None, None, propensity, 1_795_000_000)
        assert tokens.verify(token, now=1_795_000_001) == impression
