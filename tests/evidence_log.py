"""Evidence on the real paths, shared by the API's and the console's tests.

- Experiments on the demo catalogue: users who share with every partner, a
  candidate that pins the in-house loan to the home top banner (frozen through
  the admin service), and home pages served to those users with every
  impression reported, counted per arm as the layout's impression tokens say.
- A decision log for off-policy evaluation: 40 home pages of 4 users on the
  funnel catalogue with exploration, every impression reported, a card
  approved, a loan lent and reversed, exported by the worker to Parquet (the
  app's settings need ``analysis_dir`` and ``exploration_bps``, see
  :func:`evaluation_settings`).
"""
from __future__ import annotations

from pathlib import Path

import orjson

from wallet_market.composition import build_ledger_worker
from wallet_market.domain.signing import signed_headers
from wallet_market.services.catalogue_files import read_catalogue_file
from wallet_market.services.ledger_worker import LedgerWorker

DEMO_PARTNERS = ["xingyun_cf", "haoyue_mcl", "qingshan_bank", "donghai_bank", "nanfeng_bank", "beichen_bank"]
PIN_RULE = {"rule_id": "pin_inhouse_top", "action": "pin", "page_id": "home", "slot_id": "top_banner",
            "product_id": "inhouse_loan", "priority": 5}

FUNNEL_CATALOGUE = Path(__file__).resolve().parent / "funnel_catalogue.toml"
FUNNEL_PARTNERS = ["lender_a", "bank_b", "card_c", "lender_e", "lender_f"]
FUNNEL_SECRET = "shared-test-secret-0123456789"


def evaluation_settings(tmp_path) -> dict:
    """What the app needs for an evaluation: a folder of its own for the analysis log, and exploration."""
    return {"analysis_dir": str(tmp_path / "analysis"), "exploration_bps": 2_000}


# -- experiments ------------------------------------------------------------------------------------


def put_users(comps, count: int, partners=DEMO_PARTNERS) -> list[str]:
    """Users ``u0``… of every risk tier, 30 years old, sharing with ``partners``; their ids."""
    users = [f"u{n}" for n in range(count)]
    for n, user in enumerate(users):
        comps.profiles.users.put_profile(user, {
            "user_id": user, "risk_tier": "ABCD"[n % 4], "age": 30,
            "consents": {"personalized": True, "share_with_partners": list(partners)},
        })
    return users


def add_pin_rule(comps) -> None:
    """The draft pins the in-house loan to the home top banner (through the admin service)."""
    comps.admin.create("rules", PIN_RULE, actor="test")


def start_pin_experiment(comps, experiment_id: str = "pin-card") -> dict:
    """The pin rule frozen as a candidate and running on the home page for a week, half of everyone on it."""
    from datetime import datetime, timedelta, timezone

    add_pin_rule(comps)
    version = comps.admin.freeze_candidate("test", "pin the in-house loan")["version"]
    now = datetime.now(timezone.utc)
    return comps.experiments.create({
        "experiment_id": experiment_id, "page": "home", "treatment_version": version, "traffic_bps": 10_000,
        "treatment_bps": 5_000, "starts_at": now - timedelta(hours=1), "ends_at": now + timedelta(days=7),
    }, actor="test")


def show_home(client, comps, app_key: str, users) -> dict:
    """Each user's home page with every impression reported; the users and impressions of each arm, and the pages."""
    bodies: dict[str, dict] = {}
    units: dict[str, set[str]] = {"control": set(), "treatment": set(), "none": set()}
    impressions = {"control": 0, "treatment": 0, "none": 0}
    for user in users:
        headers = {"Authorization": f"Bearer {app_key}", "X-User-Token": comps.user_tokens.mint(user)}
        body = bodies[user] = client.get("/v1/layout?page=home", headers=headers).get_json()
        token = comps.impression_tokens.verify(body["slots"][0]["impression_token"])
        arm = token.arm or "none"
        units[arm].add(user)
        impressions[arm] += len(body["slots"])
        events = [{"type": "impression", "impression_token": s["impression_token"]} for s in body["slots"]]
        answer = client.post("/v1/events", json={"events": events}, headers={"Authorization": f"Bearer {app_key}"})
        assert answer.status_code == 202, answer.get_json()
    return {"units": units, "impressions": impressions, "bodies": bodies}


def count_events(comps) -> None:
    """The ledger worker turns every event reported so far into counters."""
    LedgerWorker(comps.redis, comps.keys, consumer="test", claim_idle_ms=1, block_ms=1).run_until_idle()


# -- a decision log for evaluation ----------------------------------------------------------------------


def log_decisions(comps, client, app_key: str) -> dict:
    """Publish the funnel catalogue, serve and report 40 home pages, add outcomes, export it all; what was shown."""
    catalogue = read_catalogue_file(FUNNEL_CATALOGUE)
    for partner in catalogue["partners"]:
        partner["signing_secret"] = FUNNEL_SECRET
    comps.admin.load(catalogue, actor="test", publish=True)
    comps.snapshots.refresh()
    app = {"Authorization": f"Bearer {app_key}"}
    bodies = []
    for n in range(40):
        user = f"person-{n % 4}"
        comps.profiles.users.put_profile(user, {"user_id": user, "risk_tier": "AB"[n % 2], "age": 31,
                                                "consents": {"personalized": True, "share_with_partners": FUNNEL_PARTNERS}})
        body = client.get("/v1/layout?page=home", headers={**app, "X-User-Token": comps.user_tokens.mint(user)}).get_json()
        bodies.append(body)
        events = [{"type": "impression", "impression_token": s["impression_token"]} for s in body["slots"]]
        assert client.post("/v1/events", json={"events": events}, headers=app).status_code == 202
    comps.decision_log.flush()  # every decision is on its stream before anything exports
    worker = build_ledger_worker(comps, consumer="test", claim_idle_ms=1, block_ms=1)
    # The worker would export on its own while it drains; here the export happens once, by hand, so
    # its count is all of the decisions.
    exporter, worker.exporter = worker.exporter, None
    worker.run_until_idle()
    assert exporter.export()[0] == sum(len(b["slots"]) for b in bodies)
    worker.exporter = exporter

    # Outcomes that arrive after their decision was exported, one of them reversed.
    def has(body, product_id):
        return any(s["product"]["product_id"] == product_id for s in body["slots"])

    chosen = next(b for b in bodies if has(b, "gold_card") and has(b, "cps_loan"))  # most layouts show both
    first = {s["product"]["product_id"]: s for s in chosen["slots"]}
    card, loan = first["gold_card"], first["cps_loan"]
    for partner, body in (
        ("card_c", {"event_id": "c1", "type": "approved", "impression_token": card["impression_token"]}),
        ("lender_a", {"event_id": "l1", "type": "disbursed", "impression_token": loan["impression_token"],
                      "amount": 1_000_000}),
        ("lender_a", {"event_id": "l1-undo", "type": "reversed", "reverses": "l1"}),
    ):
        raw = orjson.dumps(body)
        response = client.post("/partner/v1/postbacks", data=raw, headers=signed_headers(partner, FUNNEL_SECRET, raw))
        assert response.status_code == 202, response.get_json()
    worker.run_until_idle()
    worker.exporter.export()
    return {"bodies": bodies, "chosen": chosen, "card": card, "loan": loan, "worker": worker}
