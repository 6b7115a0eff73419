"""Reaching the test Redis — a single server or a cluster — and removing one test's keys."""
from __future__ import annotations

CLUSTER_SCHEME = "redis+cluster://"


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEME)


def connect(url: str):
    """A client for ``url`` as the service makes it (a cluster client for ``redis+cluster://``)."""
    from wallet_market.store.connection import client_from_url

    return client_from_url(url)


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix:`` (on a cluster: SCAN each master, delete slot by slot)."""
    client = connect(url)
    try:
        if is_cluster_url(url):
            for node in client.get_primaries():
                by_slot: dict[int, list[bytes]] = {}
                for key in client.scan_iter(match=f"{prefix}:*", count=1000, target_nodes=node):
                    by_slot.setdefault(client.keyslot(key), []).append(key)
                for slot_keys in by_slot.values():
                    for start in range(0, len(slot_keys), 500):
                        client.delete(*slot_keys[start:start + 500])
            return
        batch = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()
