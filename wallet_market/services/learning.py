"""Learned funnel rates in every serving process (DESIGN §5), refreshed in the background.

:class:`LearnedRates` is a catalogue hook: each serving snapshot is built from
the published catalogue with its funnel rates replaced by Beta-smoothed
estimates (:mod:`wallet_market.domain.learning`). :class:`LearningRefresher`
reads the observed counts (one HGETALL) every ``learning_refresh_seconds`` and,
when they changed, rebuilds the snapshot in place — the layout path itself
makes no extra Redis call.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Mapping

import redis

from .. import metrics
from ..domain.catalogue import Catalogue
from ..domain.learning import ObservedFunnel, apply_learning, parse_observed
from ..store.ledger import Ledger
from ..store.snapshot import SnapshotHolder

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


class LearningRefresher:
    """Re-reads the observed counts now and then and rebuilds the serving snapshot when they moved."""

    def __init__(
        self,
        ledger: Ledger,
        rates: LearnedRates,
        snapshots: SnapshotHolder,
        rebuild: Callable[[dict[str, Any]], Any],
        interval_seconds: float,
    ):
        self.ledger = ledger
        self.rates = rates
        self.snapshots = snapshots
        self.rebuild = rebuild
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Read the counts; when they changed, rebuild the current snapshot. True when it was rebuilt."""
        if not self.rates.update(self.ledger.learned_counts()):
            return False
        snapshot = self.snapshots.current
        if snapshot is None:
            return False
        built = self.rebuild(snapshot.record)
        # A publish may have landed while building: never put an older version's build over it.
        if self.snapshots.current is snapshot:
            self.snapshots.replace_built(built)
            metrics.LEARNING_REFRESHES.inc()
            return True
        return False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="learning-refresh", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self.refresh()
            except redis.RedisError as exc:
                log.warning("learned rates not refreshed: %s", exc)
            except Exception:  # a bad count must not kill the refresher; the last rates keep serving
                log.exception("learned rates refresh failed")
