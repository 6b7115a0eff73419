"""Finance scenarios: self-lending versus referral, per segment (DESIGN §2, §5, §7).

A scenario names traffic segments (risk tier, login state, impressions) and
partial overrides of product economics. :func:`compare` models every eligible
product as if it took all of a segment's impressions in a slot of position
weight 1, in both views side by side:

- the platform view books referral payouts and, for the in-house loan, only
  the internal transfer price;
- the group view books referral payouts and the in-house loan's whole
  contribution over its life (optionally discounted, see :func:`discount_factor`).

Per segment it names the best referral, the in-house result, the winner in each
view and the break-even annual loss and approval rate at which self-lending
(group view) equals the best referral; per segment it also tabulates how the
group-view winner's margin moves when one parameter of the winner or of the
runner-up moves by ±20%.

Who a segment may be shown follows placement's hard eligibility (DESIGN §4):

- a visitor segment (``logged_in = false``) compares only products that need
  no login, so partner products are left out of it rather than shown as zero;
- a segment of users declined by the in-house lender (``in_house_declined``)
  has no in-house row;
- a segment with a risk tier leaves out products whose eligibility excludes
  that tier. A segment without a tier (visitors) resolves tiered values through
  :func:`~wallet_market.domain.catalogue.by_tier` (``default`` entry, then mean).

Product status and partner whitelisting are not applied: a scenario is a model
of what would be earned, and finance may want to price a paused product.

Exact ``Fraction`` arithmetic throughout; counts and money are rounded half-up
once, from exact values, when a row is built.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping, Sequence

from .catalogue import BPS, RISK_TIERS, SETTLEMENT_MODELS, Catalogue, Product
from .economics import (
    GROUP_VIEW,
    PLATFORM_VIEW,
    RevenuePerImpression,
    approvals_per_impression,
    balance_years,
    expected_revenue_per_impression,
    loans_per_impression,
    net_margin_bps,
    rate,
    round_half_up,
)

# Guard 1 of DESIGN §6: no product may be modelled above a 24% all-in APR.
APR_CAP_BPS = 2_400
# Guard 2 of DESIGN §6: no loan of 60 days or less, so at least three monthly instalments.
MIN_TERM_MONTHS = 3
MAX_TERM_MONTHS = 120
SENSITIVITY_STEP_BPS = 2_000  # ±20%
MONTHS_PER_YEAR = 12

ROW_FIELDS = (
    "segment",
    "product_id",
    "owner",
    "settlement",
    "impressions",
    "clicks",
    "applications",
    "approvals",
    "loans",
    "disbursed_fen",
    "platform_revenue_fen",
    "group_contribution_fen",
    "rpm_platform_fen",
    "rpm_group_fen",
)

SEGMENT_FIELDS = (
    "segment",
    "best_referral_product_id",
    "self_product_id",
    "winner_platform_view",
    "winner_group_view",
    "breakeven_annual_loss_bps",
    "breakeven_approval_rate_bps",
)

REFERRAL_MODELS = tuple(m for m in SETTLEMENT_MODELS if m != "self")

# The parameters each settlement model's revenue is directly proportional to (DESIGN §5).
PROPORTIONAL_PARAMETERS: Mapping[str, tuple[str, ...]] = {
    "self": ("ctr", "apply_rate", "approval_rate", "draw_rate", "avg_loan"),
    "cps": ("ctr", "apply_rate", "approval_rate", "draw_rate", "avg_loan", "new_customer_rate", "cps_rate"),
    "per_credit_line": ("ctr", "apply_rate", "approval_rate", "new_customer_rate", "fee"),
    "per_card": ("ctr", "apply_rate", "approval_rate", "new_customer_rate", "fee"),
    "per_application": ("ctr", "apply_rate", "new_customer_rate", "fee"),
    "per_click": ("ctr", "fee"),
}
# Terms of the in-house net margin, with the sign they enter it with.
MARGIN_PARAMETERS: Mapping[str, int] = {
    "apr": 1,
    "cost_of_funds": -1,
    "annual_loss": -1,
    "opex": -1,
    "capital_charge": -1,
}


# --------------------------------------------------------------------------- scenario


class ScenarioError(ValueError):
    """A scenario that cannot be used; ``errors`` maps a field path to its messages."""

    def __init__(self, errors: Mapping[str, list[str]]):
        self.errors = {path: list(messages) for path, messages in errors.items()}
        summary = "; ".join(f"{path}: {', '.join(messages)}" for path, messages in self.errors.items())
        super().__init__(f"invalid scenario: {summary}")


@dataclass(frozen=True, slots=True)
class Segment:
    """A slice of traffic: who they are and how many impressions they bring."""

    name: str
    risk_tier: str | None
    logged_in: bool
    impressions: int
    in_house_declined: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "risk_tier": self.risk_tier,
            "logged_in": self.logged_in,
            "impressions": self.impressions,
            "in_house_declined": self.in_house_declined,
        }


@dataclass(frozen=True, slots=True)
class Scenario:
    """Segments to compare, the products to compare (empty: all) and partial economics overrides."""

    name: str
    segments: tuple[Segment, ...]
    products: tuple[str, ...] = ()
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    discount_rate_bps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "segments": [s.to_dict() for s in self.segments],
            "products": list(self.products),
            "overrides": _plain(self.overrides),
            "discount_rate_bps": self.discount_rate_bps,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Errors:
    def __init__(self) -> None:
        self.by_path: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.by_path.setdefault(path, []).append(message)

    def raise_if_any(self) -> None:
        if self.by_path:
            raise ScenarioError(self.by_path)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(errors: _Errors, path: str, value: Any, low: int, high: int | None) -> bool:
    if not _is_int(value):
        errors.add(path, "must be an integer")
        return False
    if value < low:
        errors.add(path, "must not be negative" if low == 0 else f"must be at least {low}")
        return False
    if high is not None and value > high:
        errors.add(path, f"must be between {low} and {high}")
        return False
    return True


def _rate_field(errors: _Errors, path: str, value: Any) -> None:
    _check_int(errors, path, value, 0, BPS)


def _money_field(errors: _Errors, path: str, value: Any) -> None:
    _check_int(errors, path, value, 0, None)


def _term_field(errors: _Errors, path: str, value: Any) -> None:
    if not _is_int(value):
        errors.add(path, "must be an integer")
    elif not MIN_TERM_MONTHS <= value <= MAX_TERM_MONTHS:
        errors.add(
            path, f"must be between {MIN_TERM_MONTHS} and {MAX_TERM_MONTHS} months (no loan of 60 days or less)"
        )


def _apr_field(errors: _Errors, path: str, value: Any) -> None:
    if _check_int(errors, path, value, 0, None) and value > APR_CAP_BPS:
        errors.add(path, f"must not exceed the {APR_CAP_BPS} bps APR cap")


def _tiered_rate_field(errors: _Errors, path: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        _rate_field(errors, path, value)
        return
    if not value:
        errors.add(path, "must name at least one risk tier")
    for tier, tier_value in value.items():
        if tier not in RISK_TIERS and tier != "default":
            errors.add(f"{path}.{tier}", f"unknown risk tier (one of {', '.join(RISK_TIERS)} or default)")
            continue
        _rate_field(errors, f"{path}.{tier}", tier_value)


def _referral_model_field(errors: _Errors, path: str, value: Any) -> None:
    if value not in REFERRAL_MODELS:
        errors.add(path, f"must be one of {', '.join(REFERRAL_MODELS)}")


# The product economics a scenario may override, by section (DESIGN §7 product shape).
OVERRIDABLE_FIELDS: Mapping[str, Mapping[str, Any]] = {
    "settlement": {
        "model": _referral_model_field,
        "cps_rate_bps": _rate_field,
        "fee_fen": _money_field,
        "transfer_price_bps": _rate_field,
    },
    "funnel": {
        "ctr_bps": _rate_field,
        "apply_rate_bps": _rate_field,
        "approval_rate_bps": _tiered_rate_field,
        "draw_rate_bps": _rate_field,
        "new_customer_rate_bps": _rate_field,
        "avg_loan_fen": _money_field,
        "term_months": _term_field,
    },
    "lending": {
        "apr_bps": _apr_field,
        "cost_of_funds_bps": _rate_field,
        "annual_loss_bps": _tiered_rate_field,
        "opex_bps": _rate_field,
        "capital_charge_bps": _rate_field,
    },
}
TIERED_FIELDS = frozenset({("funnel", "approval_rate_bps"), ("lending", "annual_loss_bps")})


def _check_override(errors: _Errors, path: str, override: Any) -> None:
    if not isinstance(override, Mapping):
        errors.add(path, "must be a table of product economics")
        return
    for section, fields in override.items():
        section_path = f"{path}.{section}"
        if section not in OVERRIDABLE_FIELDS:
            errors.add(section_path, f"unknown field (one of {', '.join(OVERRIDABLE_FIELDS)})")
            continue
        if not isinstance(fields, Mapping):
            errors.add(section_path, "must be a table")
            continue
        for name, value in fields.items():
            check = OVERRIDABLE_FIELDS[section].get(name)
            if check is None:
                errors.add(f"{section_path}.{name}", "unknown field")
            else:
                check(errors, f"{section_path}.{name}", value)


def _check_product_override(errors: _Errors, path: str, product: Product, override: Mapping[str, Any]) -> None:
    """What only the product itself can tell: a section it lacks, a model it cannot switch."""
    if "lending" in override and product.lending is None:
        errors.add(f"{path}.lending", f"product {product.product_id} has no lending economics")
    settlement = override.get("settlement")
    if isinstance(settlement, Mapping) and "model" in settlement and product.settlement.model == "self":
        errors.add(f"{path}.settlement.model", "the in-house loan's settlement model cannot change")


_SCENARIO_KEYS = ("name", "segments", "products", "overrides", "discount_rate_bps")
_SEGMENT_KEYS = ("name", "risk_tier", "logged_in", "impressions", "in_house_declined")


def parse_scenario(data: Mapping[str, Any], catalogue: Catalogue | None = None) -> Scenario:
    """Validate a scenario (JSON from the API or TOML from a file) and build it.

    Every problem is collected and raised at once as :class:`ScenarioError`
    with field paths such as ``segments[1].risk_tier`` or
    ``overrides.xingyun_loan.funnel.ctr_bps``. Given the catalogue, product ids
    and per-product overrides are checked against it too (see :func:`check_scenario`).
    """
    errors = _Errors()
    if not isinstance(data, Mapping):
        raise ScenarioError({"_schema": ["a scenario must be an object"]})
    for key in data:
        if key not in _SCENARIO_KEYS:
            errors.add(str(key), "unknown field")

    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.add("name", "required: a non-empty string")
        name = ""

    segments = _parse_segments(errors, data.get("segments"))

    products = data.get("products", [])
    if not isinstance(products, list):
        errors.add("products", "must be a list of product ids")
        products = []
    seen_products: set[str] = set()
    for index, product_id in enumerate(products):
        if not isinstance(product_id, str) or not product_id:
            errors.add(f"products[{index}]", "must be a product id")
        elif product_id in seen_products:
            errors.add(f"products[{index}]", f"duplicate product {product_id}")
        seen_products.add(product_id)

    overrides = data.get("overrides", {})
    if not isinstance(overrides, Mapping):
        errors.add("overrides", "must map product ids to product economics")
        overrides = {}
    for product_id, override in overrides.items():
        _check_override(errors, f"overrides.{product_id}", override)

    discount_rate_bps = data.get("discount_rate_bps", 0)
    _rate_field(errors, "discount_rate_bps", discount_rate_bps)

    errors.raise_if_any()
    scenario = Scenario(
        name=name.strip(),
        segments=tuple(segments),
        products=tuple(products),
        overrides={pid: _plain(o) for pid, o in overrides.items()},
        discount_rate_bps=discount_rate_bps,
    )
    if catalogue is not None:
        check_scenario(scenario, catalogue)
    return scenario


def _parse_segments(errors: _Errors, raw: Any) -> list[Segment]:
    if not isinstance(raw, list) or not raw:
        errors.add("segments", "required: a non-empty list of segments")
        return []
    segments: list[Segment] = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        path = f"segments[{index}]"
        if not isinstance(item, Mapping):
            errors.add(path, "must be an object")
            continue
        before = len(errors.by_path)
        for key in item:
            if key not in _SEGMENT_KEYS:
                errors.add(f"{path}.{key}", "unknown field")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.add(f"{path}.name", "required: a non-empty string")
        elif name in names:
            errors.add(f"{path}.name", f"duplicate segment name {name}")
        else:
            names.add(name)
        risk_tier = item.get("risk_tier")
        if risk_tier is not None and risk_tier not in RISK_TIERS:
            errors.add(f"{path}.risk_tier", f"unknown risk tier (one of {', '.join(RISK_TIERS)})")
        logged_in = item.get("logged_in")
        if not isinstance(logged_in, bool):
            errors.add(f"{path}.logged_in", "required: true or false")
        declined = item.get("in_house_declined", False)
        if not isinstance(declined, bool):
            errors.add(f"{path}.in_house_declined", "must be true or false")
        impressions = item.get("impressions")
        if impressions is None:
            errors.add(f"{path}.impressions", "required: a whole number of impressions")
        else:
            _check_int(errors, f"{path}.impressions", impressions, 0, None)
        if len(errors.by_path) > before:
            continue
        if isinstance(name, str) and isinstance(logged_in, bool) and isinstance(impressions, int):
            segments.append(Segment(name, risk_tier, logged_in, impressions, declined))
    return segments


def check_scenario(scenario: Scenario, catalogue: Catalogue) -> None:
    """Check a parsed scenario against a catalogue: known products, applicable overrides.

    Raises :class:`ScenarioError` naming ``products[i]`` or ``overrides.<product_id>…``.
    """
    errors = _Errors()
    for index, product_id in enumerate(scenario.products):
        if product_id not in catalogue.products:
            errors.add(f"products[{index}]", f"unknown product {product_id}")
    for product_id, override in scenario.overrides.items():
        path = f"overrides.{product_id}"
        product = catalogue.products.get(product_id)
        if product is None:
            errors.add(path, f"unknown product {product_id}")
        elif scenario.products and product_id not in scenario.products:
            errors.add(path, f"product {product_id} is not among the scenario's products")
        else:
            _check_product_override(errors, path, product, override)
    errors.raise_if_any()


def _merge(base: Mapping[str, Any], override: Mapping[str, Any], section: str | None = None) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and (section, key) in TIERED_FIELDS and not isinstance(current, Mapping):
            # A flat value becomes the default for every tier the override leaves unnamed.
            merged[key] = {"default": current, **value}
        elif isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = _merge(current, value, key if section is None else section)
        else:
            merged[key] = value
    return merged


def apply_overrides(product: Product, override: Mapping[str, Any]) -> Product:
    """The product with a scenario's partial economics merged in.

    Only the named fields change: ``{"lending": {"annual_loss_bps": {"D": 900}}}``
    changes tier D's loss and keeps every other tier's (a flat loss becomes the
    ``default`` for the other tiers). Raises :class:`ScenarioError` for an
    override that names an unknown field, a bad value or a section the product lacks.
    """
    errors = _Errors()
    path = f"overrides.{product.product_id}"
    _check_override(errors, path, override)
    if not errors.by_path:
        _check_product_override(errors, path, product, override)
    errors.raise_if_any()
    return Product.from_dict(_merge(product.to_dict(), override))


def scenario_products(catalogue: Catalogue, scenario: Scenario) -> dict[str, Product]:
    """The products a scenario compares, with its overrides applied, in display order.

    The scenario's own order when it lists products; otherwise the in-house
    products first, then the partners' by product id.
    """
    check_scenario(scenario, catalogue)
    if scenario.products:
        ids: Iterable[str] = scenario.products
    else:
        ids = sorted(catalogue.products, key=lambda pid: (not catalogue.products[pid].is_in_house, pid))
    products = {}
    for product_id in ids:
        product = catalogue.products[product_id]
        override = scenario.overrides.get(product_id)
        products[product_id] = apply_overrides(product, override) if override else product
    return products


def may_be_shown(product: Product, segment: Segment) -> bool:
    """Whether placement could show ``product`` to users of ``segment`` (see the module notes)."""
    if not segment.logged_in and product.requires_login:
        return False
    if segment.in_house_declined and product.is_in_house:
        return False
    if segment.risk_tier is not None and segment.risk_tier not in product.eligibility.risk_tiers:
        return False
    return True


# --------------------------------------------------------------------------- economics per segment


def discount_factor(term_months: int, discount_rate_bps: int) -> Fraction:
    """Present value of one fen of contribution earned evenly over a loan's term.

    The contribution arrives in ``T`` equal monthly parts at the end of months
    1…T and is discounted monthly at the annual rate ``r``:
    ``factor = (1/T) × Σ_{k=1..T} (1 + r/12)^(−k)``. A rate of zero gives 1,
    so a loan's contribution compares with a referral payout received now.
    """
    if discount_rate_bps == 0:
        return Fraction(1)
    monthly = 1 + rate(discount_rate_bps) / MONTHS_PER_YEAR
    return sum((monthly ** -k for k in range(1, term_months + 1)), Fraction(0)) / term_months


def _self_lent(product: Product) -> bool:
    return product.is_in_house and product.settlement.model == "self" and product.lending is not None


def revenue_per_impression(product: Product, risk_tier: str | None, discount_rate_bps: int = 0) -> RevenuePerImpression:
    """Expected revenue of one impression in a slot of weight 1, both views, with discounting.

    As :func:`~wallet_market.domain.economics.expected_revenue_per_impression`,
    the in-house loan's group contribution multiplied by :func:`discount_factor`.
    """
    value = expected_revenue_per_impression(product, risk_tier)
    if not _self_lent(product):
        return value
    factor = discount_factor(product.funnel.term_months, discount_rate_bps)
    return RevenuePerImpression(value.platform_fen, value.group_fen * factor)


def contribution_per_margin_bps(product: Product, risk_tier: str | None, discount_rate_bps: int = 0) -> Fraction:
    """Group contribution per impression of the in-house loan per basis point of net margin.

    ``D × avg_loan × (T+1)/24 × discount / 10000``: the group view of self-lending
    is this times ``apr − cost_of_funds − annual_loss − opex − capital_charge``.
    """
    funnel = product.funnel
    return (
        loans_per_impression(funnel, risk_tier)
        * funnel.avg_loan_fen
        * balance_years(funnel.term_months)
        * discount_factor(funnel.term_months, discount_rate_bps)
        / BPS
    )


def self_contribution_at_loss(
    product: Product, risk_tier: str | None, annual_loss_bps: int | Fraction, discount_rate_bps: int = 0
) -> Fraction:
    """Group contribution per impression of the in-house loan if the tier's annual loss were ``annual_loss_bps``."""
    lending = product.lending
    if lending is None:
        raise ValueError(f"product {product.product_id} has no lending economics")
    margin = net_margin_bps(lending, risk_tier) + lending.annual_loss_for(risk_tier) - Fraction(annual_loss_bps)
    return contribution_per_margin_bps(product, risk_tier, discount_rate_bps) * margin


