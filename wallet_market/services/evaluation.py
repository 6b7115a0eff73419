"""Off-policy evaluation of a candidate rule set: what it would have earned on the logged decisions.

The logged decisions of a window (with what each slot earned) are read from the
analysis log's Parquet files (:func:`~wallet_market.services.analysis.logged_decisions`);
each is replayed through the real placement code over the candidate's
catalogue — the draft, or a stored version — given the context the log
recorded (:func:`~wallet_market.domain.evidence.replay_request`). The
candidate's distribution over products for each logged slot, beside the
logging policy's, goes to the estimators of :mod:`wallet_market.domain.ope`
(IPS, SNIPS, DM, DR with intervals, effective sample size, support).

Only what the worker has exported is evaluated (it exports every few seconds);
decisions still only in Redis are left for the next evaluation.
"""
from __future__ import annotations

import random
import re
from datetime import date
from fractions import Fraction
from typing import Any, Callable, Mapping, Sequence

from ..domain.economics import round_half_up
from ..domain.evidence import EMPTY, replay_request
from ..domain.funnel import MICRO
from ..domain.ope import LoggedDecision, LoggedSlot, candidate_from_table, evaluate, fit_reward_model
from ..domain.placement import PlacementPolicy, UnknownPage, place
from ..store.analysis import AnalysisFiles
from .analysis import LoggedDecisionRow, logged_decisions
from .catalogue_admin import CatalogueAdmin
from .errors import Invalid, NotFound
from .layouts import Serving

CANDIDATE = re.compile(r"^(draft|[1-9][0-9]{0,8})\Z")
VIEWS = ("group", "platform")


def to_logged(rows: Sequence[LoggedDecisionRow]) -> list[LoggedDecision]:
    """The estimators' view of the logged decisions (rewards rounded to the fen per slot)."""
    return [
        LoggedDecision(
            decision_id=row.record["decision_id"],
            context=row.record,
            slots=tuple(
                LoggedSlot(
                    slot_id=s.slot_id,
                    position=s.position,
                    shown=s.product_id,
                    logged_probs=dict(s.distribution),
                    reward_group_fen=round_half_up(Fraction(s.group_micro_fen, MICRO)),
                    reward_platform_fen=round_half_up(Fraction(s.platform_micro_fen, MICRO)),
                )
                for s in row.slots
            ),
        )
        for row in rows
    ]


def candidate_distributions(
    serving: Serving, policy: PlacementPolicy, rows: Sequence[LoggedDecisionRow]
) -> tuple[dict[str, dict[str, dict[str, float]]], int]:
    """Decision id → slot id → the candidate's distribution, by replaying each logged decision.

    A logged slot the candidate leaves empty gets ``{EMPTY: 1.0}`` (it earns
    nothing). Also returns how many decisions the candidate would fill a slot
    in that the log never had (their value is not counted).
    """
    rng = random.Random(0)  # the distributions do not depend on the draw
    table: dict[str, dict[str, dict[str, float]]] = {}
    extra = 0
    for row in rows:
        context, state = replay_request(row.record, policy.decline_cooldown_days)
        try:
            decision = place(serving.index, context, state, policy, rng=rng)
        except UnknownPage:
            decision = None
        placed = {s.slot_id: s.logging_distribution() for s in decision.slots} if decision is not None else {}
        logged = {s.slot_id for s in row.slots}
        if set(placed) - logged:
            extra += 1
        table[row.record["decision_id"]] = {sid: placed.get(sid, {EMPTY: 1.0}) for sid in logged}
    return table, extra


class Evaluation:
    def __init__(
        self,
        files: AnalysisFiles,
        admin: CatalogueAdmin,
        policy: PlacementPolicy,
        build: Callable[[Mapping[str, Any]], Serving],
    ):
        self.files = files
        self.admin = admin
        self.policy = policy
        self.build = build

    def candidate_serving(self, candidate: str) -> Serving:
        """The serving snapshot of ``draft`` or of a stored version (guard-checked for the draft)."""
        if not CANDIDATE.match(str(candidate)):
            raise Invalid("unknown candidate", {"candidate": ["must be draft or a rule-set version number"]})
        if candidate == "draft":
            return self.build(self.admin.draft_record())
        try:
            record = self.admin.version_record(int(candidate))
        except NotFound:
            raise Invalid(f"rule-set version {candidate} does not exist", {"candidate": ["no such version"]}) from None
        return self.build(record)

    def evaluate(
        self, candidate: str, first: date | None = None, last: date | None = None, view: str = "group"
    ) -> dict[str, Any]:
        """The estimates of the candidate's revenue per 1,000 slot impressions on the window's log."""
        if view not in VIEWS:
            raise Invalid("unknown view", {"view": [f"must be one of {', '.join(VIEWS)}"]})
        if first is not None and last is not None and last < first:
            raise Invalid("an empty window", {"to": ["must not be before from"]})
        serving = self.candidate_serving(candidate)
        rows = logged_decisions(self.files, first, last)
        return evaluate_rows(serving, self.policy, rows, view, label=str(candidate))


def evaluate_rows(
    serving: Serving, policy: PlacementPolicy, rows: Sequence[LoggedDecisionRow], view: str, label: str
) -> dict[str, Any]:
    """Replay ``rows`` through the candidate ``serving`` and estimate its value (the shape of ``ope.evaluate``)."""
    decisions = to_logged(rows)
    table, extra = candidate_distributions(serving, policy, rows)
    fitted = fit_reward_model(decisions, view=view)

    def model(context: Mapping[str, object], slot: LoggedSlot, product: str) -> float:
        return 0.0 if product == EMPTY else fitted(context, slot, product)

    try:
        result = evaluate(decisions, candidate_from_table(table), view=view, reward_model=model)
    except ValueError as exc:
        raise Invalid("the log cannot be evaluated", {"log": [str(exc)]}) from None
    warnings = [str(w) for w in result["warnings"]]  # type: ignore[attr-defined]
    if extra:
        warnings.append(
            f"in {extra} decisions the candidate fills a slot the log never showed; that slot's value is not counted"
        )
    return {"candidate": label, "view": view, **result, "warnings": warnings}
