"""A synthetic wallet population with known truth, for the simulator.

Every user has hidden funnel rates for every product: the catalogue's priors
(the rates placement starts from) times a hidden multiplier per product and
stage, times the user's own affinity for the product. Placement never sees
them; it learns what it can from the ledger like with real users. Because the
truth is known, the exact expected revenue of showing any product in any slot
to any user is known too (:meth:`World.expected_reward`), and so is the true
value of any policy on any set of decisions.

The funnel of a slot shown to a user: a click with probability ``ctr × slot
weight``, then an application (``apply``), then an approval (``approve``: the
tier's approval rate, and for a partner only new customers) or a rejection,
then a loan drawn (``draw``) of the product's true average amount. A product
earns by its settlement model on the event it pays on, exactly as the ledger
books it (:func:`~wallet_market.domain.funnel.earned_revenue_fen`).

Everything is drawn from generators seeded with text (``f"{seed}:…"``), so a
seed always gives the same world, users and outcomes, in any process.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Mapping

from .catalogue import BPS, IN_HOUSE, RISK_TIERS, Product
from .funnel import APPLIED, APPROVED, CLICK, DISBURSED, PAYING_EVENT, earned_revenue_fen

TIER_SHARES = (("A", 0.30), ("B", 0.35), ("C", 0.25), ("D", 0.10))
REGIONS = ("east", "north", "south", "west")
DEVICES = ("phone-a", "phone-b", "phone-c")
APP_VERSIONS = ("5.1.0", "5.2.0", "5.3.0")
# Hidden multipliers: lognormal around 1 (σ of the log).
PRODUCT_SIGMA = 0.35
AFFINITY_SIGMA = 0.5
MAX_RATE = 0.95


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(map(str, parts)))


def _lognormal(rng: random.Random, sigma: float) -> float:
    """A lognormal multiplier with mean 1."""
    return math.exp(rng.gauss(-sigma * sigma / 2, sigma))


@dataclass(frozen=True, slots=True)
class SyntheticUser:
    index: int
    user_id: str | None  # None: a visitor, known by device only
    device_id: str
    profile: Mapping[str, Any] | None
    device_model: str
    app_version: str

    @property
    def risk_tier(self) -> str | None:
        return self.profile.get("risk_tier") if self.profile else None


@dataclass(frozen=True, slots=True)
class TrueFunnel:
    ctr: float
    apply: float
    approve: float
    draw: float
    amount_fen: int


@dataclass
class World:
    """The hidden truth of one seed: product multipliers and each user's affinities.

    ``baseline`` holds the products whose catalogued rates the truth is built
    on (the published catalogue when the simulation starts), so the truth stays
    put whatever catalogue a policy under test carries; a product it does not
    know is built on its own catalogued rates.
    """

    seed: int
    baseline: Mapping[str, Product] = field(default_factory=dict)
    _products: dict[str, tuple[float, float, float, float, float]] = field(default_factory=dict)
    _affinity: dict[tuple[int, str], float] = field(default_factory=dict)
    _funnels: dict[tuple[int, str], "TrueFunnel"] = field(default_factory=dict)
    _rewards: dict[tuple[Any, ...], float] = field(default_factory=dict)
    _terms: dict[int, tuple[Product, str]] = field(default_factory=dict)
    _earned: dict[tuple[Any, ...], float] = field(default_factory=dict)

    def users(self, count: int, partner_ids: list[str], logged_in_share: float = 0.8) -> list[SyntheticUser]:
        """``count`` users: most logged in with a profile, the rest visitors known by their device."""
        out = []
        for n in range(count):
            rng = _rng(self.seed, "user", n)
            device = f"sim-device-{self.seed}-{n}"
            model, version = rng.choice(DEVICES), rng.choice(APP_VERSIONS)
            if rng.random() >= logged_in_share:
                out.append(SyntheticUser(n, None, device, None, model, version))
                continue
            tier = _pick(rng, TIER_SHARES)
            share = rng.random()
            if share < 0.7:
                consents = list(partner_ids)
            elif share < 0.85:
                consents = sorted(rng.sample(partner_ids, k=max(1, len(partner_ids) // 2)))
            else:
                consents = []
            declined = rng.random() < 0.05
            user_id = f"sim-user-{self.seed}-{n}"
            profile = {
                "user_id": user_id,
                "risk_tier": tier,
                "in_house_decision": {"status": "declined" if declined else "none", "decided_at": None},
                "consents": {"personalized": rng.random() > 0.05, "share_with_partners": consents},
                "age": rng.randint(20, 59),
                "region": rng.choice(REGIONS),
                "phone_sha256": None,
            }
            out.append(SyntheticUser(n, user_id, device, profile, model, version))
        return out

    def _product(self, product_id: str) -> tuple[float, float, float, float, float]:
        found = self._products.get(product_id)
        if found is None:
            rng = _rng(self.seed, "product", product_id)
            found = tuple(_lognormal(rng, PRODUCT_SIGMA) for _ in range(5))  # type: ignore[assignment]
            self._products[product_id] = found  # type: ignore[assignment]
        return found  # type: ignore[return-value]

    def affinity(self, user: SyntheticUser, product_id: str) -> float:
        key = (user.index, product_id)
        found = self._affinity.get(key)
        if found is None:
            found = self._affinity[key] = _lognormal(_rng(self.seed, "affinity", user.index, product_id), AFFINITY_SIGMA)
        return found

    def funnel(self, user: SyntheticUser, product: Product) -> TrueFunnel:
        """The user's true rates for ``product`` (hidden from placement)."""
        key = (user.index, product.product_id)
        found = self._funnels.get(key)
        if found is None:
            found = self._funnels[key] = self._true_funnel(user, self.baseline.get(product.product_id, product))
        return found

    def _true_funnel(self, user: SyntheticUser, product: Product) -> TrueFunnel:
        m_ctr, m_apply, m_approve, m_draw, m_amount = self._product(product.product_id)
        prior = product.funnel
        tier = user.risk_tier if user.risk_tier in RISK_TIERS else None
        new_customer = 1.0 if product.owner == IN_HOUSE else prior.new_customer_rate_bps / BPS
        return TrueFunnel(
            ctr=min(MAX_RATE, prior.ctr_bps / BPS * m_ctr * self.affinity(user, product.product_id)),
            apply=min(MAX_RATE, prior.apply_rate_bps / BPS * m_apply),
            approve=min(MAX_RATE, prior.approval_for(tier) / BPS * m_approve * new_customer),
            draw=min(MAX_RATE, prior.draw_rate_bps / BPS * m_draw),
            amount_fen=max(1, round(prior.avg_loan_fen * m_amount)),
        )

    def expected_reward(self, user: SyntheticUser, product: Product, weight_bps: int, view: str) -> float:
        """The exact expected revenue (fen) of showing ``product`` to ``user`` in a slot of ``weight_bps``.

        Revenue follows the settlement terms of the ``product`` given (its catalogue's).
        """
        terms = self._terms.get(id(product))
        if terms is None:
            # the product is kept referenced, so its id names it for as long as the entry lives
            terms = self._terms[id(product)] = (product, repr((product.settlement, product.lending)))
        key = (user.index, product.product_id, weight_bps, view, terms[1])
        found = self._rewards.get(key)
        if found is None:
            found = self._rewards[key] = self._expected_reward(user, product, weight_bps, view)
        return found

    def _expected_reward(self, user: SyntheticUser, product: Product, weight_bps: int, view: str) -> float:
        truth = self.funnel(user, product)
        event = PAYING_EVENT.get(product.settlement.model)
        if event is None:
            return 0.0
        click = min(MAX_RATE, truth.ctr * weight_bps / BPS)
        reach = click
        if event != CLICK:
            reach *= truth.apply
            if event != APPLIED:
                reach *= truth.approve
                if event == DISBURSED:
                    reach *= truth.draw
        return reach * self.earned(product, event, truth.amount_fen, user.risk_tier, view)

    def earned(self, product: Product, event: str, amount_fen: int, tier: str | None, view: str) -> float:
        """What one paying event earns (fen), as the ledger books it."""
        terms = self._terms[id(product)][1] if id(product) in self._terms else repr((product.settlement, product.lending))
        key = (terms, event, amount_fen, tier, view)
        found = self._earned.get(key)
        if found is None:
            platform, group = earned_revenue_fen(product, event, amount_fen, tier)
            found = self._earned[key] = float(group if view == "group" else platform)
        return found


def _pick(rng: random.Random, shares: tuple[tuple[str, float], ...]) -> str:
    draw = rng.random()
    total = 0.0
    for value, share in shares:
        total += share
        if draw < total:
            return value
    return shares[-1][0]


def outcome_draws(seed: int, user: SyntheticUser, day: int, visit: int, slot_id: str) -> random.Random:
    """The generator of one slot's funnel: the same user, day, visit and slot draw the same numbers whatever is shown."""
    return _rng(seed, "outcome", user.index, day, visit, slot_id)