def breakeven_annual_loss(
    product: Product, risk_tier: str | None, referral_fen: Fraction, discount_rate_bps: int = 0
) -> Fraction | None:
    """The exact annual loss (bps) at which self-lending's group contribution equals ``referral_fen``.

    The contribution falls linearly with the loss:
    ``k × (m + L₀ − L) = R`` gives ``L = m + L₀ − R/k``. None when the line is flat
    (no loans) or the answer lies outside 0…10000 bps.
    """
    lending = product.lending
    if lending is None or not _self_lent(product):
        return None
    per_bps = contribution_per_margin_bps(product, risk_tier, discount_rate_bps)
    if per_bps <= 0:
        return None
    loss = net_margin_bps(lending, risk_tier) + lending.annual_loss_for(risk_tier) - Fraction(referral_fen) / per_bps
    return loss if 0 <= loss <= BPS else None


def breakeven_approval_rate(
    product: Product, risk_tier: str | None, referral_fen: Fraction, discount_rate_bps: int = 0
) -> Fraction | None:
    """The exact approval rate (bps) at which self-lending's group contribution equals ``referral_fen``.

    The contribution is proportional to the approval rate: with ``g`` its value
    at 100% approval, ``a = R × 10000 / g``. None when self-lending earns nothing
    or loses money at any approval rate, or the answer lies outside (0, 10000] bps.
    """
    if not _self_lent(product):
        return None
    full = dataclasses.replace(product, funnel=dataclasses.replace(product.funnel, approval_rate_bps=BPS))
    at_full_approval = revenue_per_impression(full, risk_tier, discount_rate_bps).group_fen
    if at_full_approval <= 0:
        return None
    approval = Fraction(referral_fen) * BPS / at_full_approval
    return approval if 0 < approval <= BPS else None


