"""Learned funnel rates in every serving process (docs/economics.md), refreshed in the background.

:class:`LearnedRates` is a catalogue hook: each serving snapshot is built from
the published catalogue with its funnel rates replaced by Beta-smoothed
estimates (:mod:`wallet_market.domain.learning`). :class:`LearningRefresher`
reads the observed counts of the learning window (one pipeline of HGETALLs, a
day each), weighs each day by its decay (``learning_half_life_days``) every
``learning_refresh_seconds`` and, when they changed, rebuilds the snapshot in
place — the layout path itself makes no extra Redis call.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from fractions import Fraction
from typing import Callable, Mapping

from .. import metrics
from ..domain.catalogue import Catalogue
from ..domain.learning import ObservedFunnel, apply_learning, decayed_counts, learning_days, parse_observed
from ..store.ledger import Ledger
from ..store.snapshot import SnapshotHolder
from .background import Periodic


def read_decayed_counts(ledger: Ledger, half_life_days: int, now: float) -> dict[str, Fraction]:
    """The learning window's observed counts, each day weighed by its decay at ``now`` (epoch seconds)."""
    today = datetime.fromtimestamp(now, tz=timezone.utc).date()
    days = learning_days(today, half_life_days)
    by_day = ledger.learned_counts_by_day([d.strftime("%Y%m%d") for d in days])
    return decayed_counts(((d, counts) for d, (_, counts) in zip(days, by_day)), today, half_life_days)

log = logging.getLogger(__name__)


class LearnedRates:
    """The catalogue hook that swaps priors for learned rates; holds the latest observed counts."""

    def __init__(self, prior_strength: int):
        self.prior_strength = prior_strength
        self._raw: Mapping[str, int | Fraction] = {}
        self._observed: Mapping[str, Mapping[str, ObservedFunnel]] = {}

    def __call__(self, catalogue: Catalogue) -> Catalogue:
        return apply_learning(catalogue, self._observed, self.prior_strength)

    def update(self, raw: Mapping[str, int | Fraction]) -> bool:
        """Take new observed (decayed) counts; True when they differ from the ones held."""
        if raw == self._raw:
            return False
        observed = parse_observed(raw)
        self._raw, self._observed = dict(raw), observed  # swapped whole: readers see one or the other
        return True

    @property
    def observed(self) -> Mapping[str, Mapping[str, ObservedFunnel]]:
        return self._observed


class LearningRefresher(Periodic):
    """Re-reads the observed counts now and then and rebuilds the serving snapshot when they moved."""

    name = "learning-refresh"

    def __init__(
        self,
        ledger: Ledger,
        rates: LearnedRates,
        snapshots: SnapshotHolder,
        interval_seconds: float,
        half_life_days: int = 30,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(interval_seconds)
        self.ledger = ledger
        self.rates = rates
        self.snapshots = snapshots
        self.half_life_days = half_life_days
        self.clock = clock
        # Called after the learned rates changed (other snapshots built from them rebuild too).
        self.on_change: list[Callable[[], None]] = []

    def refresh(self) -> bool:
        """Read the counts; when they changed, rebuild the current snapshot. True when it was rebuilt."""
        if not self.rates.update(read_decayed_counts(self.ledger, self.half_life_days, self.clock())):
            return False
        for listener in self.on_change:
            listener()
        snapshot = self.snapshots.current
        if snapshot is None:
            return False
        built = self.snapshots.build(snapshot.record)  # the same build a publish gets, hooks included
        # A publish may have landed while building: never put an older version's build over it.
        if self.snapshots.current is snapshot:
            self.snapshots.replace_built(built)
            metrics.LEARNING_REFRESHES.inc()
            return True
        return False

    def tick(self) -> bool:
        return self.refresh()
