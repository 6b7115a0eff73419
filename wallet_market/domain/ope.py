"""Off-policy evaluation: what a candidate rule set would earn, estimated from the decision log.

Every logged decision records, for each slot, the product shown, the logging
policy's exact distribution over products for that slot (``logged_probs``), and
what the slot earned afterwards (in the group and the platform view). A
candidate policy gives, for the same decision and slot, its own distribution
over products (a deterministic candidate puts 1.0 on one product).

Which slate estimator, and why
------------------------------
A page is a slate of slots, but its revenue is the sum of what each slot
earns. The estimators here therefore weight each slot on its own (the
*marginal* or *independent-item* estimator): a slot's weight is
``w = π(shown | x, s) / μ(shown | x, s)`` — the candidate's over the logging
policy's probability of the product that slot showed — and a decision's value
is the sum over its slots. Whole-slate importance weighting would multiply the
slots' ratios together; with several slots and a small exploration share, that
product is zero for almost every decision and huge for the rest, so its
variance is orders of magnitude larger. The per-slot weights stay bounded by
``1 / μ`` of a single slot.

It rests on these assumptions:

- **Additive rewards.** A slot's reward depends on the context, the slot and the
  product *in that slot* only, not on what the other slots show. Then the
  marginal estimator is unbiased; interactions between slots (one product
  drawing clicks from another) bias it.
- **Exact marginal propensities with support.** ``logged_probs`` is the logging
  policy's marginal probability of each product in that slot given the
  context, and positive for every product the candidate might choose there.
  Where it is not (``support_bps`` below 100%), IPS and SNIPS count the
  candidate's unsupported choices as earning nothing, and DM and DR lean on the
  reward model for them; a warning says so.
- **Independent decisions.** Decisions are independent draws (a user's
  repeated visits are treated as separate decisions), and the candidate is
  evaluated on the contexts the log saw.

The estimators
--------------
With ``r`` a slot's reward in the chosen view and ``q̂(x, s, a)`` a reward model:

- **IPS**: ``Σ_s w r`` per decision — unbiased, the widest interval.
- **SNIPS**: for each slot position ``p``, ``Σ w r / Σ w`` over the log's slots at
  that position, times the number of those slots — slightly biased, usually far
  less variable than IPS.
- **DM** (direct method): ``Σ_s Σ_a π(a | x, s) q̂(x, s, a)`` — no weights, but
  only as good as the model; its interval ignores the model's own error.
- **DR** (doubly robust): DM plus ``Σ_s w (r − q̂(x, s, shown))`` — unbiased when
  the propensities are exact, and tighter than IPS when the model is good.

Every estimate is revenue per 1,000 slot impressions (``rpm_fen``): the total
value over the total slots logged, times 1,000, rounded half-up to a fen. Its
95% interval uses the normal approximation with per-decision influence values
(the delta method for the ratio to slots, and for SNIPS's per-position
self-normalisation). ``effective_sample_size`` is ``(Σw)² / Σw²`` over all
slots: how many on-policy slots the weighted log is worth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Hashable, Mapping, Sequence, TypeVar

from .experiments import BPS, Z_95, ratio_of_means, round_half_up, variance_of_mean

VIEWS = ("group", "platform")
# Probabilities in a distribution must add up to 1 within this (logged ones are rounded to basis points).
SUM_TOLERANCE = 0.01
# Warn below 90% support, or an effective sample below 1% of the slots logged.
MIN_SUPPORT_BPS = 9000
MIN_ESS_SHARE = 0.01
ESTIMATORS = ("ips", "snips", "dm", "dr")

Distribution = Mapping[str, float]


@dataclass(frozen=True, slots=True)
class LoggedSlot:
    slot_id: str
    position: int
    shown: str
    logged_probs: Mapping[str, float]  # the logging policy's distribution over products; contains ``shown``
    reward_group_fen: int
    reward_platform_fen: int

    def reward(self, view: str) -> int:
        return self.reward_group_fen if view == "group" else self.reward_platform_fen


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    decision_id: str
    context: Mapping[str, object]
    slots: tuple[LoggedSlot, ...]


# The candidate's distribution over products for one slot of one logged decision.
CandidatePolicy = Callable[[LoggedDecision, LoggedSlot], Distribution]
# q̂(x, s, a): the expected reward in fen of product ``a`` in slot ``s`` for context ``x``.
RewardModel = Callable[[Mapping[str, object], LoggedSlot, str], float]


def candidate_from_table(table: Mapping[str, Mapping[str, Distribution]]) -> CandidatePolicy:
    """A candidate given as decision id → slot id → distribution (e.g. computed ahead of time)."""

    def policy(decision: LoggedDecision, slot: LoggedSlot) -> Distribution:
        return table[decision.decision_id][slot.slot_id]

    return policy


# --- validation --------------------------------------------------------------


def _distribution_error(distribution: Mapping[str, float]) -> str | None:
    if not distribution:
        return "must name at least one product"
    values = list(distribution.values())
    if any(not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0 for p in values):
        return "every probability must be a number from 0 to 1"
    if abs(math.fsum(values) - 1.0) > SUM_TOLERANCE:
        return "probabilities must add up to 1"
    return None


def log_errors(decisions: Sequence[LoggedDecision]) -> dict[str, str]:
    """Every reason the log cannot be evaluated, as path → message (empty when it can)."""
    errors: dict[str, str] = {}
    for i, decision in enumerate(decisions):
        for j, slot in enumerate(decision.slots):
            path = f"decisions[{i}].slots[{j}].logged_probs"
            problem = _distribution_error(slot.logged_probs)
            if problem is None and slot.logged_probs.get(slot.shown, 0.0) <= 0.0:
                problem = f"must give the product shown ({slot.shown}) a positive probability"
            if problem is not None:
                errors[path] = problem
    return errors


def _check_inputs(decisions: Sequence[LoggedDecision], view: str) -> None:
    if view not in VIEWS:
        raise ValueError(f"view: must be one of {', '.join(VIEWS)}")
    errors = log_errors(decisions)
    if errors:
        path, message = next(iter(errors.items()))
        raise ValueError(f"{path}: {message}")


# --- the reward model --------------------------------------------------------


_K = TypeVar("_K", bound=Hashable)


def _shrunk(total: float, count: int, parent: float, strength: float) -> float:
    return (total + strength * parent) / (count + strength)


@dataclass(frozen=True, slots=True)
class SmoothedRewardModel:
    """Mean reward per (product, position, context value), each level shrunk toward the coarser one.

    ``q̂(product, position, key) = (Σr + m · q̂(product, position)) / (n + m)``,
    ``q̂(product, position) = (Σr + m · q̂(product)) / (n + m)`` and
    ``q̂(product) = (Σr + m · overall mean) / (n + m)``, with ``m`` the prior
    strength in pseudo-slots; a product never logged gets the overall mean.
    """

    context_key: str
    overall: float
    by_product: Mapping[str, float] = field(default_factory=dict)
    by_position: Mapping[tuple[str, int], float] = field(default_factory=dict)
    by_context: Mapping[tuple[str, int, str], float] = field(default_factory=dict)

    def __call__(self, context: Mapping[str, object], slot: LoggedSlot, product: str) -> float:
        cell = (product, slot.position, str(context.get(self.context_key)))
        if cell in self.by_context:
            return self.by_context[cell]
        if (product, slot.position) in self.by_position:
            return self.by_position[(product, slot.position)]
        return self.by_product.get(product, self.overall)


def _add(cells: dict[_K, tuple[float, int]], key: _K, reward: float) -> None:
    total, count = cells.get(key, (0.0, 0))
    cells[key] = (total + reward, count + 1)


def fit_reward_model(
    decisions: Sequence[LoggedDecision],
    *,
    view: str = "group",
    context_key: str = "risk_tier",
    prior_strength: float = 10.0,
) -> SmoothedRewardModel:
    """The smoothed mean reward of each shown product from the log itself (see :class:`SmoothedRewardModel`)."""
    products: dict[str, tuple[float, int]] = {}
    positions: dict[tuple[str, int], tuple[float, int]] = {}
    contexts: dict[tuple[str, int, str], tuple[float, int]] = {}
    overall_total, overall_count = 0.0, 0
    for decision in decisions:
        value = str(decision.context.get(context_key))
        for slot in decision.slots:
            reward = float(slot.reward(view))
            overall_total += reward
            overall_count += 1
            _add(products, slot.shown, reward)
            _add(positions, (slot.shown, slot.position), reward)
            _add(contexts, (slot.shown, slot.position, value), reward)
    overall = overall_total / overall_count if overall_count else 0.0
    m = prior_strength
    by_product = {k: _shrunk(t, n, overall, m) for k, (t, n) in products.items()}
    by_position = {k: _shrunk(t, n, by_product[k[0]], m) for k, (t, n) in positions.items()}
    by_context = {k: _shrunk(t, n, by_position[(k[0], k[1])], m) for k, (t, n) in contexts.items()}
    return SmoothedRewardModel(context_key, overall, by_product, by_position, by_context)


# --- per-slot terms ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SlotTerms:
    weight: float  # π(shown) / μ(shown)
    reward: int
    direct: float  # Σ_a π(a) q̂(a)
    residual: float  # r − q̂(shown)
    support: float  # π-mass on products with μ > 0


def _slot_terms(
    decision: LoggedDecision, slot: LoggedSlot, candidate: CandidatePolicy, model: RewardModel, view: str
) -> _SlotTerms:
    pi = candidate(decision, slot)
    problem = _distribution_error(pi)
    if problem is not None:
        raise ValueError(f"candidate for decision {decision.decision_id}, slot {slot.slot_id}: {problem}")
    mu = slot.logged_probs
    reward = slot.reward(view)
    return _SlotTerms(
        weight=pi.get(slot.shown, 0.0) / mu[slot.shown],
        reward=reward,
        direct=math.fsum(p * model(decision.context, slot, a) for a, p in pi.items() if p > 0),
        residual=reward - model(decision.context, slot, slot.shown),
        support=math.fsum(p for a, p in pi.items() if mu.get(a, 0.0) > 0),
    )


@dataclass(slots=True)
class _Totals:
    """Per-decision sums of each estimator's value, and the per-position sums SNIPS needs."""

    slots: list[int] = field(default_factory=list)
    logged: list[float] = field(default_factory=list)
    ips: list[float] = field(default_factory=list)
    dm: list[float] = field(default_factory=list)
    dr: list[float] = field(default_factory=list)
    # per decision: position → (Σ w r, Σ w, slots at that position)
    by_position: list[dict[int, tuple[float, float, int]]] = field(default_factory=list)
    weight: float = 0.0
    weight_squared: float = 0.0
    support: float = 0.0

    def add(self, terms: list[tuple[int, _SlotTerms]]) -> None:
        self.slots.append(len(terms))
        self.logged.append(float(sum(t.reward for _, t in terms)))
        self.ips.append(math.fsum(t.weight * t.reward for _, t in terms))
        self.dm.append(math.fsum(t.direct for _, t in terms))
        self.dr.append(math.fsum(t.direct + t.weight * t.residual for _, t in terms))
        positions: dict[int, tuple[float, float, int]] = {}
        for position, t in terms:
            a, b, c = positions.get(position, (0.0, 0.0, 0))
            positions[position] = (a + t.weight * t.reward, b + t.weight, c + 1)
            self.weight += t.weight
            self.weight_squared += t.weight * t.weight
            self.support += t.support
        self.by_position.append(positions)


