"""A ledger with known postbacks, for the reconciliation tests.

The demo catalogue is published with signing secrets (and, when given,
settlement URLs); postbacks go in through ``POST /partner/v1/postbacks``,
signed like a partner signs them, each attributed by an impression token such
as a layout issues.
"""
from __future__ import annotations

import json
import time
from datetime import date, datetime, time as clock_time, timedelta, timezone
from pathlib import Path

from wallet_market.services.catalogue_files import read_catalogue_file
from wallet_market.domain.signing import signed_headers
from wallet_market.services.tokens import Impression

ROOT = Path(__file__).resolve().parent.parent
DEMO_CATALOGUE = ROOT / "config" / "demo_catalogue.toml"
SECRETS = {
    "xingyun_cf": "xingyun-signing-secret-0123456789",
    "haoyue_mcl": "haoyue-signing-secret-0123456789",
}


def settlement_day() -> date:
    """A settled day: two days ago (UTC), so a postback on the day after is not in the future."""
    return datetime.now(timezone.utc).date() - timedelta(days=2)


def at(day: date, hour: int) -> int:
    """Epoch seconds of ``hour`` o'clock UTC on ``day``."""
    return int(datetime.combine(day, clock_time(hour), tzinfo=timezone.utc).timestamp())


def publish_demo(comps, settlement_urls: dict[str, str] | None = None) -> int:
    """Publish the demo catalogue with partner secrets and the given settlement URLs; the version."""
    catalogue = read_catalogue_file(DEMO_CATALOGUE)
    for partner in catalogue["partners"]:
        if partner["partner_id"] in SECRETS:
            partner["signing_secret"] = SECRETS[partner["partner_id"]]
        if settlement_urls and partner["partner_id"] in settlement_urls:
            partner["settlement_url"] = settlement_urls[partner["partner_id"]]
    result = comps.admin.load(catalogue, actor="test", publish=True)
    comps.snapshots.refresh()
    return result["version"]


def impression_token(comps, product_id: str, risk_tier: str, issued_at: int, version: int) -> str:
    """The impression token a layout would have issued for ``product_id`` in the home top slot."""
    impression = Impression(
        decision_id=f"d-{product_id}-{issued_at}",
        page_id="home",
        slot_id="top_banner",
        position=0,
        product_id=product_id,
        ruleset_version=version,
        user_id="u-1",
        risk_tier=risk_tier,
        propensity_bps=10_000,
        issued_at=issued_at,
    )
    return comps.impression_tokens.sign(impression)


def post_postback(client, partner_id: str, body: dict) -> None:
    """Send one postback signed with the partner's secret; it must be accepted."""
    raw = json.dumps(body).encode()
    headers = {**signed_headers(partner_id, SECRETS[partner_id], raw, now=time.time()), "Content-Type": "application/json"}
    response = client.post("/partner/v1/postbacks", data=raw, headers=headers)
    assert response.status_code == 202, response.get_json()


def record_xingyun_day(comps, client, day: date, version: int) -> None:
    """xingyun_loan (CPS 3% of the amount disbursed) postbacks around ``day``.

    On ``day``: x-1 disbursed 1,000,000 fen (payout 30,000); x-2 disbursed
    1,234,567 fen (37,037.01 → 37,037); x-3 approved (CPS pays nothing on it);
    x-4 disbursed 500,000 (15,000) and x-5 reverses it (−15,000). On the next
    day: x-6 disbursed 2,000,000 (60,000).
    """
    token = impression_token(comps, "xingyun_loan", "A", at(day, 8), version)
    for event_id, kind, amount, hour in (
        ("x-1", "disbursed", 1_000_000, 10),
        ("x-2", "disbursed", 1_234_567, 11),
        ("x-3", "approved", None, 12),
        ("x-4", "disbursed", 500_000, 13),
    ):
        post_postback(
            client,
            "xingyun_cf",
            {"event_id": event_id, "type": kind, "impression_token": token, "amount": amount, "occurred_at": at(day, hour)},
        )
    post_postback(client, "xingyun_cf", {"event_id": "x-5", "type": "reversed", "reverses": "x-4", "occurred_at": at(day, 15)})
    next_day = day + timedelta(days=1)
    post_postback(
        client,
        "xingyun_cf",
        {
            "event_id": "x-6",
            "type": "disbursed",
            "impression_token": impression_token(comps, "xingyun_loan", "B", at(next_day, 8), version),
            "amount": 2_000_000,
            "occurred_at": at(next_day, 9),
        },
    )


# What xingyun_cf owes us for ``day`` (see record_xingyun_day).
XINGYUN_DAY_LINES = (
    ("x-1", "disbursed", 30_000),
    ("x-2", "disbursed", 37_037),
    ("x-4", "disbursed", 15_000),
    ("x-5", "reversed", -15_000),
)


def settlement_csv(lines, day: date) -> str:
    """A partner's settlement file: ``event_id,type,amount_fen,date``."""
    rows = ["event_id,type,amount_fen,date"]
    rows += [f"{event_id},{kind},{amount},{day.isoformat()}" for event_id, kind, amount in lines]
    return "\n".join(rows) + "\n"
