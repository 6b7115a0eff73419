"""Experiments on rule-set versions: sticky assignment, per-arm results, lift and sample-ratio checks.

An experiment runs one page's draft rule-set version (the *treatment*) against
the published rules (the *control*). Two shares decide who is in it:

- ``traffic_bps`` of all randomisation units (users) enter the experiment; the
  rest are the *holdout*: not in the experiment, served the published rules and
  left out of its results;
- ``treatment_bps`` of the units that entered get the treatment, the others are
  the control arm.

Assignment is deterministic and sticky without storing anything: a unit's
traffic bucket is the first 8 bytes of ``sha256(f"{salt}:{unit_id}")`` read as
a big-endian integer, modulo 10,000; its arm bucket comes the same way from an
independent hash, ``sha256(f"{salt}:arm:{unit_id}")``. Changing the traffic
share therefore never moves a unit from one arm to the other, and a fresh salt
re-randomises everyone.

Results are computed per randomisation unit, not per impression: a user's
impressions are correlated (one user sees many pages), so treating impressions
as independent would make intervals far too narrow. Revenue per thousand
impressions in an arm is a ratio of two per-unit means (revenue over
impressions); its variance comes from the delta method, using the per-unit
residuals ``revenue − rpm × impressions`` (which carry the per-unit variances
and covariance of both). The relative lift ``rpm_t / rpm_c − 1`` combines the
two independent arms' variances by the delta method again; its 95% interval and
two-sided p-value use the normal approximation, so the interval excludes zero
exactly when ``p < 0.05``.

Degenerate cases never raise: an arm without units or impressions reports an
rpm of 0 and the lift is ``None``; a control rpm of zero makes the relative lift
undefined (``None``); fewer than two units in an arm, or no variation at all,
leave the interval and p-value ``None``. The sample-ratio check is ``None`` when
no unit was observed.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime
from statistics import NormalDist
from typing import Iterable, Literal, Sequence

BPS = 10_000  # basis points in one whole
STATUSES = ("running", "stopped", "shipped")
ARMS: tuple[Literal["control"], Literal["treatment"]] = ("control", "treatment")
Arm = Literal["control", "treatment"]

# The two-sided 95% quantile of the standard normal distribution (≈ 1.959964).
Z_95 = NormalDist().inv_cdf(0.975)

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")


@dataclass(frozen=True, slots=True)
class Experiment:
    experiment_id: str
    page: str
    treatment_version: int
    traffic_bps: int
    treatment_bps: int
    starts_at: datetime
    ends_at: datetime
    salt: str
    status: str = "running"

    def is_active(self, now: datetime) -> bool:
        """Running and inside its window ``[starts_at, ends_at)``; ``now`` is an aware datetime."""
        return self.status == "running" and self.starts_at <= now < self.ends_at


# --- validation --------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_aware(value: object) -> bool:
    return isinstance(value, datetime) and value.tzinfo is not None and value.utcoffset() is not None


def _id_errors(experiment: Experiment) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name in ("experiment_id", "page"):
        value = getattr(experiment, name)
        if not isinstance(value, str) or not _ID.match(value):
            errors[name] = "must be 1–64 characters of a-z, 0-9, _ or -, starting with a letter or digit"
    if not isinstance(experiment.salt, str) or not experiment.salt:
        errors["salt"] = "must be a non-empty string"
    if experiment.status not in STATUSES:
        errors["status"] = f"must be one of {', '.join(STATUSES)}"
    return errors


def _number_errors(experiment: Experiment) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not _is_int(experiment.treatment_version) or experiment.treatment_version < 1:
        errors["treatment_version"] = "must be a rule-set version number (an integer ≥ 1)"
    for name in ("traffic_bps", "treatment_bps"):
        value = getattr(experiment, name)
        if not _is_int(value) or not 0 <= value <= BPS:
            errors[name] = f"must be an integer number of basis points from 0 to {BPS}"
    return errors


def _window_errors(experiment: Experiment) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name in ("starts_at", "ends_at"):
        if not _is_aware(getattr(experiment, name)):
            errors[name] = "must be a date and time with a time zone"
    if not errors and experiment.ends_at <= experiment.starts_at:
        errors["ends_at"] = "must be after starts_at"
    return errors


def experiment_errors(experiment: Experiment, others: Iterable[Experiment] = ()) -> dict[str, str]:
    """Every reason ``experiment`` cannot be accepted, as field → message (empty when valid).

    ``others`` are the experiments already stored: a running experiment may not
    overlap in time with another running one on the same page (one page, at most
    one experiment at a time), and an id may not be taken twice.
    """
    errors = {**_id_errors(experiment), **_number_errors(experiment), **_window_errors(experiment)}
    if errors:
        return errors
    for other in others:
        if other.experiment_id == experiment.experiment_id:
            errors["experiment_id"] = f"experiment {other.experiment_id} already exists"
        elif (
            experiment.status == "running"
            and other.status == "running"
            and other.page == experiment.page
            and other.starts_at < experiment.ends_at
            and experiment.starts_at < other.ends_at
        ):
            errors["page"] = f"experiment {other.experiment_id} already runs on page {other.page} in an overlapping window"
    return errors


# --- assignment --------------------------------------------------------------


def bucket(text: str) -> int:
    """The first 8 bytes of ``sha256(text)`` as a big-endian integer, modulo 10,000."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BPS