# --------------------------------------------------------------------------- comparison


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    """One product taking all of one segment's impressions (DESIGN §7 row)."""

    segment: str
    product_id: str
    owner: str
    settlement: str
    impressions: int
    clicks: int
    applications: int
    approvals: int
    loans: int
    disbursed_fen: int
    platform_revenue_fen: int
    group_contribution_fen: int
    rpm_platform_fen: int
    rpm_group_fen: int

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ROW_FIELDS}


@dataclass(frozen=True, slots=True)
class SegmentSummary:
    """Per segment: best referral, the in-house result, winners and break-even points.

    Break-even values are None where none exists; margins are group view,
    revenue per 1,000 impressions, in fen.
    """

    segment: str
    best_referral_product_id: str | None
    self_product_id: str | None
    winner_platform_view: str | None
    winner_group_view: str | None
    breakeven_annual_loss_bps: int | None
    breakeven_approval_rate_bps: int | None
    risk_tier: str | None = None
    logged_in: bool = True
    in_house_declined: bool = False
    impressions: int = 0
    best_referral_rpm_fen: int | None = None
    self_rpm_platform_fen: int | None = None
    self_rpm_group_fen: int | None = None
    self_margin_over_referral_rpm_fen: int | None = None
    runner_up_group_view: str | None = None
    winner_margin_rpm_fen: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, slots=True)
