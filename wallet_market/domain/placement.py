"""The placement engine (docs/architecture.md): which product fills each slot of a page.

:class:`PlacementIndex` holds everything that does not depend on the request,
built once per published rule set: each product's guard verdict and its
expected revenue per impression (integer micro-fen, per risk tier, both views),
and each page's rules in evaluation order with a small cache of which rules a
request context matches. :func:`place` then costs a pass over the products, a
few rule lookups and an exact assignment of products to slots, run as a short
pipeline of stages (facts, rules, eligibility, scores, assignment, exploration,
explanation), each a function of what the earlier stages produced.
"""
from __future__ import annotations

import random
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Callable, Iterable, Mapping

from .catalogue import BPS, IN_HOUSE, RISK_TIERS, Catalogue, Page, Partner, Product, Rule, Slot
from .economics import GROUP_VIEW, PLATFORM_VIEW, expected_revenue_per_impression, to_micro_fen
from .guards import parse_version, partner_placeable, product_violations
from .users import UserProfile

DETERMINISTIC_BPS = BPS
# Request-context fields that personalisation off hides from rule conditions (guard 7).
_PROFILE_DRIVEN_FIELDS = ("risk_tier", "in_house_decision", "new_user", "experiment_arm")
_RULE_CACHE_SIZE = 512


class UnknownPage(LookupError):
    """No page of that id in the published catalogue."""

    def __init__(self, page_id: str) -> None:
        super().__init__(f"unknown page {page_id!r}")
        self.page_id = page_id


@dataclass(frozen=True, slots=True)
class RequestContext:
    """One layout request: the page, the time, the user (None for a visitor) and the app's facts."""

    page_id: str
    now: datetime
    user: UserProfile | None = None
    device_model: str | None = None
    app_version: str | None = None
    region: str | None = None  # the request's; the profile's region wins when both are known
    new_user: bool = False
    experiment_arm: str | None = None


@dataclass(frozen=True, slots=True)
class UserState:
    """Per-user counters and outcomes read from the store for this request."""

    impressions_today: Mapping[str, int] = field(default_factory=dict)
    suppressed_partners: frozenset[str] = frozenset()
    prescreen: Mapping[str, str] = field(default_factory=dict)  # partner_id -> "new" | "existing" | "failed"
    partners_at_lead_cap: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class PlacementPolicy:
    """Deployment settings placement depends on."""

    view: str = GROUP_VIEW
    apr_cap_bps: int = 2400
    decline_cooldown_days: int = 90
    exploration_bps: int = 0
    exploration_top_k: int = 3  # the alternatives an explored slot picks among


@dataclass(frozen=True, slots=True)
class SlotDecision:
    """One filled slot of the layout."""

    slot_id: str
    position: int
    product_id: str
    expected_revenue_micro_fen: int
    propensity_bps: int
    reason: str  # "optimal" | "pinned" | "fallback" | "editorial" | "exploration"
    # The slot's logging distribution: the exact probability of every product it could have shown
    # (empty when the choice was certain).
    distribution: tuple[tuple[str, float], ...] = ()

    @property
    def probability(self) -> float:
        """The exact probability with which this slot shows its product."""
        if not self.distribution:
            return 1.0
        return next((p for pid, p in self.distribution if pid == self.product_id), 0.0)

    def logging_distribution(self) -> dict[str, float]:
        """Product → probability of showing it in this slot (1.0 for the product shown when certain)."""
        return dict(self.distribution) if self.distribution else {self.product_id: 1.0}

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot_id": self.slot_id,
            "position": self.position,
            "product_id": self.product_id,
            "expected_revenue_micro_fen": self.expected_revenue_micro_fen,
            "propensity_bps": self.propensity_bps,
            "reason": self.reason,
            "distribution": self.logging_distribution(),
        }


