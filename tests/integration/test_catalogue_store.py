"""The catalogue in a real Redis: draft, atomic publish, rollback, audit, snapshot refresh."""
import threading
import time

import pytest

from tests.catalogue_builders import admin_catalogue, admin_partner, admin_product
from wallet_market.services.catalogue_admin import CatalogueAdmin
from wallet_market.services.errors import Invalid
from wallet_market.store.catalogue import CatalogueStore
from wallet_market.store.keys import Keys
from wallet_market.store.snapshot import SnapshotHolder


@pytest.fixture
def store(redis_client, key_prefix):
    return CatalogueStore(redis_client, Keys(key_prefix))


@pytest.fixture
def admin(store):
    return CatalogueAdmin(store, apr_cap_bps=2400)


def test_publish_freezes_the_draft_as_numbered_immutable_versions(admin, store):
    admin.load(admin_catalogue(), actor="pm:alice")
    first = admin.publish("pm:alice", note="launch")
    assert first["version"] == 1
    admin.update("products", "lender_a_loan", admin_product("lender_a_loan", "lender_a", title="Renamed loan"), actor="pm:bob")
    # the draft changed, the published version did not
    assert store.load_version(1)["catalogue"]["products"][1]["title"] == "lender_a_loan cash loan"
    second = admin.publish("pm:bob")
    assert second["version"] == 2
    assert store.current_version() == 2
    titles = {p["product_id"]: p["title"] for p in store.load_version(2)["catalogue"]["products"]}
    assert titles["lender_a_loan"] == "Renamed loan"


def test_rollback_serves_an_earlier_version_again_and_resets_the_draft(admin, store):
    admin.load(admin_catalogue(), actor="pm")
    admin.publish("pm")
    admin.delete("products", "lender_b_loan", actor="pm")
    admin.publish("pm")
    result = admin.rollback(1, actor="pm")
    assert result["version"] == 3 and result["rollback_of"] == 1
    served = {p["product_id"] for p in store.load_version(3)["catalogue"]["products"]}
    assert "lender_b_loan" in served
    assert "lender_b_loan" in {p["product_id"] for p in admin.list("products")}


def test_guard_10_an_invalid_write_keeps_nothing_and_names_the_field(admin, store):
    admin.load(admin_catalogue(), actor="pm")
    revision_before, draft_before = store.read_draft()
    audit_before = len(store.audit())
    with pytest.raises(Invalid) as refused:
        admin.create("products", admin_product("payday", "lender_a", term_min_days=14, term_max_days=30), actor="pm")
    assert any("term_min_days" in field for field in refused.value.errors)
    revision_after, draft_after = store.read_draft()
    assert (revision_after, draft_after) == (revision_before, draft_before)
    assert len(store.audit()) == audit_before


def test_a_product_of_an_unknown_partner_is_refused(admin):
    admin.load(admin_catalogue(), actor="pm")
    with pytest.raises(Invalid) as refused:
        admin.create("products", admin_product("ghost_loan", "ghost_partner"), actor="pm")
    assert any("owner" in field for field in refused.value.errors)


def test_every_change_is_in_the_audit_log_with_who_and_what(admin, store):
    admin.load(admin_catalogue(), actor="pm:alice")
    admin.create("partners", admin_partner("lender_c"), actor="pm:carol")
    admin.publish("pm:carol")
    entries = store.audit()
    newest, created = entries[0], entries[1]
    assert newest["action"] == "publish" and newest["actor"] == "pm:carol"
    assert created["action"] == "create" and created["id"] == "lender_c" and created["after"]["legal_name"]


def test_signing_secrets_are_kept_apart_and_never_exported(admin, store):
    admin.load(admin_catalogue(), actor="pm")
    admin.create("partners", {**admin_partner("lender_c"), "signing_secret": "s3cret-s3cret-s3cret"}, actor="pm")
    assert store.partner_secret("lender_c") == "s3cret-s3cret-s3cret"
    exported = admin.export()
    assert "s3cret" not in repr(exported)


def test_concurrent_publishes_of_one_draft_make_one_version(admin, store):
    admin.load(admin_catalogue(), actor="pm")
    answers = []

    def publish():
        answers.append(admin.publish("pm"))

    threads = [threading.Thread(target=publish) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a["version"] for a in answers] == [1] * 6
    assert sorted(a["published"] for a in answers) == [False] * 5 + [True]
    assert store.current_version() == 1 and len(store.history()) == 1


def test_publishes_of_changed_drafts_each_get_their_own_version(admin, store):
    admin.load(admin_catalogue(), actor="pm")
    versions = []
    for title in ("one", "two", "three"):
        admin.patch("pages", "home", {"title": title}, actor="pm")
        versions.append(admin.publish("pm")["version"])
    assert versions == [1, 2, 3] and store.current_version() == 3


def test_every_process_serves_a_new_version_within_a_second_of_publishing(admin, redis_client, key_prefix):
    admin.load(admin_catalogue(), actor="pm")
    admin.publish("pm")
    holders = [
        SnapshotHolder(redis_client, Keys(key_prefix), build=lambda record: record["version"], poll_seconds=60)
        for _ in range(3)
    ]
    for holder in holders:
        holder.start()
    try:
        deadline = time.monotonic() + 2
        while any(h.version != 1 for h in holders) and time.monotonic() < deadline:
            time.sleep(0.01)
        admin.patch("pages", "home", {"title": "second version"}, actor="pm")  # an unchanged draft publishes nothing
        published_at = time.monotonic()
        admin.publish("pm")
        while any(h.version != 2 for h in holders) and time.monotonic() < published_at + 1.0:
            time.sleep(0.005)
        assert [h.version for h in holders] == [2, 2, 2]
        assert time.monotonic() - published_at < 1.0
    finally:
        for holder in holders:
            holder.stop()