class SensitivityEntry:
    """How the group-view winner's margin moves when one parameter of one contender moves ±20%.

    ``margin_*_rpm_fen`` is the baseline winner's revenue per 1,000 impressions
    minus the best other product's, at −20%, unchanged and +20%; the winner
    flips when another product comes first at either end.
    """

    segment: str
    product_id: str
    role: str  # "winner" or "runner_up"
    parameter: str
    base_value: int
    low_value: int
    high_value: int
    margin_low_rpm_fen: int
    margin_base_rpm_fen: int
    margin_high_rpm_fen: int
    winner_low: str
    winner_high: str
    flips: bool

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, slots=True)
class Comparison:
    """The answer to a scenario: rows, per-segment summaries and the sensitivity table."""

    scenario: str
    discount_rate_bps: int
    rows: tuple[ComparisonRow, ...]
    segments: tuple[SegmentSummary, ...]
    sensitivity: tuple[SensitivityEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "discount_rate_bps": self.discount_rate_bps,
            "rows": [r.to_dict() for r in self.rows],
            "segments": [s.to_dict() for s in self.segments],
            "sensitivity": [s.to_dict() for s in self.sensitivity],
        }

    def rows_for(self, segment: str) -> list[ComparisonRow]:
        """The rows of one segment, in display order."""
        return [r for r in self.rows if r.segment == segment]

    def segment(self, name: str) -> SegmentSummary:
        """The summary of the segment called ``name``."""
        for summary in self.segments:
            if summary.segment == name:
                return summary
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class _Contender:
    product: Product
    revenue: RevenuePerImpression