# --- estimates ---------------------------------------------------------------


def _interval(value: float | None, variance: float | None) -> dict[str, int | None]:
    """Per-slot value and its variance as rpm fen with a 95% interval."""
    if value is None:
        return {"rpm_fen": None, "ci_low_fen": None, "ci_high_fen": None}
    rpm = value * 1000
    if variance is None:
        return {"rpm_fen": round_half_up(rpm), "ci_low_fen": None, "ci_high_fen": None}
    half_width = Z_95 * math.sqrt(max(variance, 0.0)) * 1000
    return {
        "rpm_fen": round_half_up(rpm),
        "ci_low_fen": round_half_up(rpm - half_width),
        "ci_high_fen": round_half_up(rpm + half_width),
    }


def _per_slot_estimate(values: Sequence[float], slots: Sequence[int]) -> dict[str, int | None]:
    """``Σ values / Σ slots`` with the delta-method variance of that ratio of per-decision means."""
    estimate = ratio_of_means(values, slots)
    return _interval(None, None) if estimate is None else _interval(*estimate)


def _position_sums(totals: _Totals) -> dict[int, tuple[float, float, int]]:
    """Per position over the whole log: Σ w r, Σ w and the number of slots."""
    sums: dict[int, tuple[float, float, int]] = {}
    for positions in totals.by_position:
        for position, (a, b, c) in positions.items():
            sum_a, sum_b, sum_c = sums.get(position, (0.0, 0.0, 0))
            sums[position] = (sum_a + a, sum_b + b, sum_c + c)
    return sums


