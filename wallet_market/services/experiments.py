"""Experiments: a candidate rule-set version served to a share of users, and what it earned per user.

:class:`ExperimentAdmin` is the product managers' use case: create an
experiment on one page with a frozen candidate version as its treatment, list,
stop, ship (publish the treatment) and read its results. :class:`ExperimentServing`
is each serving process's view: the experiments that are running and the
serving snapshot of each treatment version, rebuilt when an experiment changes
(announced on the experiments channel), when the learned rates move, and by the
snapshot's fallback poll. Assignment is the domain's sticky hashed split
(:mod:`wallet_market.domain.experiments`).
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

import redis

from ..domain import guards
from ..domain.catalogue import Catalogue
from ..domain.experiments import ARMS, Arm, Experiment, UnitOutcome, assign_on_page, experiment_errors, experiment_results
from ..domain.funnel import MICRO
from ..domain.economics import round_half_up
from ..store.catalogue import CatalogueStore, ConcurrentChange, UnknownVersion
from ..store.experiments import ExperimentCounters, ExperimentStore
from .catalogue_admin import violations_as_errors
from .errors import Conflict, Invalid, NotFound
from .layouts import Serving

log = logging.getLogger(__name__)

# The per-unit measures the ledger worker counts, and the UnitOutcome field each becomes.
UNIT_MEASURES = {
    "impressions": "impressions",
    "clicks": "clicks",
    "approvals": "approvals",
    "loans": "loans",
    "platform_revenue_micro_fen": "platform_revenue_fen",
    "group_contribution_micro_fen": "group_contribution_fen",
}
_MICRO_MEASURES = ("platform_revenue_micro_fen", "group_contribution_micro_fen")


def experiment_from_record(record: Mapping[str, Any]) -> Experiment:
    return Experiment(
        experiment_id=record["experiment_id"],
        page=record["page"],
        treatment_version=int(record["treatment_version"]),
        traffic_bps=int(record["traffic_bps"]),
        treatment_bps=int(record["treatment_bps"]),
        starts_at=datetime.fromisoformat(record["starts_at"]),
        ends_at=datetime.fromisoformat(record["ends_at"]),
        salt=record["salt"],
        status=record.get("status", "running"),
    )


def public_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """An experiment as the API shows it (the salt stays inside)."""
    out = {k: v for k, v in record.items() if k != "salt"}
    for name in ("starts_at", "ends_at"):
        out[name] = datetime.fromisoformat(record[name])
    return out


def unit_outcomes(rows: Any) -> list[UnitOutcome]:
    """``(unit, measure, value)`` rows of one arm as one :class:`UnitOutcome` per unit (money rounded to the fen)."""
    by_unit: dict[str, dict[str, int]] = {}
    for unit, measure, value in rows:
        if measure in UNIT_MEASURES:
            counts = by_unit.setdefault(unit, {})
            counts[measure] = counts.get(measure, 0) + value
    out = []
    for counts in by_unit.values():
        values = {}
        for measure, name in UNIT_MEASURES.items():
            raw = counts.get(measure, 0)
            values[name] = round_half_up(Fraction(raw, MICRO)) if measure in _MICRO_MEASURES else raw
        out.append(UnitOutcome(**values))
    return out


class ExperimentAdmin:
    def __init__(
        self,
        store: ExperimentStore,
        catalogue_store: CatalogueStore,
        counters: ExperimentCounters,
        apr_cap_bps: int,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.catalogue_store = catalogue_store
        self.counters = counters
        self.apr_cap_bps = apr_cap_bps
        self.clock = clock

    # -- reads -------------------------------------------------------------
    def list(self) -> list[dict[str, Any]]:
        return [public_record(r) for r in self.store.all()]

    def get(self, experiment_id: str) -> dict[str, Any]:
        return public_record(self._record(experiment_id))

    def _record(self, experiment_id: str) -> dict[str, Any]:
        record = self.store.get(experiment_id)
        if record is None:
            raise NotFound(f"experiment {experiment_id!r} does not exist", {"experiment_id": ["unknown experiment"]})
        return record

    # -- writes ------------------------------------------------------------
    def create(self, data: Mapping[str, Any], actor: str, *, salt: str | None = None) -> dict[str, Any]:
        """A new running experiment; 422 naming the field when it cannot run as asked.

        ``salt`` is what units are hashed with into traffic and arms: a fresh
        random one unless given (the simulator derives it from its seed, so a
        seed always gives the same run).
        """
        now = datetime.fromtimestamp(self.clock(), tz=timezone.utc)
        record = {
            "experiment_id": data["experiment_id"],
            "page": data["page"],
            "treatment_version": int(data["treatment_version"]),
            "traffic_bps": int(data["traffic_bps"]),
            "treatment_bps": int(data["treatment_bps"]),
            "starts_at": data["starts_at"].astimezone(timezone.utc).isoformat(),
            "ends_at": data["ends_at"].astimezone(timezone.utc).isoformat(),
            "salt": salt if salt is not None else secrets.token_hex(8),
            "status": "running",
            "control_version": self.catalogue_store.current_version(),
            "created_at": now.isoformat(),
            "created_by": actor,
        }
        experiment = experiment_from_record(record)
        self._check_versions(experiment, data)
        if experiment.ends_at <= now:
            raise Invalid("the experiment would never run", {"ends_at": ["must be in the future"]})

        def check(existing: list[dict[str, Any]]) -> None:
            errors = experiment_errors(experiment, [experiment_from_record(r) for r in existing])
            if errors:
                status = Conflict if set(errors) == {"experiment_id"} else Invalid
                raise status("the experiment cannot run as asked", {k: [v] for k, v in errors.items()})

        try:
            return public_record(self.store.create(record, check, actor=actor))
        except ConcurrentChange:
            raise Conflict("experiments kept changing; try again") from None

    def _check_versions(self, experiment: Experiment, data: Mapping[str, Any]) -> None:
        errors = experiment_errors(experiment)
        if errors:
            raise Invalid("the experiment cannot run as asked", {k: [v] for k, v in errors.items()})
        try:
            treatment = self.catalogue_store.load_version(experiment.treatment_version)
        except UnknownVersion:
            raise Invalid(
                f"rule-set version {experiment.treatment_version} does not exist",
                {"treatment_version": ["no such rule-set version; freeze the draft as a candidate first"]},
            ) from None
        pages = {p.get("page_id") for p in treatment["catalogue"].get("pages", [])}
        if experiment.page not in pages:
            raise Invalid(
                f"version {experiment.treatment_version} has no page {experiment.page!r}",
                {"page": [f"not a page of rule-set version {experiment.treatment_version}"]},
            )
        published = self.catalogue_store.load_current()
        if published is None or experiment.page not in {p.get("page_id") for p in published["catalogue"].get("pages", [])}:
            raise Invalid(f"page {experiment.page!r} is not served", {"page": ["not a page of the published rule set"]})

    def stop(self, experiment_id: str, actor: str) -> dict[str, Any]:
        """Stop a running experiment: everyone gets the published rules again; its results stay."""

        def change(record: dict[str, Any]) -> dict[str, Any]:
            if record.get("status") != "running":
                raise Conflict(f"experiment {experiment_id!r} is {record.get('status')}", {"status": ["not running"]})
            return {**record, "status": "stopped", "stopped_at": datetime.now(timezone.utc).isoformat(),
                    "stopped_by": actor}

        return public_record(self._update(experiment_id, change, actor, "experiment_stop"))

    def ship(self, experiment_id: str, actor: str) -> dict[str, Any]:
        """Publish the treatment version (the served pointer moves to it) and end the experiment."""
        record = self._record(experiment_id)
        version = int(record["treatment_version"])
        body = self.catalogue_store.load_version(version)
        violations = guards.catalogue_violations(Catalogue.from_dict(body["catalogue"], version=version), self.apr_cap_bps)
        if violations:
            raise Invalid(f"version {version} breaks a guard and cannot be published", violations_as_errors(violations))
        counts = {kind: len(body["catalogue"].get(kind) or []) for kind in ("partners", "products", "pages", "rules")}

        def change(current: dict[str, Any]) -> dict[str, Any]:
            if current.get("status") == "shipped":
                raise Conflict(f"experiment {experiment_id!r} was already shipped", {"status": ["already shipped"]})
            return {**current, "status": "shipped", "shipped_at": datetime.now(timezone.utc).isoformat(),
                    "shipped_by": actor}

        return public_record(
            self._update(experiment_id, change, actor, "experiment_ship", serve_version=lambda _: (version, counts))
        )

    def _update(
        self,
        experiment_id: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        actor: str,
        action: str,
        serve_version: Callable[[dict[str, Any]], Any] | None = None,
    ) -> dict[str, Any]:
        try:
            after = self.store.update(experiment_id, change, actor=actor, action=action, serve_version=serve_version)
        except ConcurrentChange:
            raise Conflict("experiments kept changing; try again") from None
        if after is None:
            raise NotFound(f"experiment {experiment_id!r} does not exist", {"experiment_id": ["unknown experiment"]})
        return after

    # -- results -----------------------------------------------------------
    def results(self, experiment_id: str) -> dict[str, Any]:
        """Per-arm totals, the lift of group revenue per 1,000 impressions with its interval, and the SRM check."""
        return self._results(self._record(experiment_id))

    def report(self, experiment_id: str) -> dict[str, Any]:
        """The experiment (as :meth:`get`) and its results (as :meth:`results`), from one read of its record."""
        record = self._record(experiment_id)
        return {"experiment": public_record(record), "results": self._results(record)}

    def _results(self, record: Mapping[str, Any]) -> dict[str, Any]:
        experiment_id = record["experiment_id"]
        arms = {arm: unit_outcomes(self.counters.units(experiment_id, arm)) for arm in ARMS}
        computed = experiment_results(arms["control"], arms["treatment"], int(record["treatment_bps"]))
        return {
            "experiment_id": experiment_id,
            "status": record.get("status"),
            "arms": [{"arm": arm, **computed["arms"][arm]} for arm in ARMS],  # type: ignore[index]
            "lift": computed["lift"],
            "srm_p_value": computed["srm_p_value"],
        }


# -- serving ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assignment:
    """A unit's part in the experiment running on a page: its arm and the snapshot that serves it."""

    experiment: Experiment
    arm: Arm
    serving: Serving | None  # the treatment's snapshot; None for the control (the published rules)


