"""Learned funnel rates in every serving process (docs/economics.md), refreshed in the background.

:class:`LearnedRates` is a catalogue hook: each serving snapshot is built from
the published catalogue with its funnel rates replaced by Beta-smoothed
estimates (:mod:`wallet_market.domain.learning`). :class:`LearningRefresher`
reads the observed counts (one HGETALL) every ``learning_refresh_seconds`` and,
when they changed, rebuilds the snapshot in place — the layout path itself
makes no extra Redis call.
"""
from __future__ import annotations

import logging
from typing import Mapping


from .. import metrics
from ..domain.catalogue import Catalogue
from ..domain.learning import ObservedFunnel, apply_learning, parse_observed
from ..store.ledger import Ledger
from ..store.snapshot import SnapshotHolder
from .background import Periodic

log = logging.getLogger(__name__)


class LearnedRates:
    """The catalogue hook that swaps priors for learned rates; holds the latest observed counts."""

    def __init__(self, prior_strength: int):
        self.prior_strength = prior_strength
        self._raw: Mapping[str, int] = {}
        self._observed: Mapping[str, Mapping[str, ObservedFunnel]] = {}

    def __call__(self, catalogue: Catalogue) -> Catalogue:
        return apply_learning(catalogue, self._observed, self.prior_strength)

    def update(self, raw: Mapping[str, int]) -> bool:
        """Take new observed counts; True when they differ from the ones held."""
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
    ):
        super().__init__(interval_seconds)
        self.ledger = ledger
        self.rates = rates
        self.snapshots = snapshots

    def refresh(self) -> bool:
        """Read the counts; when they changed, rebuild the current snapshot. True when it was rebuilt."""
        if not self.rates.update(self.ledger.learned_counts()):
            return False
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
