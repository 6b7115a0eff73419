"""Properties of placement on random small catalogues, checked against a brute-force reference."""
from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wallet_market.domain.catalogue import Catalogue
from wallet_market.domain.placement import PlacementIndex, PlacementPolicy, RequestContext, UserState, place

from tests.catalogue_builders import NOW, page, partner, product, slot, user

PARTNERS = ("p1", "p2", "p3")
KINDS = ("loan", "credit_card")
TIERS = ("A", "B", "C", "D")


@dataclass
class Case:
    catalogue: Catalogue
    raw: dict
    consents: frozenset[str]
    risk_tier: str
    paused_partner: str | None
    personalized: bool

    def score(self, product_id: str) -> int:
        # per click at 10%: fee × 100,000 micro-fen per impression
        return self.raw["products"][product_id]["settlement"]["fee_fen"] * 100_000

    def eligible(self, product_id: str) -> bool:
        p = self.raw["products"][product_id]
        owner = p["owner"]
        if p["status"] != "active" or p["apr_max_bps"] > 2400:
            return False
        if owner != "in_house" and (owner == self.paused_partner or owner not in self.consents):
            return False
        if self.personalized and self.risk_tier not in p["eligibility"]["risk_tiers"]:
            return False
        return product_id not in self.raw["excluded"]

    def caps(self) -> dict[str, int]:
        caps: dict[str, int] = {}
        for r in self.raw["rules"]:
            if r["action"] == "partner_share_cap":
                caps[r["partner_id"]] = min(caps.get(r["partner_id"], r["max_slots"]), r["max_slots"])
        return caps


@st.composite
def cases(draw, personalized=None) -> Case:
    n_slots = draw(st.integers(1, 4))
    slots = [
        slot(
            f"s{i}",
            draw(st.sampled_from([0, 2500, 5000, 7500, 10000, 6000, 3000])),
            accepts=tuple(draw(st.sampled_from([("loan",), ("credit_card",), KINDS]))),
        )
        for i in range(n_slots)
    ]
    n_products = draw(st.integers(1, 6))
    products = {}
    for i in range(n_products):
        pid = f"x{i}"
        owner = draw(st.sampled_from((*PARTNERS, "in_house")))
        products[pid] = product(
            pid,
            owner=owner,
            kind=draw(st.sampled_from(KINDS)),
            fee_fen=draw(st.sampled_from([10, 50, 100, 150, 200, 300, 450, 700, 1000])),
            requires_login=False,
            status=draw(st.sampled_from(["active"] * 5 + ["paused"])),
            apr_max_bps=draw(st.sampled_from([2400] * 5 + [3000])),
            eligibility={"risk_tiers": draw(st.lists(st.sampled_from(TIERS), min_size=1, max_size=4, unique=True))},
        )
    product_ids = sorted(products)
    slot_ids = [s["slot_id"] for s in slots]
    rules = []
    for i in range(draw(st.integers(0, 3))):
        rules.append({
            "rule_id": f"pin{i}", "action": "pin", "priority": draw(st.integers(1, 3)),
            "product_id": draw(st.sampled_from(product_ids)), "slot_id": draw(st.sampled_from(slot_ids)),
        })
    for p in PARTNERS:
        if draw(st.booleans()):
            rules.append({"rule_id": f"cap_{p}", "action": "partner_share_cap", "partner_id": p,
                          "max_slots": draw(st.integers(0, 2))})
    excluded = set()
    if draw(st.booleans()):
        target = draw(st.sampled_from(product_ids))
        excluded.add(target)
        rules.append({"rule_id": "drop", "action": "exclude", "product_id": target})
    paused = draw(st.sampled_from([None, None, "p3"]))
    partners = [partner(p, status="paused" if p == paused else "active") for p in PARTNERS]
    consents = frozenset(draw(st.lists(st.sampled_from(PARTNERS), unique=True)))
    # the catalogue's own order must not matter
    listed = list(products.values())
    random.Random(draw(st.integers(0, 1000))).shuffle(listed)
    raw = {"partners": partners, "products": listed, "pages": [page("home", slots)], "rules": rules}
    cat = Catalogue.from_dict(raw)
    return Case(
        catalogue=cat,
        raw={"products": products, "rules": rules, "excluded": excluded, "slots": slots},
        consents=consents,
        risk_tier=draw(st.sampled_from(TIERS)),
        paused_partner=paused,
        personalized=draw(st.booleans()) if personalized is None else personalized,
    )