@dataclass(frozen=True)
class _Running:
    experiments: tuple[Experiment, ...] = ()
    servings: Mapping[int, Serving] = field(default_factory=dict)


class ExperimentServing:
    """The running experiments of this process and a serving snapshot of every treatment version."""

    def __init__(
        self,
        store: ExperimentStore,
        catalogue_store: CatalogueStore,
        build: Callable[[dict[str, Any]], Serving],
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.catalogue_store = catalogue_store
        self.build = build
        self.clock = clock
        self._running = _Running()
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether any experiment may assign units (the layout's one check when there is none)."""
        return bool(self._running.experiments)

    @property
    def experiments(self) -> tuple[Experiment, ...]:
        return self._running.experiments

    def refresh(self, rebuild: bool = False) -> None:
        """Reload the experiments; build the snapshot of each running treatment version not built yet.

        ``rebuild`` builds them all again (the learned rates changed). While
        Redis is unreachable the experiments held keep running.
        """
        with self._lock:
            try:
                records = self.store.all()
            except redis.RedisError as exc:
                log.warning("experiments not refreshed, keeping %d: %s", len(self._running.experiments), exc)
                return
            now = datetime.fromtimestamp(self.clock(), tz=timezone.utc)
            running = tuple(
                e for e in map(experiment_from_record, records) if e.status == "running" and e.ends_at > now
            )
            held = {} if rebuild else self._running.servings
            servings: dict[int, Serving] = {}
            for experiment in running:
                version = experiment.treatment_version
                if version in servings:
                    continue
                if version in held:
                    servings[version] = held[version]
                    continue
                try:
                    servings[version] = self.build(self.catalogue_store.load_version(version))
                except (UnknownVersion, redis.RedisError, KeyError, ValueError) as exc:
                    log.warning("experiment %s: treatment version %s not served: %s", experiment.experiment_id, version, exc)
            self._running = _Running(
                tuple(e for e in running if e.treatment_version in servings), servings
            )

    def rebuild(self) -> None:
        self.refresh(rebuild=True)

    def assign(self, page: str, unit_key: str, now: datetime) -> Assignment | None:
        """The unit's arm in the experiment running on ``page`` now, with its snapshot; None for the published rules."""
        running = self._running
        found = assign_on_page(running.experiments, page, unit_key, now)
        if found is None:
            return None
        experiment, arm = found
        if arm == "control":
            return Assignment(experiment, arm, None)
        serving = running.servings.get(experiment.treatment_version)
        if serving is None or page not in serving.catalogue.pages:
            return None
        return Assignment(experiment, arm, serving)