def _rank_key(view: str) -> Callable[[_Contender], tuple[Fraction, bool, str]]:
    # At a tie the referral wins: a payout now, with no credit risk, beats an equal
    # contribution earned over the loan's life; then product id, for determinism.
    return lambda c: (-c.revenue.in_view(view), c.product.is_in_house, c.product.product_id)


def _ranked(contenders: Sequence[_Contender], view: str) -> list[_Contender]:
    return sorted(contenders, key=_rank_key(view))


def _rpm(value_fen: Fraction) -> int:
    return round_half_up(value_fen * 1000)


def _row(segment: Segment, product: Product, revenue: RevenuePerImpression) -> ComparisonRow:
    funnel = product.funnel
    tier = segment.risk_tier
    impressions = segment.impressions
    clicks = impressions * rate(funnel.ctr_bps)
    applications = clicks * rate(funnel.apply_rate_bps)
    approvals = impressions * approvals_per_impression(funnel, tier)
    loans = impressions * loans_per_impression(funnel, tier)
    return ComparisonRow(
        segment=segment.name,
        product_id=product.product_id,
        owner=product.owner,
        settlement=product.settlement.model,
        impressions=impressions,
        clicks=round_half_up(clicks),
        applications=round_half_up(applications),
        approvals=round_half_up(approvals),
        loans=round_half_up(loans),
        disbursed_fen=round_half_up(loans * funnel.avg_loan_fen),
        platform_revenue_fen=round_half_up(impressions * revenue.platform_fen),
        group_contribution_fen=round_half_up(impressions * revenue.group_fen),
        rpm_platform_fen=_rpm(revenue.platform_fen),
        rpm_group_fen=_rpm(revenue.group_fen),
    )


