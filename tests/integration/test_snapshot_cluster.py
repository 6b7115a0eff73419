"""Publishing on a Redis Cluster: the catalogue transaction commits, and subscribers on any node hear of it."""
import time
import uuid

import pytest
from redis.cluster import RedisCluster

from tests.redis_keys import connect, delete_prefix
from wallet_market.store.catalogue import CatalogueStore
from wallet_market.store.keys import Keys
from wallet_market.store.snapshot import SnapshotHolder

CATALOGUE = {"partners": [], "products": [], "pages": [], "rules": []}
WAIT_SECONDS = 10.0


@pytest.fixture
def cluster(cluster_url):
    """A cluster client and a key prefix of this test's own on the cluster (removed afterwards)."""
    prefix = f"wmtest-{uuid.uuid4().hex[:10]}"
    client = connect(cluster_url)
    assert isinstance(client, RedisCluster)
    yield client, Keys(prefix)
    client.close()
    delete_prefix(cluster_url, prefix)


def _wait_for(condition) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_publishing_a_catalogue_notifies_the_snapshot_subscriber(cluster):
    client, keys = cluster
    store = CatalogueStore(client, keys)
    assert store.publish(CATALOGUE, actor="test", expected_revision=0) == 1
    seen: list[int] = []
    # No polling: only the announcement can bring a later version in.
    holder = SnapshotHolder(client, keys, build=lambda record: record["version"], poll_seconds=0)
    holder.listeners.append(lambda snapshot: seen.append(snapshot.version))
    holder.start()
    try:
        # Version 1 is caught up on right after subscribing, so the subscription is in place from here on.
        assert _wait_for(lambda: holder.version == 1), holder.last_error
        assert store.publish(CATALOGUE, actor="test", expected_revision=0, note="second") == 2
        assert _wait_for(lambda: holder.version == 2), holder.last_error
    finally:
        holder.stop()
    assert seen == [1, 2]
    assert holder.current.built == 2 and store.current_version() == 2


def test_the_announcement_reaches_a_subscriber_on_every_master(cluster):
    client, keys = cluster
    primaries = client.get_primaries()
    assert len(primaries) >= 3
    subscribers = []
    for node in primaries:
        pubsub = client.pubsub(node=node, ignore_subscribe_messages=True)
        pubsub.subscribe(keys.published_channel())
        subscribers.append(pubsub)
    try:
        # Let each subscription be confirmed before publishing.
        for pubsub in subscribers:
            assert _wait_for(lambda p=pubsub: p.subscribed)
        version = CatalogueStore(client, keys).publish(CATALOGUE, actor="test", expected_revision=0)
        for node, pubsub in zip(primaries, subscribers):
            messages = []
            assert _wait_for(lambda p=pubsub: bool(messages.append(p.get_message(timeout=0.1)) or any(messages))), node.name
            [message] = [m for m in messages if m]
            assert message["channel"].decode() == keys.published_channel() and message["data"] == str(version).encode()
    finally:
        for pubsub in subscribers:
            pubsub.close()
