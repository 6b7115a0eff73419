"""Joint login: the link in a layout, the partner's signed exchange, one use, consent, the data-share log."""
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from partner_fakes import DEMO_PARTNERS, HAOYUE_SECRET, TEST_PHONE, XINGYUN_SECRET, configure_partner, phone_hash, put_user
from wallet_market.domain.signing import signed_headers

XINGYUN_LOGIN = "https://partner.xingyun.example/wallet/login"


@pytest.fixture
def partners(demo_app, client, auth, comps):
    """The demo's partners with signing secrets (their joint_login_url come with the demo)."""
    configure_partner(client, auth, comps, "xingyun_cf", signing_secret=XINGYUN_SECRET)
    configure_partner(client, auth, comps, "haoyue_mcl", signing_secret=HAOYUE_SECRET)
    return demo_app


def _link(client, auth, comps, user_id, product_id="xingyun_loan"):
    token = comps.user_tokens.mint(user_id)
    body = client.get("/v1/layout?page=home", headers=auth("app", **{"X-User-Token": token})).get_json()
    (url,) = [s["product"]["action_url"] for s in body["slots"] if s["product"]["product_id"] == product_id]
    return url


def _token(url):
    return parse_qs(urlsplit(url).query)["token"][0]


def _exchange(client, token, partner_id="xingyun_cf", secret=XINGYUN_SECRET, raw=None, now=None):
    body = raw if raw is not None else json.dumps({"token": token}).encode()
    headers = {**signed_headers(partner_id, secret, body, now=now), "Content-Type": "application/json"}
    return client.post("/partner/v1/joint-login/exchange", data=body, headers=headers)


def _shares(client, auth, user_id, purpose="joint_login"):
    shares = client.get(f"/admin/v1/data-shares?user_id={user_id}", headers=auth("pm")).get_json()["shares"]
    return [s for s in shares if s["purpose"] == purpose]


def test_a_partner_product_links_to_the_partners_joint_login_with_a_one_time_token(partners, client, auth, comps):
    put_user(client, auth, "u-link")
    url = _link(client, auth, comps, "u-link")
    assert url.startswith(XINGYUN_LOGIN + "?token=")
    assert "u-link" not in url  # the link passes through the partner's hands: no user id in it
    token = comps.user_tokens.mint("u-link")
    body = client.get("/v1/layout?page=home", headers=auth("app", **{"X-User-Token": token})).get_json()
    for slot in body["slots"]:
        if slot["product"]["owner"] == "in_house":
            assert slot["product"]["action_url"] == "wallet://loan/inhouse"
    visitor = client.get("/v1/layout?page=home", headers=auth("app")).get_json()
    assert [s["product"]["action_url"] for s in visitor["slots"] if s["product"]["product_id"] == "inhouse_loan"] == [
        "wallet://loan/inhouse"
    ]


def test_the_partner_exchanges_the_token_for_the_fields_the_user_shares(partners, client, auth, comps):
    put_user(client, auth, "u-share")
    token = _token(_link(client, auth, comps, "u-share"))
    response = _exchange(client, token)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["partner_id"] == "xingyun_cf" and answer["product_id"] == "xingyun_loan"
    assert answer["fields"] == ["user_ref", "phone_sha256", "age_band", "region"]
    assert answer["phone_sha256"] == phone_hash(TEST_PHONE)
    assert answer["age_band"] == "25-34" and answer["region"] == "guangdong"  # the user is 31
    assert len(answer["user_ref"]) == 32 and "u-share" not in answer["user_ref"]
    assert TEST_PHONE not in response.get_data(as_text=True)

    (share,) = _shares(client, auth, "u-share")
    assert share["partner_id"] == "xingyun_cf" and share["fields"] == answer["fields"]
    assert share["consent"] == "share_with_partners:xingyun_cf" and share["product_id"] == "xingyun_loan"
    assert share["request_id"] == comps.joint_login.tokens.open(token).token_id