def compare(catalogue: Catalogue, scenario: Scenario) -> Comparison:
    """Model a scenario over a catalogue: self-lending versus referral, both views, per segment."""
    products = scenario_products(catalogue, scenario)
    rows: list[ComparisonRow] = []
    summaries: list[SegmentSummary] = []
    sensitivity: list[SensitivityEntry] = []
    for segment in scenario.segments:
        contenders = [
            _Contender(p, revenue_per_impression(p, segment.risk_tier, scenario.discount_rate_bps))
            for p in products.values()
            if may_be_shown(p, segment)
        ]
        rows.extend(_row(segment, c.product, c.revenue) for c in contenders)
        summaries.append(_summarise(segment, contenders, scenario.discount_rate_bps))
        sensitivity.extend(_sensitivity(segment, contenders, scenario.discount_rate_bps))
    return Comparison(scenario.name, scenario.discount_rate_bps, tuple(rows), tuple(summaries), tuple(sensitivity))


def _summarise(segment: Segment, contenders: Sequence[_Contender], discount_rate_bps: int) -> SegmentSummary:
    referrals = _ranked([c for c in contenders if not c.product.is_in_house], GROUP_VIEW)
    selves = _ranked([c for c in contenders if c.product.is_in_house], GROUP_VIEW)
    best_referral = referrals[0] if referrals else None
    self_lent = selves[0] if selves else None
    by_group = _ranked(contenders, GROUP_VIEW)
    by_platform = _ranked(contenders, PLATFORM_VIEW)

    loss_bps = approval_bps = None
    if best_referral is not None and self_lent is not None:
        referral_fen = best_referral.revenue.group_fen
        loss = breakeven_annual_loss(self_lent.product, segment.risk_tier, referral_fen, discount_rate_bps)
        approval = breakeven_approval_rate(self_lent.product, segment.risk_tier, referral_fen, discount_rate_bps)
        loss_bps = None if loss is None else round_half_up(loss)
        approval_bps = None if approval is None else round_half_up(approval)

    return SegmentSummary(
        segment=segment.name,
        best_referral_product_id=best_referral.product.product_id if best_referral else None,
        self_product_id=self_lent.product.product_id if self_lent else None,
        winner_platform_view=by_platform[0].product.product_id if by_platform else None,
        winner_group_view=by_group[0].product.product_id if by_group else None,
        breakeven_annual_loss_bps=loss_bps,
        breakeven_approval_rate_bps=approval_bps,
        risk_tier=segment.risk_tier,
        logged_in=segment.logged_in,
        in_house_declined=segment.in_house_declined,
        impressions=segment.impressions,
        best_referral_rpm_fen=_rpm(best_referral.revenue.group_fen) if best_referral else None,
        self_rpm_platform_fen=_rpm(self_lent.revenue.platform_fen) if self_lent else None,
        self_rpm_group_fen=_rpm(self_lent.revenue.group_fen) if self_lent else None,
        self_margin_over_referral_rpm_fen=_rpm(self_lent.revenue.group_fen - best_referral.revenue.group_fen)
        if self_lent and best_referral
        else None,
        runner_up_group_view=by_group[1].product.product_id if len(by_group) > 1 else None,
        winner_margin_rpm_fen=_rpm(by_group[0].revenue.group_fen - by_group[1].revenue.group_fen)
        if len(by_group) > 1
        else None,
    )


