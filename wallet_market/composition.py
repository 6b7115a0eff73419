"""The composition root: every service of one process, built once from the settings.

The Flask app factory (:mod:`wallet_market.app`), every command of the CLI and
the ledger worker build their objects here and nowhere else. Each service is
handed the collaborators it needs, never this container. Every hook the layout
runs is wired in :func:`build_components`, in plain sight:

- pre-screens: layouts use cached answers only; the missing ones are asked in
  the background after a layout and when a profile is stored
  (:class:`~wallet_market.services.prescreen.PrescreenService`);
- the product's link: joint login for partner products
  (:class:`~wallet_market.services.joint_login.JointLogin`);
- the catalogue each snapshot serves: learned funnel rates
  (:class:`~wallet_market.services.learning.LearnedRates`);
- which rules serve the request: the experiment running on the page and the
  unit's arm (:class:`~wallet_market.services.experiments.ExperimentServing`,
  refreshed on the experiments channel the snapshot listener follows);
- after deciding: the decision log
  (:class:`~wallet_market.services.decision_log.DecisionLog`);
- lead caps are read on the layout's own pipeline and enforced when a click is
  counted (:class:`~wallet_market.store.caps.LeadCaps`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import redis

from . import metrics
from .domain.catalogue import Catalogue, Partner
from .domain.placement import PlacementPolicy
from .domain.users import UserProfile
from .partners.client import PartnerClient, PartnerSecrets
from .services.access import Access, KeyTags
from .services.catalogue_admin import CatalogueAdmin
from .services.analysis import AnalysisExporter
from .services.decision_log import DecisionLog
from .services.evaluation import Evaluation
from .services.experiments import ExperimentAdmin, ExperimentServing
from .services.errors import NotFound, ServiceError
from .services.events import EventIngestion
from .services.health import Health
from .services.joint_login import JointLogin, JointLoginTokens
from .services.layouts import CatalogueHook, LayoutService, build_serving
from .services.learning import LearnedRates, LearningRefresher, read_decayed_counts
from .services.ledger_worker import LedgerWorker
from .services.partner_limits import PartnerRateLimit
from .services.postbacks import PostbackService
from .services.prescreen import PrescreenService
from .services.preview import Preview
from .services.profiles import UserProfiles
from .services.pseudonyms import Pseudonyms
from .services.reconciliation import ReconciliationSources
from .services.revenue import Revenue
from .services.settlement import SettlementClient
from .services.tokens import ImpressionTokens, UserTokens
from .settings import Settings
from .store.access import ApiKeyStore
from .store.analysis import AnalysisFiles
from .store.breakers import redis_breaker_storage
from .store.caps import LeadCaps
from .store.catalogue import CatalogueStore
from .store.connection import EmbeddedRedis, RedisClient, connect, hot_path_client
from .store.data_shares import DataShareStore
from .store.experiments import ExperimentCounters, ExperimentStore
from .store.keys import Keys
from .store.rates import PartnerCallCounter
from .store.ledger import CatalogueVersions, Ledger
from .store.snapshot import SnapshotHolder
from .store.users import UserStore

log = logging.getLogger(__name__)


@dataclass
class Components:
    """Everything one process serves with."""

    settings: Settings
    redis: RedisClient
    keys: Keys
    # catalogue, keys and users
    catalogue_store: CatalogueStore
    api_keys: ApiKeyStore
    access: Access
    user_tokens: UserTokens
    impression_tokens: ImpressionTokens
    profiles: UserProfiles
    # serving
    policy: PlacementPolicy
    snapshots: SnapshotHolder
    layouts: LayoutService
    admin: CatalogueAdmin
    preview: Preview
    health: Health
    # funnel and ledger
    ledger: Ledger
    lead_caps: LeadCaps
    versions: CatalogueVersions
    events: EventIngestion
    postbacks: PostbackService
    revenue: Revenue
    learned_rates: LearnedRates
    learning: LearningRefresher
    decision_log: DecisionLog
    # evidence: experiments
    pseudonyms: Pseudonyms
    experiments: ExperimentAdmin
    experiment_serving: ExperimentServing
    # evidence: the analysis log and off-policy evaluation
    analysis_files: AnalysisFiles
    evaluation: Evaluation
    # partner gateway
    partner_client: PartnerClient
    data_shares: DataShareStore
    prescreen: PrescreenService
    joint_login: JointLogin
    settlement: SettlementClient
    reconciliation: ReconciliationSources
    embedded: EmbeddedRedis | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    _background: bool = False

    def start_background(self) -> None:
        """Start this process's refreshers: the snapshot subscriber, learned rates, the decision log."""
        if self._background:
            return
        self._background = True
        self.snapshots.start()
        self.learning.start()
        self.decision_log.start()

    def close(self) -> None:
        """Stop the background threads and close the clients (and an embedded Redis this process started)."""
        if self._background:
            self.learning.stop()
            self.decision_log.stop()
        for closer in reversed(self.closers):
            try:
                closer()
            except Exception:  # shutting down: keep closing the rest
                log.exception("error while closing")
        self.snapshots.stop()
        if self.embedded is not None:
            self.embedded.close()