def assign(experiment: Experiment, unit_id: str, now: datetime) -> Arm | None:
    """The unit's arm, or ``None`` when the experiment is not active at ``now`` or the unit is held out."""
    if not experiment.is_active(now):
        return None
    if bucket(f"{experiment.salt}:{unit_id}") >= experiment.traffic_bps:
        return None
    if bucket(f"{experiment.salt}:arm:{unit_id}") < experiment.treatment_bps:
        return "treatment"
    return "control"


def active_on_page(experiments: Iterable[Experiment], page: str, now: datetime) -> Experiment | None:
    """The experiment active on ``page`` at ``now``, if any.

    Validation keeps at most one running experiment per page at a time; should
    two ever overlap, the one that started first (then the smaller id) wins, so
    every serving process still picks the same one.
    """
    active = [e for e in experiments if e.page == page and e.is_active(now)]
    if not active:
        return None
    return min(active, key=lambda e: (e.starts_at, e.experiment_id))


def assign_on_page(
    experiments: Iterable[Experiment], page: str, unit_id: str, now: datetime
) -> tuple[Experiment, Arm] | None:
    """The experiment on ``page`` that ``unit_id`` takes part in and its arm; ``None`` for the published rules."""
    experiment = active_on_page(experiments, page, now)
    if experiment is None:
        return None
    arm = assign(experiment, unit_id, now)
    return None if arm is None else (experiment, arm)


# --- statistics shared with off-policy evaluation ------------------------------


def round_half_up(value: float) -> int:
    """Round to the nearest integer, halves away from zero (as money is rounded)."""
    magnitude = math.floor(abs(value) + 0.5)
    return -magnitude if value < 0 else magnitude


def ratio_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half away from zero, exactly in integers (``denominator > 0``)."""
    magnitude = (2 * abs(numerator) + denominator) // (2 * denominator)
    return -magnitude if numerator < 0 else magnitude


def variance_of_mean(influences: Sequence[float]) -> float | None:
    """Variance of a mean from its per-unit influence values (mean zero): ``Σφ² / (n (n − 1))``.

    ``None`` below two units, where no variance can be estimated.
    """
    n = len(influences)
    if n < 2:
        return None
    return math.fsum(phi * phi for phi in influences) / (n * (n - 1))


def ratio_of_means(numerators: Sequence[float], denominators: Sequence[float]) -> tuple[float, float | None] | None:
    """``Σ numerators / Σ denominators`` and its delta-method variance over the units.

    For units ``i`` with ``(yᵢ, xᵢ)`` and ``R = ȳ / x̄`` the influence of a unit is
    ``(yᵢ − R xᵢ) / x̄``, so ``Var(R) ≈ Σ (yᵢ − R xᵢ)² / (n (n − 1) x̄²)`` — the
    same as ``(s_yy − 2R s_xy + R² s_xx) / (n x̄²)`` with the per-unit sample
    (co)variances. ``None`` when the denominators add up to zero; the variance
    is ``None`` below two units.
    """
    n = len(numerators)
    total_x = math.fsum(denominators)
    if n == 0 or total_x == 0:
        return None
    ratio = math.fsum(numerators) / total_x
    mean_x = total_x / n
    influences = [(y - ratio * x) / mean_x for y, x in zip(numerators, denominators)]
    return ratio, variance_of_mean(influences)


def two_sided_p_value(z: float) -> float:
    """``P(|Z| ≥ |z|)`` for a standard normal ``Z``."""
    return math.erfc(abs(z) / math.sqrt(2.0))


# --- results -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnitOutcome:
    """What one randomisation unit (a user) did during the experiment, summed over its impressions."""

    impressions: int = 0
    clicks: int = 0
    approvals: int = 0
    loans: int = 0
    platform_revenue_fen: int = 0
    group_contribution_fen: int = 0


_COUNTS = ("impressions", "clicks", "approvals", "loans", "platform_revenue_fen", "group_contribution_fen")
# The lift metric → the revenue it divides by impressions.
LIFT_METRICS = {"rpm_group_fen": "group_contribution_fen", "rpm_platform_fen": "platform_revenue_fen"}


def arm_summary(units: Sequence[UnitOutcome]) -> dict[str, int]:
    """Totals of one arm and its revenue per 1,000 impressions (integer fen, half-up; 0 without impressions)."""
    summary = {"units": len(units)}
    for name in _COUNTS:
        summary[name] = sum(getattr(u, name) for u in units)
    impressions = summary["impressions"]
    for metric, revenue in LIFT_METRICS.items():
        summary[metric] = ratio_half_up(summary[revenue] * 1000, impressions) if impressions > 0 else 0
    return summary


def _arm_rpm(units: Sequence[UnitOutcome], revenue: str) -> tuple[float, float | None] | None:
    """The arm's revenue per impression and the delta-method variance of it."""
    return ratio_of_means([getattr(u, revenue) for u in units], [u.impressions for u in units])


