"""Every id is checked whole against its documented pattern: no trailing newline, no braces, separators or controls."""
from pathlib import Path

import pytest

from wallet_market.domain.ids import is_entity_id, is_event_id, is_user_id
from wallet_market.services.catalogue_files import CatalogueFileError, read_catalogue_file
from wallet_market.services.tokens import UserTokens

BAD_USER_IDS = ["u1\n", "x}:profile", "{u}", "a:b", "a*", "a b", "a\r\nb", "a\x00", "", "-leading", "é", "x" * 129]
GOOD_USER_IDS = ["u1", "u-1001", "wallet-user-424242", "42", "A.b_c-d", "x" * 128]


def test_the_patterns_match_whole_strings_only():
    assert all(is_user_id(u) for u in GOOD_USER_IDS)
    assert not any(is_user_id(u) for u in BAD_USER_IDS)
    assert is_entity_id("pnl") and not is_entity_id("pnl\n") and not is_entity_id("PNL") and not is_entity_id("a:b")
    assert is_event_id("loan-1") and not is_event_id("loan-1\n") and not is_event_id("a{b}")


def test_a_partner_id_with_a_trailing_newline_is_a_422(app, client, auth):
    partner = {
        "partner_id": "pnl\n",
        "legal_name": "PNL",
        "licence_type": "bank",
        "licence_id": "L-1",
        "licence_expires_on": "2030-01-01",
    }
    response = client.post("/admin/v1/partners", json=partner, headers=auth("pm"))
    assert response.status_code == 422 and "partner_id" in response.get_json()["errors"]["json"]
    assert client.get("/admin/v1/partners", headers=auth("pm")).get_json() == []


@pytest.mark.parametrize("field", ["product_id", "slot_id", "page_id", "partner_id"])
def test_a_rule_reference_with_a_trailing_newline_is_a_422(app, client, auth, field):
    rule = {"rule_id": "r1", "action": "exclude", field: "home\n"}
    response = client.post("/admin/v1/rules", json=rule, headers=auth("pm"))
    assert response.status_code == 422 and field in response.get_json()["errors"]["json"]


@pytest.mark.parametrize("user_id", ["x}:profile", "a*b", "a%20b", "a%0D%0Ab", "a%00", "u1%0A", "%7Bu%7D"])
def test_a_malformed_user_id_in_the_path_is_a_422_for_put_and_get(demo_app, client, auth, comps, user_id):
    put = client.put(f"/v1/users/{user_id}", json={"risk_tier": "A"}, headers=auth("internal"))
    assert put.status_code == 422 and "user_id" in put.get_json()["errors"]
    get = client.get(f"/v1/users/{user_id}", headers=auth("internal"))
    assert get.status_code == 422 and "user_id" in get.get_json()["errors"]
    assert comps.redis.get(comps.keys.profile("x")) is None


def test_a_user_id_that_would_land_in_another_users_slot_is_refused(demo_app, client, auth, comps):
    assert client.put("/v1/users/x", json={"risk_tier": "A"}, headers=auth("internal")).status_code == 200
    response = client.put("/v1/users/x}:profile", json={"risk_tier": "D"}, headers=auth("internal"))
    assert response.status_code == 422
    assert client.get("/v1/users/x", headers=auth("internal")).get_json()["risk_tier"] == "A"


def test_the_data_share_query_and_the_preview_check_the_user_id(demo_app, client, auth):
    shares = client.get("/admin/v1/data-shares?user_id=x%7D%3Aprofile", headers=auth("pm"))
    assert shares.status_code == 422 and "user_id" in shares.get_json()["errors"]["query"]
    preview = client.post("/admin/v1/preview", json={"page": "home", "user": {"user_id": "u1\n"}}, headers=auth("pm"))
    assert preview.status_code == 422 and "user_id" in preview.get_json()["errors"]["json"]["user"]


def test_the_layout_page_must_be_a_catalogue_id(demo_app, client, auth):
    response = client.get("/v1/layout?page=home%0A", headers=auth("app"))
    assert response.status_code == 422 and "page" in response.get_json()["errors"]["query"]


def test_user_tokens_are_minted_only_for_well_formed_ids():
    tokens = UserTokens("s" * 32, 60)
    for bad in BAD_USER_IDS:
        with pytest.raises(ValueError):
            tokens.mint(bad)
    assert tokens.user_id(tokens.mint("u-1001")) == "u-1001"


def test_the_token_command_refuses_a_malformed_user_id_in_one_line(cli):
    result = cli("token", "x}:profile")
    assert result.exit_code == 2
    assert "USER_ID" in result.output and "Traceback" not in result.output
    assert cli("token", "u-42").exit_code == 0


def test_a_postback_event_id_with_a_newline_is_a_422(demo_app, client, auth, comps):
    from partner_fakes import XINGYUN_SECRET as secret, configure_partner
    from wallet_market.domain.signing import signed_headers

    configure_partner(client, auth, comps, "xingyun_cf", signing_secret=secret)
    raw = b'{"event_id": "e-1\\n", "type": "applied", "impression_token": "t"}'
    headers = {**signed_headers("xingyun_cf", secret, raw), "Content-Type": "application/json"}
    response = client.post("/partner/v1/postbacks", data=raw, headers=headers)
    assert response.status_code == 422 and "event_id" in response.get_json()["errors"]


def test_a_catalogue_file_with_a_fractional_fee_is_refused(tmp_path: Path):
    source = Path(__file__).resolve().parent.parent / "funnel_catalogue.toml"
    text = source.read_text()
    assert "fee_fen = " in text
    broken = tmp_path / "broken.toml"
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("fee_fen = "):
            lines[i] = line.split("=")[0] + "= 99.99"
            break
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(CatalogueFileError) as error:
        read_catalogue_file(broken)
    assert "fee_fen" in str(error.value.errors)


@pytest.mark.parametrize(
    "name, content",
    [
        ("broken.json", b'{"partners": [{"partner_id": "a\\ud800"}]}'),
        ("broken.json", b'{"partners": ['),
        ("broken.toml", b"[[partners]\npartner_id = 1"),
        ("list.json", b"[]"),
    ],
)
def test_a_catalogue_file_that_cannot_be_read_is_refused_naming_the_file(tmp_path: Path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CatalogueFileError) as error:
        read_catalogue_file(path)
    assert name in error.value.message
