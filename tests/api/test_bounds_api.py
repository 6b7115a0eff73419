"""A typo in a money, rate or count field is a 422 naming the field, through the API and the service alike."""
from tests.catalogue_builders import admin_catalogue as catalogue, admin_product as product

from wallet_market.api.schemas import PostbackSchema
from wallet_market.services.errors import Invalid


def _with_huge_loan():
    huge = product("typo_loan", "lender_a")
    huge["funnel"]["avg_loan_fen"] = 10**15
    return huge


def _load(client, auth):
    body = catalogue()
    for kind in ("partners", "products", "pages", "rules"):
        for entity in body[kind]:
            assert client.post(f"/admin/v1/{kind}", json=entity, headers=auth("pm")).status_code == 201


def test_a_loan_of_ten_to_the_fifteen_fen_is_refused_naming_the_field(client, auth):
    _load(client, auth)
    response = client.post("/admin/v1/products", json=_with_huge_loan(), headers=auth("pm"))
    assert response.status_code == 422
    assert "avg_loan_fen" in response.get_json()["errors"]["json"]["funnel"]
    assert client.get("/admin/v1/products/typo_loan", headers=auth("pm")).status_code == 404


def test_the_admin_service_refuses_it_by_guard_when_the_schema_is_bypassed(comps):
    for kind, entities in catalogue().items():
        for entity in entities:
            comps.admin.create(kind, entity, actor="test")
    try:
        comps.admin.create("products", _with_huge_loan(), actor="test")
    except Invalid as refused:
        assert refused.status == 422
        assert list(refused.errors) == ["products[typo_loan].funnel.avg_loan_fen"]
        assert "100,000,000 fen" in refused.errors["products[typo_loan].funnel.avg_loan_fen"][0]
    else:
        raise AssertionError("the product was accepted")


def test_a_draft_holding_it_cannot_be_published(client, auth, comps):
    body = catalogue()
    body["products"].append(_with_huge_loan())
    revision, _ = comps.catalogue_store.read_draft()
    comps.catalogue_store.load_catalogue(body, {}, actor="test", expected_revision=revision)  # straight into the store
    response = client.post("/admin/v1/rulesets/publish", json={}, headers=auth("pm"))
    assert response.status_code == 422
    assert "products[typo_loan].funnel.avg_loan_fen" in response.get_json()["errors"]
    assert comps.catalogue_store.current_version() == 0


def test_a_disbursal_above_the_largest_loan_is_refused_by_the_postback_schema():
    errors = PostbackSchema().validate({"event_id": "e1", "type": "disbursed", "amount": 100_000_001})
    assert "amount" in errors
    assert PostbackSchema().validate({"event_id": "e1", "type": "disbursed", "amount": 100_000_000}) == {}