def rpm_lift(
    control: Sequence[UnitOutcome], treatment: Sequence[UnitOutcome], metric: str = "rpm_group_fen"
) -> dict[str, object]:
    """The relative lift of ``metric`` in basis points with its 95% interval and two-sided p-value.

    ``estimate_bps = (rpm_t / rpm_c − 1) × 10,000`` from exact (unrounded) rpm.
    ``Var(lift) ≈ Var(R_t) / R_c² + R_t² Var(R_c) / R_c⁴`` for independent arms.
    Every number is ``None`` when an arm has no impressions or the control's rpm
    is zero; the interval and p-value are ``None`` when the variance cannot be
    estimated (an arm below two units) or is zero.
    """
    revenue = LIFT_METRICS[metric]
    out: dict[str, object] = {
        "metric": metric, "estimate_bps": None, "ci_low_bps": None, "ci_high_bps": None, "p_value": None,
    }
    arm_c, arm_t = _arm_rpm(control, revenue), _arm_rpm(treatment, revenue)
    if arm_c is None or arm_t is None or arm_c[0] == 0:
        return out
    (r_c, var_c), (r_t, var_t) = arm_c, arm_t
    lift = r_t / r_c - 1.0
    out["estimate_bps"] = round_half_up(lift * BPS)
    if var_c is None or var_t is None:
        return out
    variance = var_t / r_c**2 + r_t**2 * var_c / r_c**4
    if variance <= 0:
        return out
    se = math.sqrt(variance)
    out["ci_low_bps"] = round_half_up((lift - Z_95 * se) * BPS)
    out["ci_high_bps"] = round_half_up((lift + Z_95 * se) * BPS)
    out["p_value"] = two_sided_p_value(lift / se)
    return out


def srm_p_value(control_units: int, treatment_units: int, treatment_bps: int) -> float | None:
    """Sample-ratio mismatch: the chi-square goodness-of-fit p-value of the units per arm.

    The expected split is ``treatment_bps`` of the units in the treatment; with
    one degree of freedom ``p = erfc(√(χ² / 2))``. A small p-value (say below
    0.001) means the assignment or the logging is broken and the lift should not
    be trusted. ``None`` without units. When the split leaves one arm expected
    empty, any unit in it is a certain mismatch (``0.0``), none is a perfect fit
    (``1.0``).
    """
    total = control_units + treatment_units
    if total <= 0:
        return None
    expected_t = total * treatment_bps / BPS
    expected_c = total - expected_t
    chi_square = 0.0
    for observed, expected in ((control_units, expected_c), (treatment_units, expected_t)):
        if expected <= 0:
            if observed > 0:
                return 0.0
            continue
        chi_square += (observed - expected) ** 2 / expected
    return math.erfc(math.sqrt(chi_square / 2.0))


def experiment_results(
    control: Sequence[UnitOutcome], treatment: Sequence[UnitOutcome], treatment_bps: int
) -> dict[str, object]:
    """Per-arm totals, the lift of group revenue per 1,000 impressions, and the sample-ratio check.

    ``control`` and ``treatment`` hold one outcome per randomisation unit that
    took part (the holdout is left out); ``treatment_bps`` is the experiment's
    intended treatment share of them.
    """
    return {
        "arms": {"control": arm_summary(control), "treatment": arm_summary(treatment)},
        "lift": rpm_lift(control, treatment, "rpm_group_fen"),
        "srm_p_value": srm_p_value(len(control), len(treatment), treatment_bps),
    }
