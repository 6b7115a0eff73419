"""Pre-screen (撞库): is this user new to a partner? Asked in parallel, within the layout's budget.

The layout pipeline reads cached answers (``keys.prescreen(user, partner)``)
for every partner with a ``prescreen_url``; placement places such a partner
only when the answer is ``new``. Before placing, :meth:`PrescreenService.refine`
asks the partners whose answer is missing — only for a logged-in user who
consents to share with that partner and whose profile carries a phone hash —
on a thread pool, and waits for them at most ``prescreen_budget_ms``. Answers
arriving later are still cached for the next layout. A timeout, an error, a
garbage answer or an open breaker means "not placed now" (guard 8), never a
failed page.

Every send is recorded in the data-share log before it leaves, in the same
transaction that checks consent (see :mod:`wallet_market.store.data_shares`).
The request carries ``request_id``, ``product_id`` and ``phone_sha256`` only
; the phone number itself is never known to the service.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterable

import redis

from .. import metrics
from ..domain.catalogue import Catalogue, Partner, Product
from ..domain.guards import product_violations
from ..domain.placement import UserState
from ..domain.users import UserProfile
from ..partners.client import BREAKER_OPEN, NO_SECRET, PartnerClient
from ..partners.prescreen import EXISTING, FAILED, INELIGIBLE, NEW, PURPOSE, PRESCREEN_FIELDS, read_prescreen_answer
from ..store.connection import RedisClient
from ..store.data_shares import DataShareStore
from ..store.keys import Keys

if TYPE_CHECKING:
    from .layouts import Serving

log = logging.getLogger(__name__)

def could_be_shown(product: Product, profile: UserProfile, now: datetime, apr_cap_bps: int) -> bool:
    """Whether ``product`` passes the hard checks placement applies to this user.

    Only a product the user could actually be shown is worth sending their data
    for. Facts the profile does not state do not exclude (placement decides).
    """
    if product.status != "active" or not product.schedule.contains(now):
        return False
    if product_violations(product, apr_cap_bps):
        return False
    rules = product.eligibility
    if profile.personalized and profile.risk_tier is not None and profile.risk_tier not in rules.risk_tiers:
        return False
    age = profile.age
    if age is not None:
        if (rules.age_min is not None and age < rules.age_min) or (rules.age_max is not None and age > rules.age_max):
            return False
    if rules.regions and profile.region is not None and profile.region not in rules.regions:
        return False
    return True


def partners_to_ask(
    profile: UserProfile | None,
    state: UserState,
    catalogue: Catalogue,
    partner_ids: Iterable[str],
    now: datetime,
    apr_cap_bps: int = 2400,
) -> dict[str, str]:
    """Partner id → the product to pre-screen, for every partner whose answer this layout lacks.

    Nobody is asked about a visitor, a user without a phone hash, or a user who
    does not consent to share with that partner (guard 5); nor partners that
    could not be placed anyway (guard 3, suppression, lead cap, no product the
    user could be shown).
    """
    if profile is None or not profile.phone_sha256:
        return {}
    today = now.date()
    pending = []
    for partner_id in partner_ids:
        if partner_id in state.prescreen or not profile.consents_to_share_with(partner_id):
            continue
        if partner_id in state.suppressed_partners or partner_id in state.partners_at_lead_cap:
            continue
        partner = catalogue.partners.get(partner_id)
        if partner is not None and partner.prescreen_url and partner.may_be_placed(today):
            pending.append(partner_id)
    if not pending:  # the common case: every answer is cached
        return {}
    candidates: dict[str, list[str]] = {partner_id: [] for partner_id in pending}
    for product in catalogue.products.values():
        if product.partner_id in candidates and could_be_shown(product, profile, now, apr_cap_bps):
            candidates[product.partner_id].append(product.product_id)
    return {partner_id: min(ids) for partner_id, ids in candidates.items() if ids}


class PrescreenService:
    """Asks partners, caches their answers, records every send."""

    def __init__(
        self,
        client: PartnerClient,
        shares: DataShareStore,
        cache: RedisClient,
        keys: Keys,
        *,
        budget_ms: int,
        ttl_new_seconds: int,
        ttl_existing_seconds: int,
        failed_ttl_seconds: int = 30,
        apr_cap_bps: int = 2400,
        workers: int = 16,
        max_pending: int = 512,
    ):
        self.client = client
        self.shares = shares
        self.cache = cache
        self.keys = keys
        self.budget_seconds = budget_ms / 1000
        self.ttl_seconds = {
            NEW: ttl_new_seconds,
            INELIGIBLE: ttl_new_seconds,
            EXISTING: ttl_existing_seconds,
            FAILED: min(failed_ttl_seconds, ttl_new_seconds),
        }
        self.apr_cap_bps = apr_cap_bps
        self.workers = workers
        self.max_pending = max_pending
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: dict[tuple[str, str], Future] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- the layout hook -------------------------------------------------------
    def refine(self, profile: UserProfile | None, state: UserState, serving: Serving) -> UserState:
        """``LayoutService.before_place`` hook: add the answers that arrive within the budget."""
        if profile is None or not serving.prescreen_partners:
            return state
        wanted = partners_to_ask(
            profile, state, serving.catalogue, serving.prescreen_partners, datetime.now(timezone.utc), self.apr_cap_bps
        )
        if not wanted:
            return state
        started = time.perf_counter()
        futures = {}
        for partner_id, product_id in wanted.items():
            future = self.submit(profile.user_id, serving.catalogue.partners[partner_id], product_id)
            if future is not None:
                futures[partner_id] = future
        if not futures:
            return state
        done, _ = wait(futures.values(), timeout=self.budget_seconds)
        metrics.PRESCREEN_WAIT.observe(time.perf_counter() - started)
        answers = {}
        for partner_id, future in futures.items():
            if future in done and future.exception() is None and future.result() is not None:
                answers[partner_id] = future.result()
        if not answers:
            return state
        return dataclasses.replace(state, prescreen={**state.prescreen, **answers})

    def submit(self, user_id: str, partner: Partner, product_id: str) -> Future | None:
        """Ask in the background; the same question already on its way is not asked twice.

        Returns ``None`` when too many pre-screens are pending (that partner is
        simply not placed for this layout).
        """
        key = (user_id, partner.partner_id)
        with self._lock:
            if self._closed:
                return None
            future = self._inflight.get(key)
            if future is not None:
                return future
            if len(self._inflight) >= self.max_pending:
                metrics.PARTNER_REQUESTS.labels(partner.partner_id, PURPOSE, "busy").inc()
                return None
            if self._pool is None:
                # Threads start on the first pre-screen: they fan one request out, they are not a job.
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="prescreen")
            future = self._pool.submit(self._ask_quietly, user_id, partner, product_id)
            self._inflight[key] = future
        future.add_done_callback(lambda f: self._forget(key, f))
        return future

    def _forget(self, key: tuple[str, str], future: Future) -> None:
        with self._lock:
            if self._inflight.get(key) is future:
                del self._inflight[key]

    def _ask_quietly(self, user_id: str, partner: Partner, product_id: str) -> str | None:
        try:
            return self.ask(user_id, partner, product_id)
        except Exception:  # a background pre-screen must never take a worker thread down
            log.exception("pre-screen of %s failed unexpectedly", partner.partner_id)
            return None

    # -- one pre-screen ----------------------------------------------------------
    def ask(self, user_id: str, partner: Partner, product_id: str) -> str | None:
        """Pre-screen ``user_id`` with ``partner`` now: record, send, cache the verdict, return it.

        Returns ``None`` when nothing was sent because the partner has no
        pre-screen service or the user does not (or no longer) consent or has no
        phone hash; ``failed`` when the partner cannot be asked (open breaker, no
        secret) or did not answer properly.
        """
        partner_id = partner.partner_id
        url = partner.prescreen_url
        if not url:
            return None
        refusal = self._refusal(partner_id)
        if refusal is not None:
            metrics.PARTNER_REQUESTS.labels(partner_id, PURPOSE, refusal).inc()
            return self._remember(user_id, partner_id, FAILED)
        request_id = uuid.uuid4().hex
        try:
            consented = self.shares.record_send(
                user_id,
                partner_id,
                PURPOSE,
                request_id=request_id,
                product_id=product_id,
                fields_for=lambda profile: PRESCREEN_FIELDS if profile.phone_sha256 else (),
            )
        except redis.RedisError:
            log.warning("pre-screen to %s not sent: the data-share log is unreachable", partner_id)
            return None
        if consented is None:
            return None
        metrics.DATA_SHARES.labels(partner_id, PURPOSE).inc()
        result = self.client.call(
            partner,
            PURPOSE,
            "POST",
            url,
            payload={
                "request_id": request_id,
                "product_id": product_id,
                "phone_sha256": consented.profile.phone_sha256,
            },
            read=read_prescreen_answer,
        )
        verdict = result.value.verdict if result.ok and result.value is not None else FAILED
        outcome = verdict if result.ok else f"{FAILED}:{result.outcome}"
        try:
            self.shares.mark_outcome(user_id, consented.share_id, outcome)
        except redis.RedisError:
            log.warning("outcome of data share %s not recorded: Redis unreachable", consented.share_id)
        return self._remember(user_id, partner_id, verdict)

    def _refusal(self, partner_id: str) -> str | None:
        if not self.client.secrets(partner_id):
            return NO_SECRET
        if self.client.breaker_open(partner_id):
            return BREAKER_OPEN
        return None

    def _remember(self, user_id: str, partner_id: str, verdict: str) -> str:
        metrics.PRESCREEN_ANSWERS.labels(partner_id, verdict).inc()
        try:
            self.cache.set(self.keys.prescreen(user_id, partner_id), verdict, ex=self.ttl_seconds[verdict])
        except redis.RedisError:
            log.warning("pre-screen answer of %s not cached: Redis unreachable", partner_id)
        return verdict

    def close(self) -> None:
        """Stop taking pre-screens, drop the queued ones, let those in flight finish (each within its deadline)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