_PARAMETER_SOURCES: Mapping[str, tuple[str, str]] = {
    "ctr": ("funnel", "ctr_bps"),
    "apply_rate": ("funnel", "apply_rate_bps"),
    "approval_rate": ("funnel", "approval_rate_bps"),
    "draw_rate": ("funnel", "draw_rate_bps"),
    "avg_loan": ("funnel", "avg_loan_fen"),
    "new_customer_rate": ("funnel", "new_customer_rate_bps"),
    "cps_rate": ("settlement", "cps_rate_bps"),
    "fee": ("settlement", "fee_fen"),
    "apr": ("lending", "apr_bps"),
    "cost_of_funds": ("lending", "cost_of_funds_bps"),
    "annual_loss": ("lending", "annual_loss_bps"),
    "opex": ("lending", "opex_bps"),
    "capital_charge": ("lending", "capital_charge_bps"),
}


def parameter_value(product: Product, parameter: str, risk_tier: str | None) -> int:
    """The value of a named economics parameter of ``product`` for a risk tier (bps or fen)."""
    section, name = _PARAMETER_SOURCES[parameter]
    if section == "funnel" and name == "approval_rate_bps":
        return product.funnel.approval_for(risk_tier)
    if section == "lending":
        lending = product.lending
        if lending is None:
            raise ValueError(f"product {product.product_id} has no lending terms")
        if name == "annual_loss_bps":
            return lending.annual_loss_for(risk_tier)
    return getattr(getattr(product, section), name)