def test_each_partner_gets_its_own_user_ref_and_a_bare_profile_shares_only_that(partners, client, auth, comps):
    put_user(client, auth, "u-minimal", age=None, region=None, phone_sha256=None)
    tokens = comps.joint_login.tokens
    xingyun = _exchange(client, tokens.mint("u-minimal", "xingyun_cf", "xingyun_loan")).get_json()
    haoyue = _exchange(
        client, tokens.mint("u-minimal", "haoyue_mcl", "haoyue_loan"), partner_id="haoyue_mcl", secret=HAOYUE_SECRET
    ).get_json()
    assert xingyun["fields"] == haoyue["fields"] == ["user_ref"]
    assert xingyun["phone_sha256"] is None and xingyun["age_band"] is None and xingyun["region"] is None
    assert xingyun["user_ref"] != haoyue["user_ref"]


def test_a_used_token_is_refused(partners, client, auth, comps):
    put_user(client, auth, "u-twice")
    token = _token(_link(client, auth, comps, "u-twice"))
    assert _exchange(client, token).status_code == 200
    again = _exchange(client, token)
    assert again.status_code == 403 and again.get_json()["errors"] == {"token": ["used"]}
    assert len(_shares(client, auth, "u-twice")) == 1


def test_an_expired_forged_or_foreign_token_is_refused(partners, client, auth, comps):
    put_user(client, auth, "u-refused")
    tokens = comps.joint_login.tokens
    expired = tokens.mint("u-refused", "xingyun_cf", "xingyun_loan", now=time.time() - 61)  # ttl is 60 s
    response = _exchange(client, expired)
    assert response.status_code == 403 and response.get_json()["errors"] == {"token": ["expired"]}

    forged = _exchange(client, "eyJ1IjoidS1yZWZ1c2VkIn0.c2lnbmF0dXJl")
    assert forged.status_code == 403 and forged.get_json()["errors"] == {"token": ["bad_signature"]}

    for_xingyun = tokens.mint("u-refused", "xingyun_cf", "xingyun_loan")
    foreign = _exchange(client, for_xingyun, partner_id="haoyue_mcl", secret=HAOYUE_SECRET)
    assert foreign.status_code == 403 and foreign.get_json()["errors"] == {"token": ["wrong_partner"]}
    assert _shares(client, auth, "u-refused") == []
    assert _exchange(client, for_xingyun).status_code == 200  # still good for the partner it was made for


def test_the_exchange_must_be_signed_by_a_known_partner(partners, client, auth, comps):
    token = comps.joint_login.tokens.mint("u-sig", "xingyun_cf", "xingyun_loan")
    body = json.dumps({"token": token}).encode()
    unsigned = client.post("/partner/v1/joint-login/exchange", data=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401 and unsigned.get_json()["errors"] == {"X-Signature": ["missing_headers"]}
    wrong = _exchange(client, token, secret="not-xingyuns-secret-000000000")
    assert wrong.status_code == 401 and wrong.get_json()["errors"] == {"X-Signature": ["bad_signature"]}
    stale = _exchange(client, token, now=time.time() - 3600)
    assert stale.status_code == 401 and stale.get_json()["errors"] == {"X-Signature": ["stale_timestamp"]}
    unknown = _exchange(client, token, partner_id="nobody_bank", secret="whatever-secret-0000000000")
    assert unknown.status_code == 401 and unknown.get_json()["errors"] == {"X-Partner-Id": ["unknown partner"]}


def test_no_consent_at_exchange_time_is_refused_and_nothing_is_shared(partners, client, auth, comps):
    put_user(client, auth, "u-changes-mind")
    token = _token(_link(client, auth, comps, "u-changes-mind"))
    put_user(client, auth, "u-changes-mind", share_with=[p for p in DEMO_PARTNERS if p != "xingyun_cf"])
    response = _exchange(client, token)
    assert response.status_code == 403 and response.get_json()["errors"] == {"consent": ["no_consent"]}
    assert "phone_sha256" not in response.get_data(as_text=True)
    assert _shares(client, auth, "u-changes-mind") == []


def test_a_body_without_a_token_names_the_field(partners, client):
    response = _exchange(client, None, raw=b'{"tok": "abc"}')
    assert response.status_code == 422 and "token" in response.get_json()["errors"]["json"]
    not_json = _exchange(client, None, raw=b"token=abc")
    assert not_json.status_code == 400 and not_json.get_json()["errors"]["json"][0].startswith("not valid JSON")
