"""Every Redis key and channel of the service, built in one place.

All keys live under one prefix. Keys used together in one multi-key command,
transaction or Lua script share a hash tag (the part in braces), so every such
operation runs unchanged on Redis Cluster:

- ``{catalog}``: the draft, the published rule-set versions, the audit log and
  partner secrets — publishing is one transaction over them.
- ``{auth}``: API key records, the ids of revoked keys, when each key was last
  used and the per-minute request counters — checking a key and counting its
  request is one script; deleting a key and recording its id, one transaction.
- ``{u:<user_id>}``: everything about one user — profile, frequency caps,
  suppression, pre-screen answers — read by a layout in one pipeline.
- ``{p:<partner_id>}``: a partner's circuit breaker.
- ``{partners}``: daily lead counters and the set of partners at their cap, updated together.
- ``{ledger}``: the event stream, idempotency marks, postback records with
  their per-partner, per-day index, and revenue counters that ingestion and
  the worker update together.
- ``{x:<experiment_id>}``: one experiment's per-unit outcome counters and the
  marks that apply each event to them once.
"""
from __future__ import annotations

from dataclasses import dataclass

ENTITY_KINDS = ("partners", "products", "pages", "rules")


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "wm"

    # -- catalogue -------------------------------------------------------
    def draft(self, kind: str) -> str:
        """Hash of draft entities of ``kind`` (partners, products, pages, rules): id → JSON."""
        assert kind in ENTITY_KINDS, kind
        return f"{self.prefix}:{{catalog}}:draft:{kind}"

    def draft_revision(self) -> str:
        """Counter bumped by every draft write (publish records which draft it froze)."""
        return f"{self.prefix}:{{catalog}}:draft:revision"

    def ruleset(self, version: int) -> str:
        """Immutable published rule set ``version`` (JSON)."""
        return f"{self.prefix}:{{catalog}}:ruleset:{int(version)}"

    def ruleset_current(self) -> str:
        """The version number being served."""
        return f"{self.prefix}:{{catalog}}:ruleset:current"

    def ruleset_counter(self) -> str:
        """Last version number handed out."""
        return f"{self.prefix}:{{catalog}}:ruleset:counter"

    def ruleset_history(self) -> str:
        """List of publish/rollback records (JSON), newest last."""
        return f"{self.prefix}:{{catalog}}:ruleset:history"

    def ruleset_candidates(self) -> str:
        """List of candidate records (JSON), newest last: versions frozen from the draft but never published."""
        return f"{self.prefix}:{{catalog}}:ruleset:candidates"

    def experiments(self) -> str:
        """Hash experiment_id → JSON: every experiment, running or not."""
        return f"{self.prefix}:{{catalog}}:experiments"

    def experiments_channel(self) -> str:
        """Pub/sub channel announcing that an experiment was created, stopped or shipped."""
        return f"{self.prefix}:catalog:experiments"

    def audit_log(self) -> str:
        """Stream of catalogue changes: who changed what, before and after."""
        return f"{self.prefix}:{{catalog}}:audit"

    def partner_secrets(self) -> str:
        """Hash partner_id → signing secret (never part of a rule set, never returned)."""
        return f"{self.prefix}:{{catalog}}:partner_secrets"

    def published_channel(self) -> str:
        """Pub/sub channel announcing a newly served rule-set version."""
        return f"{self.prefix}:catalog:published"

    # -- access ----------------------------------------------------------
    def api_keys(self) -> str:
        """Hash sha256(api key) → JSON {role, name, created_at, key_id}."""
        return f"{self.prefix}:{{auth}}:api_keys"

    def api_keys_last_used(self) -> str:
        """Hash sha256(api key) → epoch second of its first request in the latest minute it was used."""
        return f"{self.prefix}:{{auth}}:api_keys_last_used"

    def rate_limit(self, key_id: str, window: int) -> str:
        """Request counter of one (known) API key in one fixed window, beside the key records."""
        return f"{self.prefix}:{{auth}}:rl:{key_id}:{int(window)}"

    def api_keys_revoked(self) -> str:
        """Set of the ids of every revoked key: a tag stays valid after its key is deleted, so this is kept."""
        return f"{self.prefix}:{{auth}}:revoked_key_ids"

    def api_keys_revoked_channel(self) -> str:
        """Pub/sub channel naming each revoked key id, so every process drops it from its cache."""
        return f"{self.prefix}:{{auth}}:revoked"

    # -- users -----------------------------------------------------------
    def profile(self, user_id: str) -> str:
        return f"{self.prefix}:{{u:{user_id}}}:profile"

    def impressions_today(self, user_id: str, day: str) -> str:
        """Hash product_id → impressions served to the user on ``day`` (YYYYMMDD)."""
        return f"{self.prefix}:{{u:{user_id}}}:impressions:{day}"

    def suppressed_partners(self, user_id: str) -> str:
        """Hash partner_id → epoch second until which the partner is not shown to the user."""
        return f"{self.prefix}:{{u:{user_id}}}:suppressed"

    def prescreen(self, user_id: str, partner_id: str) -> str:
        """Cached pre-screen answer of a partner for a user ("new" / "existing"), with a TTL."""
        return f"{self.prefix}:{{u:{user_id}}}:prescreen:{partner_id}"

    def data_shares(self, user_id: str) -> str:
        """Stream of every send of the user's data to a partner."""
        return f"{self.prefix}:{{u:{user_id}}}:data_shares"

    def joint_login_token(self, token_id: str) -> str:
        """Mark of a joint-login token already exchanged (expires with the token)."""
        return f"{self.prefix}:{{jl:{token_id}}}:token"

    # -- partners --------------------------------------------------------
    def partner_breaker(self, partner_id: str) -> str:
        """Circuit breaker state of a partner, shared by every worker."""
        return f"{self.prefix}:{{p:{partner_id}}}:breaker"

    def partner_rate(self, partner_id: str, window: int) -> str:
        """Counter of a partner's signed calls (postbacks, joint-login exchanges) in one fixed minute."""
        return f"{self.prefix}:{{p:{partner_id}}}:rate:{int(window)}"

    def leads_at_cap(self, day: str) -> str:
        """Set of partners whose lead cap is reached (or paced out) on ``day``."""
        return f"{self.prefix}:{{partners}}:at_cap:{day}"

    # -- ledger ----------------------------------------------------------
    def event_stream(self) -> str:
        """Stream of every accepted funnel event (impressions, clicks, postbacks)."""
        return f"{self.prefix}:{{ledger}}:events"

    def event_seen(self, event_key: str) -> str:
        """Idempotency mark of one accepted event."""
        return f"{self.prefix}:{{ledger}}:seen:{event_key}"

    def postback_record(self, partner_id: str, event_id: str) -> str:
        """A partner postback as applied (for reversals and reconciliation)."""
        return f"{self.prefix}:{{ledger}}:postback:{partner_id}:{event_id}"

    def postbacks_of_day(self, partner_id: str, day: str) -> str:
        """Sorted set of a partner's accepted postbacks that occurred on ``day``: event id, scored by when.

        Written with the postback's record; reconciliation reads a partner's day from it.
        """
        return f"{self.prefix}:{{ledger}}:postbacks:{partner_id}:{day}"

    def postback_records_pattern(self) -> str:
        """SCAN pattern of every postback record (it does not match the per-day index)."""
        return f"{self.prefix}:{{ledger}}:postback:*"

    def postback_index_complete(self) -> str:
        """Set once every postback record written before the per-day index existed has been added to it."""
        return f"{self.prefix}:{{ledger}}:postback_index:complete"

    def counters(self, day: str) -> str:
        """Hash of funnel and revenue counters of ``day``: "<dimension values>|<measure>" → integer."""
        return f"{self.prefix}:{{ledger}}:counters:{day}"

    def learned_rates(self, day: str) -> str:
        """Hash of funnel counts observed on ``day`` per product and risk tier, read (decayed) by the learning refresh."""
        return f"{self.prefix}:{{ledger}}:learned:{day}"

    def decisions(self) -> str:
        """Stream of decisions with propensities, for offline policy evaluation."""
        return f"{self.prefix}:{{ledger}}:decisions"

    # -- funnel tracking -------------------------------------------------
    def user_events_applied(self, user_id: str, day: str) -> str:
        """Set of event-stream entry ids already applied to the user's caps and suppression on ``day``."""
        return f"{self.prefix}:{{u:{user_id}}}:applied:{day}"

    def leads_today(self, day: str) -> str:
        """Hash partner_id → leads counted toward its daily lead cap on ``day`` (beside ``leads_at_cap``)."""
        return f"{self.prefix}:{{partners}}:leads:{day}"

    def lead_marks(self, day: str) -> str:
        """Hash click (event key) → 1 counted as a lead / 0 refused on ``day``: a retried click keeps its answer."""
        return f"{self.prefix}:{{partners}}:lead_marks:{day}"

    def dead_letters(self) -> str:
        """Stream of event-stream entries the worker could not apply, with the reason, kept for inspection and replay."""
        return f"{self.prefix}:{{ledger}}:dead_letters"

    def apply_failures(self) -> str:
        """Hash event-stream entry id → failed attempts to apply it (cleared when it is applied or set aside)."""
        return f"{self.prefix}:{{ledger}}:apply_failures"

    # -- experiments -----------------------------------------------------
    def experiment_units(self, experiment_id: str, arm: str) -> str:
        """Hash ``"<unit pseudonym>|<measure>" → n``: the outcomes of every unit of one arm."""
        return f"{self.prefix}:{{x:{experiment_id}}}:units:{arm}"

    def experiment_applied(self, experiment_id: str, day: str) -> str:
        """Set of event-stream entry ids already added to the experiment's counters on ``day``."""
        return f"{self.prefix}:{{x:{experiment_id}}}:applied:{day}"

    def experiment_postback(self, experiment_id: str, partner_id: str, event_id: str) -> str:
        """What one partner postback added to the experiment's counters (for its reversal)."""
        return f"{self.prefix}:{{x:{experiment_id}}}:postback:{partner_id}:{event_id}"
