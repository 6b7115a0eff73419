"""The layout use case: which product fills each slot of a page, for this caller.

One Redis round trip at most: the key check (unless cached), the rate counter
and everything about the user are read on one pipeline; catalogue and rules come
from the in-process snapshot. If Redis is unreachable the layout is still served
from the snapshot, marked degraded, treating the user with the safest defaults
(no personalisation, no consent to share).
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import redis

from ..domain.catalogue import Catalogue
from ..domain.funnel import day_of
from ..domain.placement import (
    Decision,
    PlacementIndex,
    PlacementPolicy,
    RequestContext,
    UnknownPage,
    UserState,
    place,
)
from ..domain.users import UserProfile
from ..store.connection import RedisClient
from ..store.keys import Keys
from ..store.layout_reads import UserFacts, read_layout_facts
from ..store.snapshot import SnapshotHolder
from .access import Access, Principal
from .errors import NotFound, Unavailable
from .pseudonyms import Pseudonyms
from .tokens import ImpressionTokens

if TYPE_CHECKING:
    from .experiments import Assignment, ExperimentServing

APP_ROLES = ("app",)


@dataclass(frozen=True)
class Serving:
    """What a serving process builds once per published rule set."""

    version: int
    catalogue: Catalogue
    index: PlacementIndex
    prescreen_partners: tuple[str, ...]
    cards: Mapping[str, dict[str, Any]]


CatalogueHook = Callable[[Catalogue], Catalogue]


def build_serving(record: Mapping[str, Any], policy: PlacementPolicy, hooks: Sequence[CatalogueHook] = ()) -> Serving:
    """Build the serving snapshot from a published rule-set record.

    ``hooks`` may adjust the catalogue first (learned funnel rates replace the
    priors); they must keep it consistent and are applied in order.
    """
    catalogue = Catalogue.from_dict(record["catalogue"], version=int(record["version"]))
    for hook in hooks:
        catalogue = hook(catalogue)
    return Serving(
        version=catalogue.version,
        catalogue=catalogue,
        index=PlacementIndex.build(catalogue, policy),
        prescreen_partners=tuple(sorted(p.partner_id for p in catalogue.partners.values() if p.prescreen_url)),
        cards={pid: product.card() for pid, product in catalogue.products.items()},
    )


@dataclass(frozen=True, slots=True)
class LayoutRequest:
    api_key: str
    user_token: str | None
    page: str
    device_model: str | None = None
    app_version: str | None = None
    region: str | None = None
    device_id: str | None = None  # a visitor's device (X-Device-Id): the experiments' unit when nobody is logged in


@dataclass
class LayoutResult:
    body: dict[str, Any]
    decision: Decision
    principal: Principal
    user_id: str | None
    profile: UserProfile | None
    state: UserState
    serving: Serving
    degraded: bool
    context: RequestContext | None = None
    device_id: str | None = None
    assignment: "Assignment | None" = None  # the experiment and arm, when the unit takes part in one
    unit: str | None = None  # the unit's pseudonym when it takes part in an experiment


class LayoutService:
    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        snapshots: SnapshotHolder,
        access: Access,
        impression_tokens: ImpressionTokens,
        policy: PlacementPolicy,
        action_url: Callable[[str, str | None, Serving], str] | None = None,
        experiments: "ExperimentServing | None" = None,
        pseudonyms: Pseudonyms | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ):
        self.client = client
        self.keys = keys
        self.snapshots = snapshots
        self.access = access
        self.impression_tokens = impression_tokens
        self.policy = policy
        self.action_url = action_url
        self.experiments = experiments
        self.pseudonyms = pseudonyms
        self.clock = clock
        self.rng = rng  # exploration's draws (None: the module's generator)
        # Called after a layout is decided (decision log, background pre-screens); must not raise.
        self.on_decision: list[Callable[[LayoutResult], None]] = []
        # May refine the user's state before placing; must not wait on anything outside the process.
        self.before_place: list[Callable[[UserProfile | None, UserState, Serving], UserState]] = []

    def serving(self) -> Serving:
        snapshot = self.snapshots.current
        if snapshot is None:
            self.snapshots.refresh()
            snapshot = self.snapshots.current
        if snapshot is None:
            raise Unavailable("no rule set has been published yet")
        return snapshot.built

    def layout(self, request: LayoutRequest) -> LayoutResult:
        """Authenticate the app, read the user's facts in one pipeline, place, sign impressions."""
        serving = self.serving()
        if request.page not in serving.catalogue.pages:
            raise NotFound(f"page {request.page!r} does not exist", {"page": ["unknown page"]})
        user_id = self.access.user_id(request.user_token)
        timestamp = self.clock()
        now = datetime.fromtimestamp(timestamp, tz=timezone.utc)
        day = day_of(timestamp)
        assignment = None
        experiments = self.experiments
        if experiments is not None and experiments.running:
            unit_key = user_id or (f"device:{request.device_id}" if request.device_id else None)
            if unit_key is not None:
                assignment = experiments.assign(request.page, unit_key, now)
                if assignment is not None and assignment.serving is not None:
                    serving = assignment.serving  # the treatment's rules

        digest, cached = self.access.key_reads(request.api_key)
        try:
            facts = read_layout_facts(
                self.client,
                self.keys,
                api_key_hash=digest,
                read_key_record=cached is None,
                user_id=user_id,
                day=day,
                prescreen_partners=serving.prescreen_partners,
                now=now.timestamp(),
            )
        except redis.RedisError:
            facts = None
        degraded = facts is None
        if facts is None:
            principal = self.access.degraded(request.api_key, APP_ROLES, offline_roles=APP_ROLES)
            profile, state = self._degraded_user(user_id)
        else:
            principal = self.access.finish(digest, cached, facts.key, APP_ROLES)
            profile, state = self._user(user_id, facts.user)

        for refine in self.before_place:
            state = refine(profile, state, serving)
        context = RequestContext(
            page_id=request.page,
            now=now,
            user=profile,
            device_model=request.device_model,
            app_version=request.app_version,
            region=request.region,
            new_user=False,
            experiment_arm=assignment.arm if assignment is not None else None,
        )
        try:
            decision = place(serving.index, context, state, self.policy, rng=self.rng)
        except UnknownPage:
            raise NotFound(f"page {request.page!r} does not exist", {"page": ["unknown page"]}) from None
        unit = None
        experiment = None
        if assignment is not None and self.pseudonyms is not None:
            unit = self.pseudonyms.of(user_id, request.device_id)
            experiment = (assignment.experiment.experiment_id, assignment.arm, unit)
        body = self.render(decision, serving, user_id, profile, int(now.timestamp()), degraded, experiment)
        result = LayoutResult(
            body=body,
            decision=decision,
            principal=principal,
            user_id=user_id,
            profile=profile,
            state=state,
            serving=serving,
            degraded=degraded,
            context=context,
            device_id=request.device_id,
            assignment=assignment,
            unit=unit,
        )
        for hook in self.on_decision:
            hook(result)
        return result

    def render(
        self,
        decision: Decision,
        serving: Serving,
        user_id: str | None,
        profile: UserProfile | None,
        issued_at: int,
        degraded: bool,
        experiment: tuple[str, str, str | None] | None = None,
    ) -> dict[str, Any]:
        """The layout body of docs/api.md, each slot with its signed impression token.

        ``experiment`` (id, arm, unit pseudonym) goes into every token of a
        decision taking part in one, so its events count toward its results.
        """
        decision_id = os.urandom(9).hex()
        risk_tier = profile.risk_tier if profile is not None else None
        tokens = self.impression_tokens.sign_decision(
            decision_id,
            decision.page_id,
            decision.ruleset_version,
            user_id,
            risk_tier,
            issued_at,
            [(s.slot_id, s.position, s.product_id, s.propensity_bps) for s in decision.slots],
            experiment,
        )
        slots = []
        for slot, token in zip(decision.slots, tokens):
            card = serving.cards[slot.product_id]
            if self.action_url is not None:
                action_url = self.action_url(slot.product_id, user_id, serving)
                # The snapshot's card serves every layout: copy it only to give this user a link of their own.
                if action_url != card["action_url"]:
                    card = {**card, "action_url": action_url}
            slots.append({"slot": slot.slot_id, "position": slot.position, "product": card, "impression_token": token})
        return {
            "page": decision.page_id,
            "decision_id": decision_id,
            "ruleset_version": decision.ruleset_version,
            # A visitor's page is ranked for everyone alike: nothing about them personalised it.
            "personalized": decision.personalized and profile is not None,
            "degraded": degraded,
            "slots": slots,
        }

    @staticmethod
    def _user(user_id: str | None, facts: UserFacts | None) -> tuple[UserProfile | None, UserState]:
        if user_id is None or facts is None:
            return None, UserState()
        if facts.profile is None:
            # A logged-in user the internal systems have not described yet: the safest profile.
            profile = UserProfile(user_id=user_id, personalized=False)
        else:
            profile = UserProfile.from_dict(facts.profile, user_id=user_id)
        return profile, UserState(
            impressions_today=facts.impressions_today,
            suppressed_partners=facts.suppressed_partners,
            prescreen=facts.prescreen,
            partners_at_lead_cap=facts.partners_at_lead_cap,
        )

    @staticmethod
    def _degraded_user(user_id: str | None) -> tuple[UserProfile | None, UserState]:
        if user_id is None:
            return None, UserState()
        return UserProfile(user_id=user_id, personalized=False), UserState()
