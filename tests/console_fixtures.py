"""The demo catalogue published with partner secrets, and a day of ledger events for the console's pages.

``earn_demo_revenue`` goes through the real paths: a tier-A user who shares
with ``xingyun_cf`` asks for the home page (``xingyun_loan`` on top,
``inhouse_loan`` second), the app reports the impressions of every slot and a
click on the top banner, and ``xingyun_cf`` posts a signed disbursal of
10,000 RMB; the ledger worker turns it all into counters.

By hand: xingyun_loan is CPS 3%, so 1,000,000 fen disbursed earns 30,000 fen
(¥300.00) in both views; the model expected 136.08 fen for its top-banner
impression (weight 1), which rounds to 136 fen (¥1.36).
"""
from __future__ import annotations

from tests.finance_ledger import post_postback, publish_demo
from wallet_market.services.ledger_worker import LedgerWorker

USER_ID = "console-u1"
PROFILE = {"user_id": USER_ID, "risk_tier": "A", "age": 30,
           "consents": {"personalized": True, "share_with_partners": ["xingyun_cf"]}}
EARNED_FEN = 30_000
MODELLED_XINGYUN_FEN = 136


def earn_demo_revenue(comps, client, app_key: str) -> dict:
    """Publish the demo catalogue and record one user's home page, a click and a disbursal; the layout."""
    publish_demo(comps)
    comps.profiles.users.put_profile(USER_ID, PROFILE)
    headers = {"Authorization": f"Bearer {app_key}", "X-User-Token": comps.user_tokens.mint(USER_ID)}
    layout = client.get("/v1/layout?page=home", headers=headers).get_json()
    slots = {s["slot"]: s for s in layout["slots"]}
    assert slots["top_banner"]["product"]["product_id"] == "xingyun_loan", layout
    events = [{"type": "impression", "impression_token": s["impression_token"]} for s in layout["slots"]]
    events.append({"type": "click", "impression_token": slots["top_banner"]["impression_token"]})
    answer = client.post("/v1/events", json={"events": events}, headers={"Authorization": f"Bearer {app_key}"}).get_json()
    assert answer["accepted"] == len(events), answer
    post_postback(client, "xingyun_cf", {"event_id": "console-x1", "type": "disbursed", "amount": 1_000_000,
                                         "impression_token": slots["top_banner"]["impression_token"]})
    LedgerWorker(comps.redis, comps.keys, consumer="console-test", claim_idle_ms=1, block_ms=1).run_until_idle()
    return layout
