"""API key tags: an HMAC under the service secret that any worker can check with Redis away."""
import hashlib
import hmac

import pytest

from wallet_market.services.access import KeyTags

SECRET = "unit-secret-0123456789abcdef0123456789"
BODY = "wm_app_" + "AbCd-_" * 5 + "xy"  # the shape of wm_<role>_<32 url-safe characters>


def test_a_tag_is_the_first_128_bits_of_an_hmac_under_a_key_derived_from_the_secret():
    derived = hmac.new(SECRET.encode(), b"wallet_market api key tag v1", hashlib.sha256).digest()
    expected = hmac.new(derived, BODY.encode(), hashlib.sha256).hexdigest()[:32]
    assert KeyTags(SECRET).sign(BODY) == f"{BODY}_{expected}"


def test_a_signed_key_verifies_with_its_role():
    tags = KeyTags(SECRET)
    for role in ("app", "pm", "finance", "internal"):
        body = f"wm_{role}_" + "k" * 32
        assert tags.verify(tags.sign(body)) == (True, role)


@pytest.mark.parametrize(
    "change",
    [
        lambda key: key[:-1] + ("0" if key[-1] != "0" else "1"),  # one character of the tag
        lambda key: key.replace("wm_app_", "wm_pm_", 1),  # the role, keeping the tag
        lambda key: key[:10] + ("Q" if key[10] != "Q" else "R") + key[11:],  # the random part
    ],
)
def test_a_changed_key_is_tagged_but_does_not_verify(change):
    tags = KeyTags(SECRET)
    assert tags.verify(change(tags.sign(BODY))) == (True, None)


def test_a_tag_made_with_another_secret_does_not_verify():
    assert KeyTags(SECRET).verify(KeyTags("another-secret-0123456789abcdef0123").sign(BODY)) == (True, None)


@pytest.mark.parametrize("key", [BODY, "wm_app_short_" + "a" * 32, "wm_boss_" + "k" * 32 + "_" + "a" * 32, ""])
def test_keys_not_shaped_like_tagged_keys_are_not_tags_at_all(key):
    # keys made before tags existed look like BODY: the store alone decides for them
    assert KeyTags(SECRET).verify(key) == (False, None)