def build_components(settings: Settings) -> Components:
    """Connect to Redis and wire every service of one process. Nothing starts running."""
    client, embedded = connect(settings.redis_url, settings.embedded_redis_path)
    hot_client = hot_path_client(settings.redis_url or (embedded.url if embedded else ""), client)
    keys = Keys(settings.key_prefix)
    policy = PlacementPolicy(
        view=settings.placement_view,
        apr_cap_bps=settings.apr_cap_bps,
        decline_cooldown_days=settings.decline_cooldown_days,
        exploration_bps=settings.exploration_bps,
        exploration_top_k=settings.exploration_top_k,
    )
    user_tokens = UserTokens(settings.secret_key, settings.user_token_ttl_seconds)
    impression_tokens = ImpressionTokens(settings.secret_key, settings.impression_token_ttl_seconds)
    catalogue_store = CatalogueStore(client, keys)
    key_tags = KeyTags(settings.secret_key)
    access = Access(
        ApiKeyStore(hot_client, keys),
        user_tokens,
        settings.rate_limit_per_minute,
        outage_grace_seconds=settings.api_key_outage_grace_seconds,
        key_tags=key_tags,
    )

    # The catalogue each serving snapshot is built from: learned funnel rates replace the priors.
    ledger = Ledger(client, keys)
    learned_rates = LearnedRates(settings.prior_strength)
    catalogue_hooks: list[CatalogueHook] = [learned_rates]
    snapshots = SnapshotHolder(
        client,
        keys,
        build=lambda record: build_serving(record, policy, catalogue_hooks),
        poll_seconds=settings.snapshot_poll_seconds,
    )
    snapshots.listeners.append(lambda snap: metrics.RULESET_VERSION.set(snap.version))
    # The process's one subscriber also tells the key cache which keys were revoked.
    snapshots.channels[keys.api_keys_revoked_channel()] = access.load_revoked

    # The partner gateway: one pooled, signed client with breakers shared through Redis.
    partner_client = PartnerClient(
        PartnerSecrets(catalogue_store.partner_secrets),
        redis_breaker_storage(client, keys),
        fail_max=settings.breaker_fail_max,
        reset_seconds=settings.breaker_reset_seconds,
    )
    data_shares = DataShareStore(client, keys)
    partner_rate = PartnerRateLimit(PartnerCallCounter(client, keys), settings.partner_rate_limit_per_minute)
    prescreen = PrescreenService(
        partner_client,
        data_shares,
        client,
        keys,
        ttl_new_seconds=settings.prescreen_ttl_new_seconds,
        ttl_existing_seconds=settings.prescreen_ttl_existing_seconds,
        apr_cap_bps=settings.apr_cap_bps,
    )
    joint_login = JointLogin(
        JointLoginTokens(settings.secret_key, settings.joint_login_ttl_seconds),
        client,
        keys,
        data_shares,
        catalogue_store.partner_secret,
        ref_secret=settings.secret_key,
        replay_window_seconds=settings.postback_replay_window_seconds,
        rate_limit=partner_rate.check,
    )
    # Experiments: the running ones and a snapshot of each treatment version, rebuilt on the experiments channel.
    pseudonyms = Pseudonyms(settings.secret_key)
    experiment_store = ExperimentStore(client, keys)
    experiment_serving = ExperimentServing(
        experiment_store, catalogue_store, build=lambda record: build_serving(record, policy, catalogue_hooks)
    )
    snapshots.channels[keys.experiments_channel()] = experiment_serving.refresh
    decision_log = DecisionLog(client, keys, pseudonyms, decline_cooldown_days=settings.decline_cooldown_days)

    # The layout and its hooks.
    layouts = LayoutService(
        hot_client,
        keys,
        snapshots,
        access,
        impression_tokens,
        policy,
        action_url=joint_login.action_url,
        experiments=experiment_serving,
        pseudonyms=pseudonyms,
    )
    layouts.on_decision.append(prescreen.after_layout)
    layouts.on_decision.append(decision_log.record)
    profiles = UserProfiles(UserStore(client, keys), data_shares)

    def prefetch_prescreens(profile: UserProfile) -> None:
        snapshot = snapshots.current
        if snapshot is not None:
            prescreen.prefetch(profile, snapshot.built)

    profiles.on_put.append(prefetch_prescreens)

    admin = CatalogueAdmin(catalogue_store, settings.apr_cap_bps)
    analysis_files = AnalysisFiles(settings.analysis_dir)
    learning = LearningRefresher(
        ledger,
        learned_rates,
        snapshots,
        interval_seconds=settings.learning_refresh_seconds,
        half_life_days=settings.learning_half_life_days,
    )
    learning.on_change.append(experiment_serving.rebuild)  # treatments learn like the published rules
    settlement = SettlementClient(partner_client, _partner_lookup(layouts, admin))
    versions = CatalogueVersions(catalogue_store)
    lead_caps = LeadCaps(client, keys)

    def current_catalogue() -> Catalogue | None:
        snapshot = snapshots.current
        return snapshot.built.catalogue if snapshot is not None else None

    components = Components(
        settings=settings,
        redis=client,
        keys=keys,
        catalogue_store=catalogue_store,
        api_keys=ApiKeyStore(client, keys, sign=key_tags.sign),
        access=access,
        user_tokens=user_tokens,
        impression_tokens=impression_tokens,
        profiles=profiles,
        policy=policy,
        snapshots=snapshots,
        layouts=layouts,
        admin=admin,
        preview=Preview(catalogue_store, layouts, policy),
        health=Health(client, snapshots),
        ledger=ledger,
        lead_caps=lead_caps,
        versions=versions,
        events=EventIngestion(
            ledger, lead_caps, impression_tokens, versions, current_catalogue, settings.max_event_batch
        ),
        postbacks=PostbackService(
            catalogue_store.partner_secret,
            ledger,
            impression_tokens,
            versions,
            settings.postback_replay_window_seconds,
            rate_limit=partner_rate.check,
        ),
        revenue=Revenue(ledger),
        learned_rates=learned_rates,
        learning=learning,
        decision_log=decision_log,
        pseudonyms=pseudonyms,
        experiments=ExperimentAdmin(
            experiment_store, catalogue_store, ExperimentCounters(client, keys), settings.apr_cap_bps
        ),
        experiment_serving=experiment_serving,
        analysis_files=analysis_files,
        evaluation=Evaluation(
            analysis_files, admin, policy, build=lambda record: build_serving(record, policy, catalogue_hooks)
        ),
        partner_client=partner_client,
        data_shares=data_shares,
        prescreen=prescreen,
        joint_login=joint_login,
        settlement=settlement,
        reconciliation=ReconciliationSources(client, keys, catalogue_store, layouts, settlement),
        embedded=embedded,
    )
    components.closers.extend([partner_client.close, prescreen.close])
    try:
        # The first snapshot of this process is built with what has been learned so far.
        learned_rates.update(read_decayed_counts(ledger, settings.learning_half_life_days, time.time()))
    except redis.RedisError as exc:
        log.warning("learned rates not loaded at start-up: %s", exc)
    experiment_serving.refresh()
    access.load_revoked()  # before serving: a key revoked while this process was not listening is known
    return components


