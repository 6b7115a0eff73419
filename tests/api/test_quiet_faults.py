"""A Redis outage does not flood the log: each repeated warning is one line per interval."""
import logging

import redis

from wallet_market.partners.client import PartnerSecrets
from wallet_market.store.keys import Keys
from wallet_market.store.snapshot import SnapshotHolder


def dead_redis():
    """A client of a Redis that is not there, failing at once (no retries)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))


def messages(caplog, logger):
    return [r.getMessage() for r in caplog.records if r.name == logger]


def test_the_apps_redis_error_handler_logs_an_outage_once(client, auth, comps, caplog):
    assert client.get("/admin/v1/products", headers=auth("pm")).status_code == 200  # the key is now cached
    dead = dead_redis()
    comps.access.api_keys.client = dead
    comps.catalogue_store.client = dead
    with caplog.at_level(logging.WARNING):
        codes = {client.get("/admin/v1/products", headers=auth("pm")).status_code for _ in range(40)}
    assert codes == {503}
    (line,) = messages(caplog, "wallet_market.app")
    assert line.startswith("Redis unavailable:")


def test_the_snapshot_holder_logs_a_failing_refresh_once(key_prefix, caplog):
    holder = SnapshotHolder(dead_redis(), Keys(key_prefix), build=lambda record: record)
    with caplog.at_level(logging.WARNING):
        for _ in range(25):
            holder.refresh()
    assert len(messages(caplog, "wallet_market.store.snapshot")) == 1
    assert holder.last_error


def test_the_partner_client_logs_unreadable_secrets_once(caplog):
    def unreadable():
        raise redis.ConnectionError("Connection refused")

    secrets = PartnerSecrets(unreadable, ttl_seconds=0)
    with caplog.at_level(logging.WARNING):
        assert [secrets("lender_a") for _ in range(30)] == [None] * 30
    assert messages(caplog, "wallet_market.partners.client") == ["partner secrets unreadable; using the last ones read"]