@dataclass(frozen=True, slots=True)
class CandidateExplanation:
    """Why one product won a slot, lost, or was filtered out."""

    product_id: str
    outcome: str  # "chosen" | "lost" | "filtered"
    slot_id: str | None = None
    score_micro_fen: int = 0
    components: Mapping[str, Any] = field(default_factory=dict)
    filtered_by: str | None = None
    lost_to: str | None = None
    lost_by_micro_fen: int | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "outcome": self.outcome,
            "slot_id": self.slot_id,
            "score_micro_fen": self.score_micro_fen,
            "components": dict(self.components),
            "filtered_by": self.filtered_by,
            "lost_to": self.lost_to,
            "lost_by_micro_fen": self.lost_by_micro_fen,
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The layout of one page for one request."""

    page_id: str
    ruleset_version: int
    personalized: bool
    slots: tuple[SlotDecision, ...]
    explanations: tuple[CandidateExplanation, ...] = ()
    total_expected_micro_fen: int = 0
    # What exploration costs this layout in expectation: the optimum's value less the randomised layout's.
    exploration_cost_micro_fen: int = 0

    def product_in(self, slot_id: str) -> str | None:
        """The product placed in ``slot_id``, or None when the slot is not shown."""
        for slot in self.slots:
            if slot.slot_id == slot_id:
                return slot.product_id
        return None

    def explanation_for(self, product_id: str) -> CandidateExplanation | None:
        """The explanation for ``product_id`` (only when placed with ``explain=True``)."""
        for item in self.explanations:
            if item.product_id == product_id:
                return item
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "page_id": self.page_id,
            "ruleset_version": self.ruleset_version,
            "personalized": self.personalized,
            "slots": [s.to_dict() for s in self.slots],
            "explanations": [e.to_dict() for e in self.explanations],
            "total_expected_micro_fen": self.total_expected_micro_fen,
            "exploration_cost_micro_fen": self.exploration_cost_micro_fen,
        }


# -- the index ---------------------------------------------------------------


class _Entry:
    """A product with everything placement needs that does not depend on the request."""

    __slots__ = (
        "product", "product_id", "kind", "partner_id", "is_in_house", "status_ok", "window",
        "guard_reason", "requires_login", "risk_tiers", "age_min", "age_max", "regions",
        "daily_cap", "needs_prescreen", "platform", "group",
    )

    def __init__(self, product: Product, partners: Mapping[str, Partner], apr_cap_bps: int) -> None:
        self.product = product
        self.product_id = product.product_id
        self.kind = product.kind
        self.is_in_house = product.owner == IN_HOUSE
        self.partner_id = None if self.is_in_house else product.owner
        self.status_ok = product.status == "active"
        self.window = None if product.schedule.is_open_ended else product.schedule
        violations = product_violations(product, apr_cap_bps)
        self.guard_reason = f"guard:{violations[0].guard}" if violations else None
        if self.guard_reason is None and self.partner_id is not None and self.partner_id not in partners:
            self.guard_reason = "guard:unknown_reference"
        self.requires_login = product.requires_login
        eligibility = product.eligibility
        self.risk_tiers = frozenset(eligibility.risk_tiers)
        self.age_min = eligibility.age_min
        self.age_max = eligibility.age_max
        self.regions = frozenset(eligibility.regions) if eligibility.regions else None
        self.daily_cap = product.daily_impression_cap
        partner = partners.get(self.partner_id) if self.partner_id is not None else None
        self.needs_prescreen = bool(partner is not None and partner.prescreen_url)
        self.platform: dict[str | None, int] = {}
        self.group: dict[str | None, int] = {}
        if self.guard_reason is not None and self.guard_reason != "guard:unknown_reference":
            # A product that breaks a guard is never placed; its economics may not even compute.
            for tier in (*RISK_TIERS, None):
                self.platform[tier] = self.group[tier] = 0
            return
        for tier in (*RISK_TIERS, None):
            revenue = expected_revenue_per_impression(product, tier)
            self.platform[tier] = to_micro_fen(revenue.platform_fen)
            self.group[tier] = to_micro_fen(revenue.group_fen)

    def score(self, view: str, tier: str | None) -> int:
        table = self.platform if view == PLATFORM_VIEW else self.group
        return table.get(tier, table[None])


class _PreparedRule:
    __slots__ = (
        "rule", "rule_id", "action", "product_id", "partner_id", "slot_id", "factor_bps",
        "floor_rpm_fen", "max_slots", "window", "tests", "target_ids",
    )

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.rule_id = rule.rule_id
        self.action = rule.action
        self.product_id = rule.product_id
        self.partner_id = rule.partner_id
        self.slot_id = rule.slot_id
        self.factor_bps = rule.factor_bps
        self.floor_rpm_fen = rule.floor_rpm_fen
        self.max_slots = rule.max_slots
        self.window = None if rule.window.is_open_ended else rule.window
        tests: list[tuple[str, str, Any]] = []
        for name, accepted in (rule.condition or {}).items():
            if name == "app_version" and isinstance(accepted, Mapping):
                tests.append((name, "min", parse_version(accepted.get("min"))))
                continue
            if not isinstance(accepted, (list, tuple, set, frozenset)):
                accepted = [accepted]
            if name == "app_version":
                tests.append((name, "versions", frozenset(v for v in map(parse_version, accepted) if v is not None)))
            else:
                tests.append((name, "in", tuple(accepted)))
        self.tests = tuple(tests)
        self.target_ids: tuple[str, ...] = ()

    def resolve_targets(self, entries: Iterable[_Entry]) -> None:
        """The products the action applies to: one product, every product of a partner, or all."""
        self.target_ids = tuple(e.product_id for e in entries if self.targets(e))

    def matches(self, values: Mapping[str, object]) -> bool:
        for name, how, accepted in self.tests:
            value = values.get(name)
            if value is None:
                return False  # the context lacks the field: a condition on it does not match
            if how == "in":
                # bools compare by identity so that 1 never matches True
                if isinstance(value, bool):
                    if not any(a is value for a in accepted):
                        return False
                elif value not in accepted:
                    return False
            else:
                version = parse_version(value)
                if version is None:
                    return False
                if how == "min":
                    if accepted is None or version < accepted:
                        return False
                elif version not in accepted:
                    return False
        return True

    def targets(self, entry: _Entry) -> bool:
        if self.product_id is not None:
            return entry.product_id == self.product_id
        if self.partner_id is not None:
            return entry.partner_id == self.partner_id
        return True


class _Audience:
    """The slots of a page one audience (logged-in users, or visitors) sees."""

    __slots__ = ("slots", "kinds", "best_first")

    def __init__(self, slots: tuple[Slot, ...], position: Mapping[str, int]) -> None:
        self.slots = slots  # in page order
        self.kinds = frozenset(k for s in slots for k in s.accepts)
        # By position weight, best first, then by position on the page.
        self.best_first = tuple(sorted(slots, key=lambda s: (-s.position_weight_bps, position[s.slot_id])))


class _PageEntry:
    __slots__ = ("page", "position", "users", "visitors", "rules", "condition_fields", "_cache", "_lock")

    def __init__(self, page: Page, rules: Iterable[_PreparedRule]) -> None:
        self.page = page
        self.position = {slot.slot_id: i for i, slot in enumerate(page.slots)}
        self.users = _Audience(page.slots, self.position)
        self.visitors = _Audience(tuple(s for s in page.slots if s.visible_to_visitors), self.position)
        self.rules = tuple(r for r in rules if r.rule.page_id in (None, page.page_id))
        self.condition_fields = tuple(sorted({name for r in self.rules for name, _, _ in r.tests}))
        self._cache: OrderedDict[tuple[object, ...], tuple[_PreparedRule, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def matching_rules(self, values: Mapping[str, object]) -> tuple[_PreparedRule, ...]:
        """Rules whose condition matches ``values``, in evaluation order (windows not yet checked)."""
        key = tuple(map(values.get, self.condition_fields))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        found = tuple(r for r in self.rules if r.matches(values))
        with self._lock:
            self._cache[key] = found
            if len(self._cache) > _RULE_CACHE_SIZE:
                self._cache.popitem(last=False)
        return found


class PlacementIndex:
    """The request-independent part of placement for one published rule set.

    Build it once per published version with :meth:`build` and keep it in
    memory; :func:`place` only reads it (its rule-match cache is thread safe).
    """

    __slots__ = ("catalogue", "ruleset_version", "apr_cap_bps", "_entries", "_by_id", "_pages",
                 "_partners", "_partner_reasons", "_editorial", "_score_tables", "_static")

    catalogue: Catalogue
    ruleset_version: int
    apr_cap_bps: int
    _entries: tuple[_Entry, ...]  # in product-id order
    _by_id: dict[str, _Entry]
    _pages: dict[str, _PageEntry]
    _partners: dict[str, Partner]
    _editorial: dict[str, tuple[_Entry, ...]]  # page_id -> every product, the page's editorial order first
    _score_tables: dict[tuple[str, str | None], dict[str, int]]  # (view, tier) -> product_id -> micro-fen
    # Kept for one day: guard 3 per partner, and each product's all-day reason for a visitor / a logged-in user.
    _partner_reasons: tuple[date, Mapping[str, str | None]] | None
    _static: tuple[date, dict[bool, tuple[tuple[_Entry, str | None], ...]]] | None

    def __init__(self) -> None:  # use build()
        self._partner_reasons = None
        self._static = None

    @classmethod
    def build(cls, catalogue: Catalogue, policy: PlacementPolicy | None = None) -> "PlacementIndex":
        """Precompute guard verdicts, scores and per-page rules for ``catalogue``."""
        policy = policy or PlacementPolicy()
        index = cls()
        index.catalogue = catalogue
        index.ruleset_version = catalogue.version
        index.apr_cap_bps = policy.apr_cap_bps
        index._partners = dict(catalogue.partners)
        index._entries = tuple(
            _Entry(catalogue.products[pid], catalogue.partners, policy.apr_cap_bps)
            for pid in sorted(catalogue.products)
        )
        index._by_id = {e.product_id: e for e in index._entries}
        # Score of every product per view and risk tier, ready for a request to copy.
        index._score_tables = {
            (view, tier): {e.product_id: e.score(view, tier) for e in index._entries}
            for view in (GROUP_VIEW, PLATFORM_VIEW)
            for tier in (*RISK_TIERS, None)
        }
        rules = [
            _PreparedRule(r)
            for r in sorted(catalogue.rules, key=lambda r: (r.priority, r.rule_id))
            if r.enabled
        ]
        for rule in rules:
            rule.resolve_targets(index._entries)
        index._pages = {pid: _PageEntry(page, rules) for pid, page in catalogue.pages.items()}
        index._editorial = {}
        for pid, page in catalogue.pages.items():
            listed = [p for p in dict.fromkeys(page.editorial_order) if p in index._by_id]
            listed_set = set(listed)
            rest = [e.product_id for e in index._entries if e.product_id not in listed_set]
            index._editorial[pid] = tuple(index._by_id[p] for p in (*listed, *rest))
        return index

    def page_ids(self) -> tuple[str, ...]:
        """The pages this rule set can lay out."""
        return tuple(sorted(self._pages))

    def prescreen_partner_ids(self, page_id: str) -> tuple[str, ...]:
        """Partners with a pre-screen endpoint and a product the page's slots accept.

        These are the partners whose pre-screen outcome the caller gathers
        (within each partner's deadline) before placing a logged-in user.
        Raises :class:`UnknownPage` for a page the rule set does not have.
        """
        page = self._pages.get(page_id)
        if page is None:
            raise UnknownPage(page_id)
        return tuple(sorted({
            e.partner_id for e in self._entries
            if e.needs_prescreen and e.partner_id is not None and e.kind in page.users.kinds
        }))

    def product(self, product_id: str) -> Product | None:
        """The catalogue product of that id, or None."""
        entry = self._by_id.get(product_id)
        return entry.product if entry is not None else None

    def score_table(self, view: str, tier: str | None) -> Mapping[str, int]:
        """Expected revenue per impression (micro-fen, weight 1) of every product, before rules."""
        return self._score_tables[(view, tier if tier in RISK_TIERS else None)]

    def static_verdicts(self, today: date, logged_in: bool) -> tuple[tuple[_Entry, str | None], ...]:
        """Every product with the reason that keeps it off every page today (or None), kept for the day.

        Product status and schedule windows are not included: they are checked per request.
        """
        cached = self._static
        if cached is None or cached[0] != today:
            reasons = self.partner_reasons(today)
            cached = (
                today,
                {
                    signed_in: tuple((e, _static_reason(e, reasons, signed_in)) for e in self._entries)
                    for signed_in in (False, True)
                },
            )
            self._static = cached
        return cached[1][logged_in]

    def partner_reasons(self, today: date) -> Mapping[str, str | None]:
        """Guard 3 verdict of every partner on ``today`` (kept for the day)."""
        cached = self._partner_reasons
        if cached is not None and cached[0] == today:
            return cached[1]
        reasons = {pid: partner_placeable(p, today) for pid, p in self._partners.items()}
        self._partner_reasons = (today, reasons)
        return reasons


# -- one request -------------------------------------------------------------
#
# place() runs the stages below in order. Each stage is a function of what the
# earlier ones produced:
#   facts        what this request knows about the user, the time and the counters
#   rules        the page's rules matching the request, sorted by what they do
#   eligibility  the reason each product may not be placed (None when it may)
#   scores       expected revenue per impression after boosts; floors; the candidates
#   assignment   pins, then the optimal (or editorial) assignment, then fallbacks
#   exploration  ε-greedy per slot among its k best alternatives, with each slot's exact distribution
#   explanation  the slot decisions, and on request why each product won or lost


def place(
    index: PlacementIndex,
    ctx: RequestContext,
    state: UserState,
    policy: PlacementPolicy,
    explain: bool = False,
    rng: random.Random | None = None,
) -> Decision:
    """Lay out ``ctx.page_id`` for this request.

    Raises :class:`UnknownPage` for a page the catalogue does not have.
    ``rng`` draws the exploration choice when ``policy.exploration_bps`` is above
    zero; with zero exploration the layout is fully deterministic.
    """
    page = index._pages.get(ctx.page_id)
    if page is None:
        raise UnknownPage(ctx.page_id)
    facts = _facts(index, ctx, state, policy)
    effects = _rules(page, ctx, facts)
    audience = page.users if facts.logged_in else page.visitors
    reason = _eligibility(index.static_verdicts(facts.today, facts.logged_in), facts, audience.kinds, effects.excluded)
    scores = _scores(index.score_table(policy.view, facts.tier), effects.boosts)
    notes: dict[str, list[str]] | None = {} if explain else None

    assignment = _Assignment(effects.caps)
    if effects.pins:
        _pins(effects.pins, page, audience.slots, index._by_id, reason, assignment, notes)
    if effects.floors:
        _apply_floors(effects.floors, reason, scores, assignment.pinned)
    explored = _NOT_EXPLORED
    if facts.personalized:
        order = _free_slots(audience.best_first, assignment)
        cands = _candidates(index._entries, reason, scores, assignment.pinned)
        _assign_optimal(order, cands, scores, assignment)
        _assign_fallbacks(audience.slots, index._by_id, facts, reason, assignment, notes)
        if policy.exploration_bps > 0 and order:
            explored = _explore(order, cands, scores, assignment, policy, rng)
    else:
        _assign_editorial(_free_slots(audience.slots, assignment), index._editorial[ctx.page_id], reason, assignment)
        _assign_fallbacks(audience.slots, index._by_id, facts, reason, assignment, notes)

    decided, total = _slot_decisions(audience.slots, page.position, assignment.chosen, scores, explored.distributions)
    explanations: tuple[CandidateExplanation, ...] = ()
    if notes is not None:
        explanations = _explain(
            index._entries, audience.best_first, decided, reason, scores, effects.boosts, notes, policy.view,
            facts.tier, facts.personalized,
        )
    return Decision(
        page_id=ctx.page_id,
        ruleset_version=index.ruleset_version,
        personalized=facts.personalized,
        slots=tuple(decided),
        explanations=explanations,
        total_expected_micro_fen=total,
        exploration_cost_micro_fen=explored.cost_micro_fen,
    )


# -- stage: facts


class _Facts:
    """The request's facts that eligibility and rule conditions are checked against."""

    __slots__ = ("now", "today", "logged_in", "personalized", "tier", "check_tier", "age", "region", "share",
                 "declined_recently", "impressions", "suppressed", "lead_capped", "prescreen", "partner_reasons")

    now: datetime  # always timezone-aware
    today: date
    logged_in: bool
    personalized: bool
    tier: str | None  # the risk tier scores and eligibility use: None for a visitor or without personalisation
    check_tier: bool
    age: int | None
    region: str | None  # the profile's region, else the request's
    share: frozenset[str]  # partners the user consents to share data with
    declined_recently: bool  # declined by the in-house lender within the cool-down
    impressions: Mapping[str, int]  # product_id -> impressions today
    suppressed: frozenset[str]
    lead_capped: frozenset[str]
    prescreen: Mapping[str, str]
    partner_reasons: Mapping[str, str | None]  # guard 3 verdict of each partner today


def _facts(index: PlacementIndex, ctx: RequestContext, state: UserState, policy: PlacementPolicy) -> _Facts:
    """What the request knows: the time (UTC when naive), the user's profile and today's counters."""
    f = _Facts()
    now = f.now = ctx.now if ctx.now.tzinfo is not None else ctx.now.replace(tzinfo=timezone.utc)
    today = f.today = now.date()
    user = ctx.user
    f.logged_in = user is not None
    personalized = f.personalized = user.personalized if user is not None else True
    tier = f.tier = user.risk_tier if user is not None and personalized else None
    f.check_tier = personalized and tier is not None
    f.age = user.age if user is not None else None
    f.region = (user.region if user is not None else None) or ctx.region
    f.share = user.share_with_partners if user is not None else frozenset()
    f.declined_recently = user is not None and user.declined_in_house_within(today, policy.decline_cooldown_days)
    f.impressions = state.impressions_today
    f.suppressed = state.suppressed_partners
    f.lead_capped = state.partners_at_lead_cap
    f.prescreen = state.prescreen
    f.partner_reasons = index.partner_reasons(today)
    return f


# -- stage: rules


class _RuleEffects:
    """The matching rules of a request, sorted by what they do, in evaluation order."""

    __slots__ = ("excluded", "boosts", "floors", "pins", "caps")

    def __init__(self) -> None:
        self.excluded: dict[str, str] = {}  # product_id -> the first rule excluding it
        self.boosts: dict[str, list[int]] = {}  # product_id -> boost factors (bps), in order
        self.floors: list[tuple[_PreparedRule, int]] = []  # each floor rule with its threshold in micro-fen
        self.pins: list[_PreparedRule] = []
        self.caps: dict[str, int] = {}  # partner_id -> most slots of the page it may fill


def _rules(page: _PageEntry, ctx: RequestContext, facts: _Facts) -> _RuleEffects:
    """The effects of the page's rules whose condition and window match this request."""
    values = _condition_values(ctx, facts)
    now = facts.now
    rules = [r for r in page.matching_rules(values) if r.window is None or r.window.contains(now)]
    return _rule_effects(rules, facts.personalized)


def _condition_values(ctx: RequestContext, facts: _Facts) -> dict[str, object]:
    """The request's value of every field a rule condition can test (None when unknown).

    Without personalisation the profile-driven fields are hidden (guard 7).
    """
    user = ctx.user
    values: dict[str, object] = {
        "logged_in": facts.logged_in,
        "risk_tier": facts.tier,
        "in_house_decision": user.in_house_decision if user is not None else None,
        "age_band": user.age_band if user is not None else None,
        "region": facts.region,
        "device_model": ctx.device_model,
        "app_version": ctx.app_version,
        "new_user": ctx.new_user,
        "experiment_arm": ctx.experiment_arm,
        "page": ctx.page_id,
    }
    if not facts.personalized:
        for name in _PROFILE_DRIVEN_FIELDS:
            values[name] = None
    return values


def _rule_effects(rules: Iterable[_PreparedRule], personalized: bool) -> _RuleEffects:
    """Sort ``rules`` by action; without personalisation boosts and floors do not apply (guard 7)."""
    effects = _RuleEffects()
    for r in rules:
        if personalized or r.action not in _PERSONALIZED_ACTIONS:
            add = _ADD_EFFECT.get(r.action)
            if add is not None:
                add(effects, r)
    return effects


def _add_exclude(effects: _RuleEffects, r: _PreparedRule) -> None:
    if r.product_id or r.partner_id:
        for pid in r.target_ids:
            effects.excluded.setdefault(pid, r.rule_id)


def _add_pin(effects: _RuleEffects, r: _PreparedRule) -> None:
    effects.pins.append(r)


def _add_share_cap(effects: _RuleEffects, r: _PreparedRule) -> None:
    if r.partner_id is not None and r.max_slots is not None:
        cap = max(0, r.max_slots)
        effects.caps[r.partner_id] = min(effects.caps.get(r.partner_id, cap), cap)


def _add_boost(effects: _RuleEffects, r: _PreparedRule) -> None:
    if r.factor_bps and (r.product_id or r.partner_id):
        for pid in r.target_ids:
            effects.boosts.setdefault(pid, []).append(r.factor_bps)


def _add_floor(effects: _RuleEffects, r: _PreparedRule) -> None:
    if r.floor_rpm_fen is not None:
        effects.floors.append((r, r.floor_rpm_fen * 1000))  # rpm fen -> micro-fen per impression


_ADD_EFFECT: dict[str, Callable[[_RuleEffects, _PreparedRule], None]] = {
    "exclude": _add_exclude,
    "pin": _add_pin,
    "partner_share_cap": _add_share_cap,
    "boost": _add_boost,
    "floor": _add_floor,
}
_PERSONALIZED_ACTIONS = frozenset({"boost", "floor"})


# -- stage: eligibility


def _eligibility(
    verdicts: Iterable[tuple[_Entry, str | None]], f: _Facts, kinds: frozenset[str], excluded: Mapping[str, str]
) -> dict[str, str | None]:
    """The first reason each product may not be placed for this request, or None; then rule excludes.

    ``verdicts`` are the index's reasons that hold all day (:meth:`PlacementIndex.static_verdicts`).
    """
    now = f.now
    reason: dict[str, str | None] = {}
    for e, why in verdicts:
        if not e.status_ok:
            why = "status"
        elif e.window is not None and not e.window.contains(now):
            why = "schedule"
        elif why is None:
            why = _user_reason(e, f)
            if why is None and e.kind not in kinds:
                why = "kind_not_accepted"
        reason[e.product_id] = why
    for pid, rule_id in excluded.items():
        if reason[pid] is None:
            reason[pid] = f"rule:{rule_id}"
    return reason


def _static_reason(e: _Entry, partner_reasons: Mapping[str, str | None], logged_in: bool) -> str | None:
    """The reasons that hold for the whole day for a visitor or a logged-in user (guards 1–4, login)."""
    if e.guard_reason is not None:
        return e.guard_reason
    partner_id = e.partner_id
    if partner_id is not None:
        blocked = partner_reasons.get(partner_id, "unknown_partner")
        if blocked is not None:
            return f"guard:partner_not_placeable:{blocked}"
    if not logged_in and (e.requires_login or partner_id is not None):
        return "login_required"
    return None


_PRESCREEN_REASONS: dict[str | None, str] = {
    None: "prescreen:pending",
    "existing": "prescreen:existing",
    "ineligible": "prescreen:ineligible",
}


def _user_reason(e: _Entry, f: _Facts, check_frequency: bool = True) -> str | None:
    """The reasons that depend on this user and today's counters (consent, tier, caps, pre-screen)."""
    partner_id = e.partner_id
    if partner_id is not None and partner_id not in f.share:
        return "no_consent"
    if f.check_tier and f.tier not in e.risk_tiers:
        return "risk_tier"
    age = f.age
    if age is not None and ((e.age_min is not None and age < e.age_min) or (e.age_max is not None and age > e.age_max)):
        return "age"
    if e.regions is not None and f.region is not None and f.region not in e.regions:
        return "region"
    if e.is_in_house and f.declined_recently:
        return "decline_cooldown"
    if check_frequency and e.daily_cap is not None and f.impressions.get(e.product_id, 0) >= e.daily_cap:
        return "frequency_cap"
    if partner_id is not None:
        if partner_id in f.suppressed:
            return "suppressed"
        if partner_id in f.lead_capped:
            return "lead_cap"
        if e.needs_prescreen:
            outcome = f.prescreen.get(partner_id)
            if outcome != "new":
                return _PRESCREEN_REASONS.get(outcome, "prescreen:failed")
    return None


def _entry_reason(e: _Entry, f: _Facts, check_frequency: bool = True) -> str | None:
    """The first reason ``e`` may not be placed for this request, or None (docs/architecture.md, placement; docs/guards.md)."""
    if not e.status_ok:
        return "status"
    if e.window is not None and not e.window.contains(f.now):
        return "schedule"
    return _static_reason(e, f.partner_reasons, f.logged_in) or _user_reason(e, f, check_frequency)


# -- stage: scores


def _scores(table: Mapping[str, int], boosts: Mapping[str, list[int]]) -> Mapping[str, int]:
    """Every product's expected revenue per impression (micro-fen, weight 1) with its boosts applied.

    ``table`` is the index's score table for the request's view and tier; it is
    copied only when a boost changes it.
    """
    if not boosts:
        return table
    scores = dict(table)
    for pid, factors in boosts.items():
        scores[pid] = _boosted(scores[pid], factors)
    return scores


def _boosted(score: int, factors: list[int]) -> int:
    """``score × Π(factor/10000)`` rounded half away from zero, computed exactly in integers."""
    numerator = score
    denominator = 1
    for factor in factors:
        numerator *= factor
        denominator *= BPS
    return _div_round(numerator, denominator)


def _div_round(numerator: int, denominator: int) -> int:
    if numerator >= 0:
        return (2 * numerator + denominator) // (2 * denominator)
    return -((-2 * numerator + denominator) // (2 * denominator))


def _apply_floors(
    floors: Iterable[tuple[_PreparedRule, int]],
    reason: dict[str, str | None],
    scores: Mapping[str, int],
    pinned_products: set[str],
) -> None:
    """Filter the products a floor rule targets that score below its threshold (pinned ones are not floored)."""
    for r, threshold in floors:
        for pid in r.target_ids:
            if reason[pid] is None and pid not in pinned_products and scores[pid] < threshold:
                reason[pid] = f"floor:{r.rule_id}"


def _candidates(
    entries: Iterable[_Entry], reason: Mapping[str, str | None], scores: Mapping[str, int], pinned_products: set[str]
) -> list[_Entry]:
    """The eligible, unpinned products that do not lose money, best score first.

    The entries come in product-id order and the sort is stable, so ties stay in it.
    """
    cands = [
        e for e in entries
        if reason[e.product_id] is None and e.product_id not in pinned_products and scores[e.product_id] >= 0
    ]
    cands.sort(key=lambda e: scores[e.product_id], reverse=True)
    return cands


# -- stage: assignment


class _Assignment:
    """The layout as it is filled: the product and reason of each filled slot, and the share caps left."""

    __slots__ = ("chosen", "cap_left", "pinned")

    def __init__(self, caps: Mapping[str, int]) -> None:
        self.chosen: dict[str, tuple[str, str]] = {}  # slot_id -> (product_id, reason)
        self.cap_left: dict[str, int] = dict(caps)  # partner_id -> slots it may still take
        self.pinned: set[str] = set()  # the products pinned

    def pin(self, slot_id: str, e: _Entry) -> None:
        """Fill ``slot_id`` with ``e`` by a pin rule, counting it against its partner's share cap."""
        self.chosen[slot_id] = (e.product_id, "pinned")
        self.pinned.add(e.product_id)
        if e.partner_id is not None and e.partner_id in self.cap_left:
            self.cap_left[e.partner_id] -= 1

    def take_share(self, partner_id: str | None) -> bool:
        """Count one slot against ``partner_id``'s share cap; False when it has none left."""
        cap_left = self.cap_left
        if partner_id is None or partner_id not in cap_left:
            return True
        if cap_left[partner_id] <= 0:
            return False
        cap_left[partner_id] -= 1
        return True


def _pins(
    pins: Iterable[_PreparedRule],
    page: _PageEntry,
    slots: tuple[Slot, ...],
    by_id: Mapping[str, _Entry],
    reason: Mapping[str, str | None],
    assignment: _Assignment,
    notes: dict[str, list[str]] | None,
) -> None:
    """Fill each slot with its first applicable pin; a product is pinned once only, within share caps.

    A pin that does not apply is noted against its product when ``notes`` is given.
    """
    shown = {s.slot_id: s for s in slots}
    pinned_by: dict[str, str] = {}  # slot_id -> rule_id
    for r in pins:
        pid, sid = r.product_id, r.slot_id
        if pid is None or sid is None or pid not in by_id:
            continue
        e = by_id[pid]
        why_not = _pin_refusal(e, sid, shown.get(sid), page, pinned_by, reason, assignment)
        if why_not is not None:
            if notes is not None:
                notes.setdefault(pid, []).append(f"pin rule {r.rule_id} ignored: {why_not}")
            continue
        assignment.pin(sid, e)
        pinned_by[sid] = r.rule_id


def _pin_refusal(
    e: _Entry,
    sid: str,
    slot: Slot | None,
    page: _PageEntry,
    pinned_by: Mapping[str, str],
    reason: Mapping[str, str | None],
    assignment: _Assignment,
) -> str | None:
    """Why pinning ``e`` into slot ``sid`` does not apply to this request, or None when it does."""
    pid = e.product_id
    if slot is None:
        return "slot not shown on this page" if sid not in page.position else "slot not shown to visitors"
    if sid in pinned_by:
        return f"slot already pinned by rule {pinned_by[sid]}"
    if pid in assignment.pinned:
        return "product already pinned"
    if reason[pid] is not None:
        return f"product filtered ({reason[pid]})"
    if e.kind not in slot.accepts:
        return "slot does not accept this kind"
    partner_id = e.partner_id
    if partner_id is not None and assignment.cap_left.get(partner_id, 1) <= 0:
        return "partner share cap reached"
    return None


def _free_slots(slots: Iterable[Slot], assignment: _Assignment) -> list[Slot]:
    """The slots of ``slots`` not filled yet, in the same order."""
    chosen = assignment.chosen
    return [s for s in slots if s.slot_id not in chosen]


def _assign_optimal(
    order: list[Slot], cands: list[_Entry], scores: Mapping[str, int], assignment: _Assignment
) -> None:
    """Fill the free slots (``order``, best first) with the assignment of ``cands`` maximising revenue."""
    cap_left = assignment.cap_left
    solved = _ASSIGNMENTS.solve(
        [s.position_weight_bps for s in order],
        [s.accepts for s in order],
        [(scores[e.product_id], e.kind, e.partner_id) for e in cands],
        cap_left,
    )
    chosen = assignment.chosen
    for slot, j in zip(order, solved):
        if j >= 0:
            e = cands[j]
            chosen[slot.slot_id] = (e.product_id, "optimal")
            if e.partner_id is not None and e.partner_id in cap_left:
                cap_left[e.partner_id] -= 1


def _assign_editorial(
    free: list[Slot], editorial: tuple[_Entry, ...], reason: Mapping[str, str | None], assignment: _Assignment
) -> None:
    """Without personalisation: each free slot, in page order, takes the first eligible product of the page's order."""
    on_page = set(assignment.pinned)
    chosen = assignment.chosen
    for slot in free:
        for e in editorial:
            pid = e.product_id
            if reason[pid] is not None or pid in on_page or e.kind not in slot.accepts:
                continue
            if not assignment.take_share(e.partner_id):
                continue
            chosen[slot.slot_id] = (pid, "editorial")
            on_page.add(pid)
            break


def _assign_fallbacks(
    slots: tuple[Slot, ...],
    by_id: Mapping[str, _Entry],
    f: _Facts,
    reason: Mapping[str, str | None],
    assignment: _Assignment,
    notes: dict[str, list[str]] | None,
) -> None:
    """Each slot left empty takes its fallback product when that may be shown.

    Guards, login and consent still hold; frequency caps, rule excludes and floors do not.
    """
    chosen = assignment.chosen
    on_page = {pid for pid, _ in chosen.values()}
    for slot in slots:
        sid = slot.slot_id
        pid = slot.fallback_product_id
        if sid in chosen or pid is None or pid in on_page:
            continue
        e = by_id.get(pid)
        if e is None or e.kind not in slot.accepts or _entry_reason(e, f, check_frequency=False) is not None:
            continue
        if not assignment.take_share(e.partner_id):
            continue
        chosen[sid] = (pid, "fallback")
        on_page.add(pid)
        if notes is not None and reason[pid] is not None:
            notes.setdefault(pid, []).append(f"placed as {sid}'s fallback despite {reason[pid]}")


_MemoKey = tuple[
    tuple[int, ...], tuple[tuple[str, ...], ...], tuple[tuple[int, str, str | None], ...], tuple[tuple[str, int], ...]
]


class _AssignmentMemo:
    """Assignments already solved, by their exact inputs (a small LRU shared by the process).

    The assignment is a pure function of slot weights and kinds, candidate
    scores, kinds and partners, and the caps left. Those inputs repeat across
    requests — users of one risk tier with the same consents see the same
    candidates — so a solved instance is reused instead of solved again.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._solved: OrderedDict[_MemoKey, tuple[int, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def solve(
        self,
        weights: list[int],
        accepts: list[tuple[str, ...]],
        cands: list[tuple[int, str, str | None]],
        cap_left: Mapping[str, int],
    ) -> list[int]:
        """:func:`_optimal_assignment` of these inputs, solved once per distinct instance."""
        key = (tuple(weights), tuple(accepts), tuple(cands), tuple(sorted(cap_left.items())))
        with self._lock:
            hit = self._solved.get(key)
            if hit is not None:
                self._solved.move_to_end(key)
                return list(hit)
        solved = tuple(_optimal_assignment(weights, accepts, cands, cap_left))
        with self._lock:
            self._solved[key] = solved
            if len(self._solved) > self.size:
                self._solved.popitem(last=False)
        return list(solved)


_ASSIGNMENTS = _AssignmentMemo()


def _optimal_assignment(
    weights: list[int],
    accepts: list[tuple[str, ...]],
    cands: list[tuple[int, str, str | None]],
    cap_left: Mapping[str, int],
) -> list[int]:
    """The assignment of candidates to slots maximising Σ score × weight, exactly.

    ``weights`` are in decreasing order; ``cands`` are ``(score, kind, partner)``
    in the tie-break order (score descending, then product id), scores ≥ 0.
    Returns, per slot, the index of its candidate or -1 for an empty slot.

    :func:`_best_by_kind` is exact under slot kinds alone. When its answer
    gives a partner more slots than its cap, every layout that keeps the cap
    leaves out at least one of those products, so the search branches on which
    one to drop; the uncapped optimum of a branch bounds it, and a branch that
    cannot beat the best layout found is cut. Ties keep the first layout found.
    """
    n = len(weights)
    pool = [j for j, (_, _, partner) in enumerate(cands) if partner is None or cap_left.get(partner, 1) > 0]
    if n == 0 or not pool:
        return [-1] * n
    value, choice = _best_by_kind(weights, accepts, cands, pool)
    if not cap_left or _cap_breach(choice, cands, cap_left) is None:
        return choice

    best_value = -1
    best_choice = [-1] * n
    seen: set[frozenset[int]] = set()

    def visit(dropped: frozenset[int], value: int, choice: list[int]) -> None:
        nonlocal best_value, best_choice
        if value <= best_value:
            return
        breach = _cap_breach(choice, cands, cap_left)
        if breach is None:
            best_value, best_choice = value, choice
            return
        # Drop the weakest first: it is the likeliest to lead to the optimum.
        for j in sorted(breach, reverse=True):
            child = dropped | {j}
            if child in seen:
                continue
            seen.add(child)
            child_value, child_choice = _best_by_kind(weights, accepts, cands, [k for k in pool if k not in child])
            visit(child, child_value, child_choice)

    visit(frozenset(), value, choice)
    return best_choice


def _cap_breach(
    choice: list[int], cands: list[tuple[int, str, str | None]], cap_left: Mapping[str, int]
) -> list[int] | None:
    """The placed candidates of the first partner (in slot order) placed more often than its cap."""
    placed: dict[str, list[int]] = {}
    for j in choice:
        if j >= 0:
            partner = cands[j][2]
            if partner is not None and partner in cap_left:
                placed.setdefault(partner, []).append(j)
    for partner, used in placed.items():
        if len(used) > cap_left[partner]:
            return used
    return None


def _best_by_kind(
    weights: list[int],
    accepts: list[tuple[str, ...]],
    cands: list[tuple[int, str, str | None]],
    pool: list[int],
) -> tuple[int, list[int]]:
    """Optimal assignment of the candidates in ``pool`` under slot kinds alone (no caps).

    Products have a score and slots a weight, so among the slots that end up
    with one kind, that kind's best products go best-first (rearrangement);
    what is left to decide is which kind, if any, each slot takes: a programme
    over slots (best weight first) and the count of each kind used so far.
    Ties go to the earliest candidate at the best-weighted slot.
    Returns the total Σ score × weight and the candidate index per slot.
    """
    n = len(weights)
    order: list[str] = []
    by_kind: dict[str, list[int]] = {}
    for j in pool:
        kind = cands[j][1]
        bucket = by_kind.get(kind)
        if bucket is None:
            bucket = by_kind[kind] = []
            order.append(kind)
        if len(bucket) < n:
            bucket.append(j)
    lists = [by_kind[k] for k in order]
    scores = [[cands[j][0] for j in bucket] for bucket in lists]
    sizes = [len(bucket) for bucket in lists]
    # A state is how many of each kind are placed, packed into one integer.
    strides = []
    stride = 1
    for size in sizes:
        strides.append(stride)
        stride *= size + 1
    moves = [
        [(x, strides[x], sizes[x] + 1, scores[x]) for x, k in enumerate(order) if k in accepts[i]] for i in range(n)
    ]
    layers: list[list[int]] = [[0]]
    for i in range(n):
        reachable = dict.fromkeys(layers[-1])
        for state in layers[-1]:
            for _, step, radix, _ in moves[i]:
                if (state // step) % radix < radix - 1:
                    reachable[state + step] = None
        layers.append(list(reachable))
    after_slot: list[dict[int, int]] = [{}] * (n + 1)
    after_slot[n] = dict.fromkeys(layers[n], 0)
    for i in range(n - 1, -1, -1):
        following = after_slot[i + 1]
        weight = weights[i]
        here: dict[int, int] = {}
        for state in layers[i]:
            best = following[state]
            for _, step, radix, kind_scores in moves[i]:
                used = (state // step) % radix
                if used < radix - 1:
                    total = kind_scores[used] * weight + following[state + step]
                    if total > best:
                        best = total
            here[state] = best
        after_slot[i] = here

    state = 0
    choice = [-1] * n
    for i in range(n):
        target = after_slot[i][state]
        following = after_slot[i + 1]
        # Options in tie-break order: each kind's next product by candidate order; "empty" last.
        options = []
        for x, step, radix, kind_scores in moves[i]:
            used = (state // step) % radix
            if used < radix - 1:
                options.append((lists[x][used], step, kind_scores[used]))
        options.sort()
        for j, step, score in options:
            if score * weights[i] + following[state + step] == target:
                choice[i] = j
                state += step
                break
    return after_slot[0][0], choice


# -- stage: exploration
#
# With probability ε = exploration_bps / 10,000 per slot, a slot the optimal
# assignment filled shows instead one of its k best alternatives (k =
# exploration_top_k), uniformly: an eligible candidate it accepts, best score
# first. At most one slot explores per layout: one uniform draw u picks slot i
# when i·ε ≤ u < (i + 1)·ε (each of the n explorable slots with probability ε;
# no exploration with probability 1 − n·ε; ε is taken as 1/n when n·ε > 1),
# and a second draw picks the alternative. An alternative shown elsewhere on
# the page swaps places with the slot's product (so the page keeps every
# product once and each partner's count of slots); one not on the page
# replaces it, only if its partner's share cap has room. Pinned and fallback
# slots never move, and only eligible candidates are ever shown.
#
# Because one slot at most explores, each slot's probability of showing each
# product is exact and cheap: slot s shows its optimum o(s) unless it explores
# (ε) or another slot t explores into o(s) (ε / |A(t)| when o(s) ∈ A(t)), in
# which case it shows o(t). Those are the distributions logged for
# off-policy evaluation.
#
# The expected cost, against the optimum's value, is
#   Σ_s ε / |A(s)| · Σ_{b ∈ A(s)} Δ(s, b)   with
#   Δ(s, b) = w(s) · (v(o(s)) − v(b))                    for b not on the page,
#   Δ(s, b) = (w(s) − w(s')) · (v(o(s)) − v(b))          for b shown in slot s',
# w the slot weights and v the scores: at most ε × (the explorable slots' value).


class _Explored:
    """Exploration's answer: the logging distribution of each slot it randomised, and the expected cost."""

    __slots__ = ("distributions", "cost_micro_fen")

    def __init__(self, distributions: Mapping[str, tuple[tuple[str, float], ...]], cost_micro_fen: int) -> None:
        self.distributions = distributions
        self.cost_micro_fen = cost_micro_fen


_NOT_EXPLORED = _Explored({}, 0)


class _Plan:
    """The randomisation of one layout, independent of the draw: slots, alternatives, distributions, cost."""

    __slots__ = ("slots", "alternatives", "share", "distributions", "cost_micro_fen")

    def __init__(
        self,
        slots: tuple[str, ...],
        alternatives: tuple[tuple[str, ...], ...],
        share: float,
        distributions: dict[str, tuple[tuple[str, float], ...]],
        cost_micro_fen: int,
    ) -> None:
        self.slots = slots
        self.alternatives = alternatives
        self.share = share
        self.distributions = distributions
        self.cost_micro_fen = cost_micro_fen


class _PlanMemo:
    """Exploration plans already made, by their exact inputs (a small LRU shared by the process)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._plans: OrderedDict[tuple, _Plan] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> _Plan | None:
        with self._lock:
            hit = self._plans.get(key)
            if hit is not None:
                self._plans.move_to_end(key)
            return hit

    def put(self, key: tuple, plan: _Plan) -> None:
        with self._lock:
            self._plans[key] = plan
            if len(self._plans) > self.size:
                self._plans.popitem(last=False)


_PLANS = _PlanMemo()


def _explore(
    order: list[Slot],
    cands: list[_Entry],
    scores: Mapping[str, int],
    assignment: _Assignment,
    policy: PlacementPolicy,
    rng: random.Random | None,
) -> _Explored:
    """Randomise the optimal assignment as described above; changes ``assignment`` when a slot explores."""
    chosen = assignment.chosen
    explorable = [s for s in order if chosen.get(s.slot_id, ("", ""))[1] == "optimal"]
    if not explorable:
        return _NOT_EXPLORED
    key = (
        tuple((s.slot_id, s.position_weight_bps, s.accepts, chosen[s.slot_id][0]) for s in explorable),
        tuple((e.product_id, scores[e.product_id], e.kind, e.partner_id) for e in cands),
        tuple(sorted(assignment.cap_left.items())),
        tuple(sorted(pid for pid, _ in chosen.values())),
        policy.exploration_bps,
        policy.exploration_top_k,
    )
    plan = _PLANS.get(key)
    if plan is None:
        plan = _plan(explorable, cands, scores, assignment, policy)
        _PLANS.put(key, plan)
    if not plan.distributions:
        return _NOT_EXPLORED
    draw = rng.random() if rng is not None else random.random()
    i = int(draw / plan.share) if plan.share > 0 else len(plan.slots)
    if i < len(plan.slots) and plan.alternatives[i]:
        options = plan.alternatives[i]
        picked = options[rng.randrange(len(options)) if rng is not None else random.randrange(len(options))]
        sid = plan.slots[i]
        optimal = chosen[sid][0]
        elsewhere = next((other for other, (pid, _) in chosen.items() if pid == picked), None)
        chosen[sid] = (picked, "exploration")
        if elsewhere is not None:
            chosen[elsewhere] = (optimal, "exploration")
        else:
            cap_left = assignment.cap_left
            partners = {e.product_id: e.partner_id for e in cands}
            if partners.get(optimal) in cap_left:
                cap_left[partners[optimal]] += 1  # type: ignore[index]
            if partners.get(picked) in cap_left:
                cap_left[partners[picked]] -= 1  # type: ignore[index]
    return _Explored(plan.distributions, plan.cost_micro_fen)


def _plan(
    explorable: list[Slot],
    cands: list[_Entry],
    scores: Mapping[str, int],
    assignment: _Assignment,
    policy: PlacementPolicy,
) -> _Plan:
    """Each explorable slot's alternatives, every slot's exact distribution and the expected cost."""
    chosen = assignment.chosen
    n = len(explorable)
    share = min(policy.exploration_bps / BPS, 1.0 / n)
    optimum = {s.slot_id: chosen[s.slot_id][0] for s in explorable}
    placed_in = {pid: sid for sid, pid in optimum.items()}
    fixed = {pid for sid, (pid, _) in chosen.items() if sid not in optimum}  # pinned and fallback products
    slot_of = {s.slot_id: s for s in explorable}
    entry = {e.product_id: e for e in cands}
    cap_left = assignment.cap_left
    alternatives: list[tuple[str, ...]] = []
    for slot in explorable:
        sid = slot.slot_id
        own = entry[optimum[sid]]
        found: list[str] = []
        for e in cands:
            pid = e.product_id
            if pid == own.product_id or pid in fixed or e.kind not in slot.accepts:
                continue
            other = placed_in.get(pid)
            if other is not None:
                if own.kind not in slot_of[other].accepts:
                    continue  # the swap would put a product where it cannot go
            elif e.partner_id is not None and e.partner_id in cap_left:
                if cap_left[e.partner_id] + (1 if e.partner_id == own.partner_id else 0) <= 0:
                    continue
            found.append(pid)
            if len(found) >= policy.exploration_top_k:
                break
        alternatives.append(tuple(found))
    mass: dict[str, dict[str, float]] = {sid: {pid: 1.0} for sid, pid in optimum.items()}
    cost = 0.0
    for slot, options in zip(explorable, alternatives):
        if not options:
            continue
        sid = slot.slot_id
        mine = optimum[sid]
        each = share / len(options)
        for b in options:
            dist = mass[sid]
            dist[mine] -= each
            dist[b] = dist.get(b, 0.0) + each
            other = placed_in.get(b)
            gap = scores[mine] - scores[b]
            if other is None:
                cost += each * slot.position_weight_bps * gap / BPS
            else:
                theirs = mass[other]
                theirs[b] -= each
                theirs[mine] = theirs.get(mine, 0.0) + each
                cost += each * (slot.position_weight_bps - slot_of[other].position_weight_bps) * gap / BPS
    distributions = {
        sid: tuple(sorted((pid, p) for pid, p in dist.items() if p > 0))
        for sid, dist in mass.items()
        if len(dist) > 1
    }
    return _Plan(tuple(optimum), tuple(alternatives), share, distributions, round(cost))


# -- stage: explanation


def _slot_decisions(
    slots: tuple[Slot, ...],
    position: Mapping[str, int],
    chosen: Mapping[str, tuple[str, str]],
    scores: Mapping[str, int],
    distributions: Mapping[str, tuple[tuple[str, float], ...]],
) -> tuple[list[SlotDecision], int]:
    """The filled slots in page order, each with its expected revenue, and the page's total."""
    decided: list[SlotDecision] = []
    total = 0
    for slot in slots:
        hit = chosen.get(slot.slot_id)
        if hit is None:
            continue
        pid, why = hit
        value = _div_round(scores[pid] * slot.position_weight_bps, BPS)
        total += value
        distribution = distributions.get(slot.slot_id, ())
        propensity = DETERMINISTIC_BPS
        if distribution:
            probability = next((p for product, p in distribution if product == pid), 0.0)
            propensity = max(1, round(probability * BPS))
        decided.append(
            SlotDecision(
                slot_id=slot.slot_id,
                position=position[slot.slot_id],
                product_id=pid,
                expected_revenue_micro_fen=value,
                propensity_bps=propensity,
                reason=why,
                distribution=distribution,
            )
        )
    return decided, total


def _explain(
    entries: tuple[_Entry, ...],
    best_first: tuple[Slot, ...],
    decided: list[SlotDecision],
    reason: Mapping[str, str | None],
    scores: Mapping[str, int],
    boosts: Mapping[str, list[int]],
    notes: Mapping[str, list[str]],
    view: str,
    tier: str | None,
    personalized: bool,
) -> tuple[CandidateExplanation, ...]:
    """Every product's outcome: chosen (in page order), lost (best score first), then filtered.

    A product that lost is compared with the product in the best-weighted slot
    that accepts its kind (``best_first``: the slots shown, best weight first).
    """
    by_slot = {d.slot_id: d for d in decided}
    placed = {d.product_id: d for d in decided}
    chosen: list[tuple[int, CandidateExplanation]] = []
    lost: list[CandidateExplanation] = []
    filtered: list[CandidateExplanation] = []
    for e in entries:
        pid = e.product_id
        score = scores[pid]
        components = _components(e, boosts.get(pid) or [], view, tier, personalized)
        note = tuple(notes.get(pid, ()))
        d = placed.get(pid)
        why = reason[pid]
        if d is not None:
            chosen.append((d.position, CandidateExplanation(pid, "chosen", d.slot_id, score, components, notes=note)))
        elif why is not None:
            filtered.append(CandidateExplanation(pid, "filtered", None, score, components, filtered_by=why, notes=note))
        else:
            lost.append(_lost(e, score, components, note, best_first, by_slot))
    chosen.sort(key=lambda item: item[0])
    lost.sort(key=lambda c: (-c.score_micro_fen, c.product_id))
    return (*(c for _, c in chosen), *lost, *filtered)


def _components(
    e: _Entry, factors: list[int], view: str, tier: str | None, personalized: bool
) -> dict[str, object]:
    """The parts of a product's score an explanation shows."""
    return {
        "platform_micro_fen": e.platform.get(tier, e.platform[None]),
        "group_micro_fen": e.group.get(tier, e.group[None]),
        "boost_factor_bps": _boosted(BPS, factors),
        "view": view,
        "personalized": personalized,
    }


def _lost(
    e: _Entry,
    score: int,
    components: Mapping[str, object],
    note: tuple[str, ...],
    best_first: tuple[Slot, ...],
    by_slot: Mapping[str, SlotDecision],
) -> CandidateExplanation:
    """An eligible product left off the page, against the winner of the best slot for its kind."""
    lost_to = lost_by = None
    target = next((s for s in best_first if e.kind in s.accepts), None)
    if target is not None:
        winner = by_slot.get(target.slot_id)
        if winner is not None:
            lost_to = winner.product_id
            lost_by = winner.expected_revenue_micro_fen - _div_round(score * target.position_weight_bps, BPS)
    if score < 0:
        note = (*note, "negative expected revenue: showing it would lose money")
    return CandidateExplanation(
        e.product_id, "lost", None, score, components, lost_to=lost_to, lost_by_micro_fen=lost_by, notes=note
    )
