"""The simulator: synthetic users with known truth driven through the real layout, event, postback and worker code.

``wallet-market simulate --users N --days D --seed S [--candidate draft|VERSION]``
builds a second set of components through the composition root, against the
configured Redis but under a key prefix of its own (``<key_prefix>-sim-<seed>``)
and with an analysis directory of its own (a scratch directory), so nothing it
does reaches real traffic, the real ledger or the real analysis log; every key
under its prefix and its directory are removed afterwards. Into that prefix it
copies the published rule set (and the candidate, which it then publishes there
when asked to serve it) — or the demo catalogue when nothing is published.

Each simulated day, each user visits the home page once, at a random time:

1. the layout service places the page (exploration, experiments and learned
   rates included) on the simulated clock;
2. the app reports an impression of every slot (``EventIngestion``); the
   user's hidden funnel (:mod:`wallet_market.domain.synthetic`) decides clicks,
   which the app reports, then applications, approvals or rejections and
   loans, which the owners post back (``PostbackService``, the in-house lender
   as ``in_house``);
3. now and then the ledger worker applies the stream in batches, the decision
   log is flushed, the analysis log exported and the learned rates refreshed.

The services are called directly, not over HTTP, so a simulation of 20,000
users takes about a minute. What it reports is measured by the real ledger's
counters: revenue per 1,000 slot impressions in both views, beside the truth
(the exact expected revenue of what was shown, from the hidden rates).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Sequence

from .composition import Components, build_components, build_ledger_worker
from .domain.catalogue import BPS, Catalogue
from .domain.economics import round_half_up
from .domain.evidence import EMPTY
from .domain.funnel import APPLIED, APPROVED, CLICK, DISBURSED, REJECTED, revenue_rows
from .domain.synthetic import SyntheticUser, World, outcome_draws
from .services.analysis import LoggedDecisionRow, logged_decisions
from .services.catalogue_admin import ENTITIES, canonical
from .services.evaluation import candidate_distributions
from .services.layouts import LayoutRequest, Serving
from .settings import Settings

log = logging.getLogger(__name__)

# Simulated time starts here (a Monday), whatever the date of the run, so a seed always gives the same answer.
EPOCH = datetime(2026, 3, 2, tzinfo=timezone.utc)
PAGE = "home"
EVENT_BATCH = 500
WORKER_EVERY_VISITS = 2_000
# Minutes after the impression at which each funnel step happens.
DELAY_SECONDS = {CLICK: 30, APPLIED: 600, APPROVED: 3_600, REJECTED: 3_600, DISBURSED: 7_200}


class SimClock:
    """The simulated time every service of the simulation reads."""

    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class SimulationResult:
    policy: str
    version: int
    decisions: int
    impressions: int
    rpm_group_fen: int
    rpm_platform_fen: int
    true_rpm_group_fen: int
    true_rpm_platform_fen: int
    exploration_bps: int
    exploration_cost_rpm_fen: int  # the model's expected cost of exploration, per 1,000 slot impressions

    def summary(self) -> dict[str, Any]:
        """What ``wallet-market simulate`` prints."""
        return dataclasses.asdict(self)


class Simulation:
    """One simulation under its own key prefix and analysis directory; a context manager that cleans up."""

    def __init__(
        self,
        settings: Settings,
        *,
        users: int,
        days: int,
        seed: int,
        published: Mapping[str, Any],
        candidate: Mapping[str, Any] | None = None,
        serve_candidate: bool = False,
        policy_label: str = "published",
        logged_in_share: float = 0.8,
        overrides: Mapping[str, Any] | None = None,
    ):
        if users < 1 or days < 1:
            raise ValueError("users and days must be at least 1")
        self.users_count = users
        self.days = days
        self.seed = seed
        self.published = published
        self.candidate = candidate
        self.serve_candidate = serve_candidate
        self.policy_label = policy_label
        self.logged_in_share = logged_in_share
        self.scratch = Path(tempfile.mkdtemp(prefix=f"wallet-market-sim-{seed}-"))
        self.settings = dataclasses.replace(
            settings,
            key_prefix=f"{settings.key_prefix}-sim-{seed}",
            analysis_dir=str(self.scratch / "analysis"),
            rate_limit_per_minute=10**12,
            **dict(overrides or {}),
        )
        self.clock = SimClock(EPOCH.timestamp())
        self.world = World(seed, dict(Catalogue.from_dict(dict(published)).products))
        self.comps: Components | None = None
        self.candidate_version: int | None = None
        self.published_version = 0

    # -- set-up and clean-up ----------------------------------------------------------
    def __enter__(self) -> "Simulation":
        comps = self.comps = build_components(self.settings)
        try:
            self._wire(comps)
            self._load_catalogue(comps)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        comps, self.comps = self.comps, None
        if comps is not None:
            try:
                prefix = f"{self.settings.key_prefix}:"
                batch = []
                for key in comps.redis.scan_iter(match=f"{prefix}*", count=1000):
                    batch.append(key)
                    if len(batch) >= 500:
                        comps.redis.delete(*batch)
                        batch.clear()
                if batch:
                    comps.redis.delete(*batch)
            finally:
                comps.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _wire(self, comps: Components) -> None:
        clock = self.clock
        comps.layouts.clock = clock
        comps.layouts.rng = random.Random(f"{self.seed}:exploration")
        comps.events.clock = clock
        comps.postbacks.clock = clock
        comps.learning.clock = clock
        comps.experiment_serving.clock = clock
        comps.experiments.clock = clock
        self.worker = build_ledger_worker(comps, consumer="simulator", claim_idle_ms=1, block_ms=1)
        self.worker.clock = clock
        self.worker.exporter.clock = clock

    def _load_catalogue(self, comps: Components) -> None:
        store = comps.catalogue_store
        self.published_version = store.publish(dict(self.published), actor="simulator", expected_revision=0)
        if self.candidate is not None:
            revision, _ = store.read_draft()
            self.candidate_version = store.freeze_candidate(dict(self.candidate), actor="simulator",
                                                            expected_revision=revision)
            if self.serve_candidate:
                comps.admin.rollback(self.candidate_version, "simulator", note="serve the candidate")
        comps.snapshots.refresh()
        comps.experiment_serving.refresh()
        self.api_key = comps.api_keys.create("app", name="simulator")
        catalogue = self.serving().catalogue
        partners = sorted(catalogue.partners)
        self.population = self.world.users(self.users_count, partners, self.logged_in_share)
        self.tokens: dict[int, str | None] = {}
        for user in self.population:
            if user.profile is not None and user.user_id is not None:
                comps.profiles.users.put_profile(user.user_id, dict(user.profile))
                self.tokens[user.index] = comps.user_tokens.mint(user.user_id, 30 * 86_400)
            else:
                self.tokens[user.index] = None
        self.by_unit = {comps.pseudonyms.of(u.user_id, u.device_id): u for u in self.population}

    def serving(self) -> Serving:
        assert self.comps is not None
        return self.comps.layouts.serving()

    def add_experiment(self, **data: Any) -> dict[str, Any]:
        """Start an experiment in the simulation (its window defaults to the whole run)."""
        assert self.comps is not None
        body = {
            "starts_at": EPOCH,
            "ends_at": EPOCH + timedelta(days=self.days + 1),
            **data,
        }
        # Units are hashed with a salt of the seed's, not a random one: a seed always gives the same arms.
        salt = hashlib.sha256(f"{self.seed}:experiment:{body['experiment_id']}".encode()).hexdigest()[:16]
        created = self.comps.experiments.create(body, "simulator", salt=salt)
        self.comps.experiment_serving.refresh()
        return created

    # -- the run ---------------------------------------------------------------------
    def run(self) -> SimulationResult:
        assert self.comps is not None
        comps = self.comps
        decisions = 0
        impressions = 0
        true_value = {"group": 0.0, "platform": 0.0}
        cost_micro_fen = 0
        pending_events: list[dict[str, Any]] = []
        postbacks: list[tuple[float, str, dict[str, Any]]] = []
        visits_since_worker = 0
        for day in range(self.days):
            start = EPOCH.timestamp() + day * 86_400
            order = random.Random(f"{self.seed}:visits:{day}")
            visits = sorted((start + order.random() * 86_000, user.index) for user in self.population)
            for at, index in visits:
                user = self.population[index]
                self.clock.now = at
                result = comps.layouts.layout(
                    LayoutRequest(
                        api_key=self.api_key,
                        user_token=self.tokens[index],
                        page=PAGE,
                        device_model=user.device_model,
                        app_version=user.app_version,
                        device_id=user.device_id if user.user_id is None else None,
                    )
                )
                decisions += 1
                cost_micro_fen += result.decision.exploration_cost_micro_fen
                catalogue = result.serving.catalogue
                weights = {s.slot_id: s.position_weight_bps for s in catalogue.pages[PAGE].slots}
                for slot, body in zip(result.decision.slots, result.body["slots"]):
                    impressions += 1
                    product = catalogue.products[slot.product_id]
                    weight = weights[slot.slot_id]
                    for view in true_value:
                        true_value[view] += self.world.expected_reward(user, product, weight, view)
                    token = body["impression_token"]
                    pending_events.append({"type": "impression", "impression_token": token, "occurred_at": at})
                    self._funnel(user, product, weight, token, at, day, slot.slot_id, pending_events, postbacks)
                if len(pending_events) >= EVENT_BATCH:
                    self._ingest(pending_events)
                visits_since_worker += 1
                if visits_since_worker >= WORKER_EVERY_VISITS:
                    visits_since_worker = 0
                    self._ingest(pending_events)
                    self._post(postbacks, up_to=at)
                    self._settle()
            self.clock.now = start + 86_399
            self._ingest(pending_events)
            self._post(postbacks, up_to=None)
            self._settle()
            comps.learning.refresh()
            comps.experiment_serving.refresh()
        return self._result(decisions, impressions, true_value, cost_micro_fen)

    def _funnel(
        self,
        user: SyntheticUser,
        product: Any,
        weight: int,
        token: str,
        at: float,
        day: int,
        slot_id: str,
        events: list[dict[str, Any]],
        postbacks: list[tuple[float, str, dict[str, Any]]],
    ) -> None:
        """Draw the slot's funnel from the user's hidden rates; queue the click and the owner's postbacks."""
        truth = self.world.funnel(user, product)
        draws = outcome_draws(self.seed, user, day, 0, slot_id)
        if draws.random() >= min(0.95, truth.ctr * weight / BPS):
            return
        events.append({"type": "click", "impression_token": token, "occurred_at": at + DELAY_SECONDS[CLICK]})
        owner = product.owner  # the in-house lender posts back as in_house, like a partner
        base = token[-16:]
        if draws.random() >= truth.apply:
            return
        postbacks.append((at + DELAY_SECONDS[APPLIED], owner, {"event_id": f"{base}-a", "type": APPLIED,
                                                               "impression_token": token}))
        if draws.random() >= truth.approve:
            postbacks.append((at + DELAY_SECONDS[REJECTED], owner, {"event_id": f"{base}-r", "type": REJECTED,
                                                                    "impression_token": token}))
            return
        postbacks.append((at + DELAY_SECONDS[APPROVED], owner, {"event_id": f"{base}-p", "type": APPROVED,
                                                                "impression_token": token}))
        if product.kind == "loan" and draws.random() < truth.draw:
            postbacks.append((at + DELAY_SECONDS[DISBURSED], owner, {"event_id": f"{base}-d", "type": DISBURSED,
                                                                     "impression_token": token,
                                                                     "amount": truth.amount_fen}))

    def _ingest(self, events: list[dict[str, Any]]) -> None:
        assert self.comps is not None
        while events:
            batch, events[:] = events[:EVENT_BATCH], events[EVENT_BATCH:]
            self.comps.events.ingest(batch)

    def _post(self, postbacks: list[tuple[float, str, dict[str, Any]]], up_to: float | None) -> None:
        """Send the postbacks due by ``up_to`` (all with None), each on the clock of its own time."""
        assert self.comps is not None
        now = self.clock.now
        postbacks.sort(key=lambda p: p[0])
        due = [p for p in postbacks if up_to is None or p[0] <= up_to]
        postbacks[:] = [p for p in postbacks if not (up_to is None or p[0] <= up_to)]
        for at, owner, body in due:
            self.clock.now = at
            self.comps.postbacks.accept(owner, {**body, "occurred_at": at})
        self.clock.now = now

    def _settle(self) -> None:
        """The worker's part: counters, caps and suppression; the decision log; the analysis export."""
        assert self.comps is not None
        self.worker.run_until_idle(timeout_seconds=600)
        self.comps.decision_log.flush()
        self.worker.exporter.export()

    def _result(
        self, decisions: int, impressions: int, true_value: Mapping[str, float], cost_micro_fen: int
    ) -> SimulationResult:
        assert self.comps is not None
        days = [(EPOCH + timedelta(days=d)).strftime("%Y%m%d") for d in range(self.days + 1)]
        rows = revenue_rows(self.comps.ledger.counters(days), "channel")
        counted = sum(r["impressions"] for r in rows)
        group = sum(r["group_contribution_fen"] for r in rows)
        platform = sum(r["platform_revenue_fen"] for r in rows)

        def per_mille(value: float, count: int) -> int:
            return round_half_up(Fraction(value * 1000 / count)) if count else 0

        version = self.serving().version
        return SimulationResult(
            policy=self.policy_label,
            version=version,
            decisions=decisions,
            impressions=counted,
            rpm_group_fen=per_mille(group, counted),
            rpm_platform_fen=per_mille(platform, counted),
            true_rpm_group_fen=per_mille(true_value["group"], impressions),
            true_rpm_platform_fen=per_mille(true_value["platform"], impressions),
            exploration_bps=self.settings.exploration_bps,
            exploration_cost_rpm_fen=per_mille(cost_micro_fen / 1_000_000, impressions),
        )

    # -- truth for evaluation ---------------------------------------------------------
    def logged(self) -> list[LoggedDecisionRow]:
        """Every decision the simulation logged, with its rewards, read back from its Parquet files."""
        assert self.comps is not None
        return logged_decisions(self.comps.analysis_files, None, None)

    def candidate_serving(self) -> Serving:
        """The candidate as this simulation would serve it now (with what it has learned)."""
        assert self.comps is not None and self.candidate_version is not None
        return self.comps.evaluation.candidate_serving(str(self.candidate_version))

    def true_rpm(self, serving: Serving, rows: Sequence[LoggedDecisionRow], view: str) -> float:
        """The exact value (fen per 1,000 slot impressions) of ``serving`` on the logged decisions.

        For each logged slot, the candidate's distribution over products (by
        the same replay the evaluation makes) weighs each product's true
        expected revenue for that user in that slot.
        """
        assert self.comps is not None
        table, _ = candidate_distributions(serving, self.comps.policy, rows)
        catalogue: Catalogue = serving.catalogue
        weights = {s.slot_id: s.position_weight_bps for s in catalogue.pages[PAGE].slots}
        total = 0.0
        slots = 0
        for row in rows:
            user = self.by_unit[row.record["unit"]]
            for slot in row.slots:
                slots += 1
                for product_id, p in table[row.record["decision_id"]][slot.slot_id].items():
                    if product_id == EMPTY or p <= 0:
                        continue
                    total += p * self.world.expected_reward(user, catalogue.products[product_id], weights[slot.slot_id],
                                                            view)
        return 1000 * total / slots if slots else 0.0


def catalogue_body(data: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A catalogue as read from a file, in the stored form a rule set holds (signing secrets left out)."""
    body: dict[str, list[dict[str, Any]]] = {}
    for kind in ENTITIES:
        entities = []
        for entity in data.get(kind) or []:
            entity = {k: v for k, v in entity.items() if k != "signing_secret"}
            entities.append(canonical(kind, entity))
        body[kind] = entities
    return body


def simulate(
    settings: Settings,
    *,
    users: int,
    days: int,
    seed: int,
    published: Mapping[str, Any],
    candidate: Mapping[str, Any] | None = None,
    policy_label: str = "published",
) -> SimulationResult:
    """Run one simulation serving ``candidate`` (when given) or the published rules, and clean up."""
    with Simulation(
        settings, users=users, days=days, seed=seed, published=published, candidate=candidate,
        serve_candidate=candidate is not None, policy_label=policy_label,
    ) as simulation:
        return simulation.run()