def _snips_estimate(totals: _Totals) -> dict[str, int | None]:
    """Per position ``Σ w r / Σ w``, averaged over positions by their share of the slots logged.

    With per-decision means ``āₚ`` (of ``Σ w r``), ``b̄ₚ`` (of ``Σ w``) and ``c̄ₚ``
    (slots at ``p``), ``Rₚ = āₚ / b̄ₚ`` and ``T = Σₚ c̄ₚ Rₚ / C`` with ``C = Σₚ c̄ₚ``,
    the influence of decision ``i`` is
    ``Σₚ [c̄ₚ (aᵢₚ − Rₚ bᵢₚ) / (C b̄ₚ) + (Rₚ − T)(cᵢₚ − c̄ₚ) / C]``.
    A position where the candidate never agrees with the log (``Σ w = 0``)
    counts as earning nothing there, as in IPS.
    """
    n = len(totals.by_position)
    sums = _position_sums(totals)
    total_slots = sum(c for _, _, c in sums.values())
    if total_slots == 0:
        return _interval(None, None)
    ratio = {p: (a / b if b > 0 else 0.0) for p, (a, b, _) in sums.items()}
    value = math.fsum(c * ratio[p] for p, (_, _, c) in sums.items()) / total_slots
    # Per position, the factor of a decision's residual Σwr − Rₚ·Σw: c̄ₚ / (C b̄ₚ) …
    residual_factor = {p: (c * n / (total_slots * b) if b > 0 else 0.0) for p, (_, b, c) in sums.items()}
    # … and of its slot count's deviation, (Rₚ − T) / C.
    count_factor = {p: (ratio[p] - value) * n / total_slots for p in sums}
    mean_count = {p: c / n for p, (_, _, c) in sums.items()}
    influences = []
    for positions in totals.by_position:
        phi = 0.0
        for p in sums:
            a_i, b_i, c_i = positions.get(p, (0.0, 0.0, 0))
            phi += residual_factor[p] * (a_i - ratio[p] * b_i) + count_factor[p] * (c_i - mean_count[p])
        influences.append(phi)
    return _interval(value, variance_of_mean(influences))