def sensitivity_parameters(product: Product) -> tuple[str, ...]:
    """The parameters that move ``product``'s group-view revenue, in display order."""
    proportional = PROPORTIONAL_PARAMETERS.get(product.settlement.model, ())
    margin = tuple(MARGIN_PARAMETERS) if _self_lent(product) else ()
    return proportional + margin


def _moved_group_fen(
    contender: _Contender, parameter: str, factor: Fraction, risk_tier: str | None, discount_rate_bps: int
) -> Fraction:
    """Group-view revenue per impression with one parameter scaled by ``factor``.

    Revenue is proportional to every funnel and payout parameter; a margin term
    moves the in-house contribution by its change times the contribution per
    margin basis point.
    """
    if parameter in MARGIN_PARAMETERS:
        product = contender.product
        change = (factor - 1) * parameter_value(product, parameter, risk_tier) * MARGIN_PARAMETERS[parameter]
        return contender.revenue.group_fen + change * contribution_per_margin_bps(product, risk_tier, discount_rate_bps)
    return contender.revenue.group_fen * factor


def _sensitivity(segment: Segment, contenders: Sequence[_Contender], discount_rate_bps: int) -> list[SensitivityEntry]:
    ranked = _ranked(contenders, GROUP_VIEW)
    if len(ranked) < 2:
        return []
    winner = ranked[0]
    base_margin = _rpm(ranked[0].revenue.group_fen - ranked[1].revenue.group_fen)
    step = rate(SENSITIVITY_STEP_BPS)
    entries = []
    for role, moved in (("winner", ranked[0]), ("runner_up", ranked[1])):
        for parameter in sensitivity_parameters(moved.product):
            outcomes = []
            for factor in (1 - step, 1 + step):
                value = _moved_group_fen(moved, parameter, factor, segment.risk_tier, discount_rate_bps)
                field_values = [
                    _Contender(c.product, RevenuePerImpression(c.revenue.platform_fen, value))
                    if c is moved
                    else c
                    for c in contenders
                ]
                reranked = _ranked(field_values, GROUP_VIEW)
                winner_now = next(c for c in reranked if c.product is winner.product)
                best_other = next(c for c in reranked if c.product is not winner.product)
                outcomes.append(
                    (_rpm(winner_now.revenue.group_fen - best_other.revenue.group_fen), reranked[0].product.product_id)
                )
            (margin_low, winner_low), (margin_high, winner_high) = outcomes
            base_value = parameter_value(moved.product, parameter, segment.risk_tier)
            entries.append(
                SensitivityEntry(
                    segment=segment.name,
                    product_id=moved.product.product_id,
                    role=role,
                    parameter=parameter,
                    base_value=base_value,
                    low_value=round_half_up(base_value * (1 - step)),
                    high_value=round_half_up(base_value * (1 + step)),
                    margin_low_rpm_fen=margin_low,
                    margin_base_rpm_fen=base_margin,
                    margin_high_rpm_fen=margin_high,
                    winner_low=winner_low,
                    winner_high=winner_high,
                    flips=winner_low != winner.product.product_id or winner_high != winner.product.product_id,
                )
            )
    return entries