def build_ledger_worker(
    components: Components,
    *,
    consumer: str | None = None,
    batch_size: int = 500,
    block_ms: int = 1000,
    claim_idle_ms: int = 30_000,
) -> LedgerWorker:
    """The ledger consumer over this process's Redis; it also exports the analysis log to Parquet."""
    worker = LedgerWorker(
        components.redis,
        components.keys,
        consumer=consumer,
        suppression_cooldown_days=components.settings.suppression_cooldown_days,
        learning_half_life_days=components.settings.learning_half_life_days,
        batch_size=batch_size,
        block_ms=block_ms,
        claim_idle_ms=claim_idle_ms,
    )
    worker.exporter = AnalysisExporter(
        components.redis, components.keys, components.analysis_files, components.versions, consumer=worker.consumer
    )
    worker.export_seconds = components.settings.analysis_export_seconds
    return worker


def _partner_lookup(layouts: LayoutService, admin: CatalogueAdmin) -> Callable[[str], Partner | None]:
    """Find a partner in the served catalogue, else in the draft (a partner may be removed after its last day)."""

    def lookup(partner_id: str) -> Partner | None:
        try:
            served = layouts.serving().catalogue.partners.get(partner_id)
        except ServiceError:
            served = None
        if served is not None:
            return served
        try:
            return Partner.from_dict(admin.get("partners", partner_id))
        except NotFound:
            return None

    return lookup