def _warnings(decisions: int, slots: int, support_bps: int | None, ess: float) -> list[str]:
    if decisions == 0 or slots == 0:
        return ["no slots logged: nothing to estimate from"]
    warnings = []
    if support_bps is not None and support_bps < MIN_SUPPORT_BPS:
        warnings.append(
            f"support is {support_bps / 100:.1f}% (below {MIN_SUPPORT_BPS / 100:.0f}%): the candidate often shows "
            "products the log never showed in that slot, so IPS and SNIPS miss them and DM and DR rely on the "
            "reward model for them"
        )
    if ess < MIN_ESS_SHARE * slots:
        warnings.append(
            f"effective sample size {ess:.1f} is below {MIN_ESS_SHARE:.0%} of the {slots} slots logged: the "
            "estimates rest on a few heavily weighted slots and their intervals are unreliable"
        )
    return warnings


def evaluate(
    decisions: Sequence[LoggedDecision],
    candidate: CandidatePolicy,
    *,
    view: str = "group",
    reward_model: RewardModel | None = None,
) -> dict[str, object]:
    """IPS, SNIPS, DM and DR estimates of the candidate's revenue per 1,000 slot impressions.

    ``view`` picks the group's or the platform's rewards. Without a
    ``reward_model`` (for DM and DR) a :class:`SmoothedRewardModel` is fitted
    from the log. Raises ``ValueError`` naming the decision and slot when the
    log (see :func:`log_errors`), the view or a candidate distribution is not
    valid. Without any slot every estimate is ``None``.
    """
    _check_inputs(decisions, view)
    model = reward_model if reward_model is not None else fit_reward_model(decisions, view=view)
    totals = _Totals()
    for decision in decisions:
        totals.add([(s.position, _slot_terms(decision, s, candidate, model, view)) for s in decision.slots])
    slots = sum(totals.slots)
    ess = totals.weight**2 / totals.weight_squared if totals.weight_squared > 0 else 0.0
    support_bps = round_half_up(BPS * totals.support / slots) if slots else None
    return {
        "decisions": len(decisions),
        "logged": {"rpm_fen": round_half_up(1000 * sum(totals.logged) / slots) if slots else None},
        "estimators": {
            "ips": _per_slot_estimate(totals.ips, totals.slots),
            "snips": _snips_estimate(totals),
            "dm": _per_slot_estimate(totals.dm, totals.slots),
            "dr": _per_slot_estimate(totals.dr, totals.slots),
        },
        "effective_sample_size": round(ess, 1),
        "support_bps": support_bps,
        "warnings": _warnings(len(decisions), slots, support_bps, ess),
    }