def decide(case: Case):
    policy = PlacementPolicy()
    who = user(risk_tier=case.risk_tier, consents=tuple(case.consents), personalized=case.personalized)
    return place(PlacementIndex.build(case.catalogue, policy), RequestContext("home", NOW, who), UserState(), policy)


def honoured_pins(case: Case) -> dict[str, str]:
    """The pins the rules say must hold: first per slot by priority, product once, eligible, caps kept."""
    caps = case.caps()
    slots = {s["slot_id"]: s for s in case.raw["slots"]}
    pinned: dict[str, str] = {}
    per_partner: dict[str, int] = {}
    pins = sorted((r for r in case.raw["rules"] if r["action"] == "pin"), key=lambda r: (r["priority"], r["rule_id"]))
    for r in pins:
        pid, sid = r["product_id"], r["slot_id"]
        owner = case.raw["products"][pid]["owner"]
        if sid in pinned or pid in pinned.values() or not case.eligible(pid):
            continue
        if case.raw["products"][pid]["kind"] not in slots[sid]["accepts"]:
            continue
        if owner in caps and per_partner.get(owner, 0) >= caps[owner]:
            continue
        pinned[sid] = pid
        per_partner[owner] = per_partner.get(owner, 0) + 1
    return pinned


def brute_force_best(case: Case, pinned: dict[str, str]) -> int:
    """Max Σ score × weight over the unpinned slots, trying every assignment (a slot may stay empty)."""
    caps = case.caps()
    for pid in pinned.values():
        owner = case.raw["products"][pid]["owner"]
        if owner in caps:
            caps[owner] -= 1
    free = [s for s in case.raw["slots"] if s["slot_id"] not in pinned]
    candidates = [pid for pid in case.raw["products"] if case.eligible(pid) and pid not in pinned.values()]

    def best(i: int, used: frozenset[str]) -> int:
        if i == len(free):
            return 0
        s = free[i]
        result = best(i + 1, used)
        for pid in candidates:
            p = case.raw["products"][pid]
            if pid in used or p["kind"] not in s["accepts"]:
                continue
            owner = p["owner"]
            if owner in caps:
                if caps[owner] <= 0:
                    continue
                caps[owner] -= 1
            result = max(result, case.score(pid) * s["position_weight_bps"] + best(i + 1, used | {pid}))
            if owner in caps:
                caps[owner] += 1
        return result

    return best(0, frozenset())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_layouts_keep_every_constraint(case: Case):
    decision = decide(case)
    placed = [s.product_id for s in decision.slots]
    assert len(placed) == len(set(placed)), "a product twice on the page"
    for s in decision.slots:
        assert case.eligible(s.product_id), f"{s.product_id} is not eligible"
        slot_def = next(x for x in case.raw["slots"] if x["slot_id"] == s.slot_id)
        assert case.raw["products"][s.product_id]["kind"] in slot_def["accepts"]
    counts: dict[str, int] = {}
    for pid in placed:
        owner = case.raw["products"][pid]["owner"]
        counts[owner] = counts.get(owner, 0) + 1
    for owner, cap in case.caps().items():
        assert counts.get(owner, 0) <= cap, f"{owner} over its share cap"
    pins = honoured_pins(case)
    assert {s.slot_id: s.product_id for s in decision.slots if s.reason == "pinned"} == pins
    assert decision.personalized is case.personalized


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(personalized=True))
def test_layouts_are_optimal(case: Case):
    decision = decide(case)
    weights = {s["slot_id"]: s["position_weight_bps"] for s in case.raw["slots"]}
    pins = honoured_pins(case)
    chosen = sum(case.score(s.product_id) * weights[s.slot_id] for s in decision.slots if s.reason == "optimal")
    assert chosen == brute_force_best(case, pins)
    assert all(s.reason in ("optimal", "pinned") for s in decision.slots)


@settings(max_examples=100, deadline=None)
@given(cases())
def test_layouts_are_deterministic(case: Case):
    assert decide(case) == decide(case)
