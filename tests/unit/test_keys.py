"""Every Redis key carries a hash tag, so the keys used together share one Redis Cluster slot."""
import inspect
import re

from wallet_market.store.keys import ENTITY_KINDS, Keys

TAG = re.compile(r"^wm:\{([^{}]+)\}:")
CHANNELS = {"published_channel", "experiments_channel"}


def _every_key(keys: Keys) -> dict[str, str]:
    built = {}
    for name, method in inspect.getmembers(keys, inspect.ismethod):
        if name.startswith("_") or name in CHANNELS:
            continue
        params = [p for p in inspect.signature(method).parameters.values()]
        args = [ENTITY_KINDS[0] if p.name == "kind" else 7 if p.annotation in (int, "int") else f"x{i}" for i, p in enumerate(params)]
        built[name] = method(*args)
    return built


def test_every_key_starts_with_the_prefix_and_a_hash_tag():
    built = _every_key(Keys("wm"))
    assert "postbacks_of_day" in built and "event_stream" in built
    untagged = {name: key for name, key in built.items() if not TAG.match(key)}
    assert untagged == {}


def test_ledger_keys_written_together_share_the_ledger_tag():
    keys = Keys("wm")
    together = [
        keys.event_stream(),
        keys.event_seen("a:d:s:impression"),
        keys.postback_record("lender_a", "e-1"),
        keys.postbacks_of_day("lender_a", "20260101"),
        keys.counters("20260101"),
        keys.learned_rates("20260101"),
        keys.dead_letters(),
    ]
    assert {TAG.match(key).group(1) for key in together} == {"ledger"}
    # The day index and the records it names never collide.
    assert keys.postbacks_of_day("lender_a", "20260101") != keys.postback_record("lender_a", "20260101")
