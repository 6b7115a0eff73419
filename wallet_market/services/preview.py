"""Preview: the layout a described user would get, with the reason for every candidate."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any, Mapping

from ..domain.placement import PlacementPolicy, RequestContext, UnknownPage, UserState, place
from ..domain.users import UserProfile
from ..store.catalogue import CatalogueStore
from .errors import NotFound
from .layouts import LayoutService, Serving, build_serving


class Preview:
    """The layout a described user would get, explained; over the served or the draft catalogue."""

    def __init__(self, catalogue_store: CatalogueStore, layouts: LayoutService, policy: PlacementPolicy):
        self.catalogue_store = catalogue_store
        self.layouts = layouts
        self.policy = policy

    def preview(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Place ``data["page"]`` for ``data["user"]`` (profile plus context) and explain it.

        With ``draft`` the draft catalogue is used, so a change can be checked
        before it is published.
        """
        if data.get("draft"):
            _, draft = self.catalogue_store.read_draft()
            record = {"version": 0, "catalogue": {kind: list(v.values()) for kind, v in draft.items()}}
            serving = build_serving(record, self.policy)
        else:
            serving = self.layouts.serving()
        return explain_layout(serving, self.policy, data)


def explain_layout(serving: Serving, policy: PlacementPolicy, data: Mapping[str, Any]) -> dict[str, Any]:
    """The explained placement of ``data["page"]`` for ``data["user"]`` over ``serving``."""
    user = dict(data.get("user") or {})
    now = user.get("at") or datetime.now(timezone.utc)
    profile = None
    if user.get("logged_in", True):
        profile = UserProfile.from_dict(_jsonable(user), user_id=user.get("user_id") or "preview")
    context = RequestContext(
        page_id=data["page"],
        now=now,
        user=profile,
        device_model=user.get("device_model"),
        app_version=user.get("app_version"),
        region=user.get("region"),
        new_user=bool(user.get("new_user")),
        experiment_arm=user.get("experiment_arm"),
    )
    state = UserState(impressions_today=dict(user.get("impressions_today") or {}), prescreen=dict(user.get("prescreen") or {}))
    try:
        decision = place(serving.index, context, state, policy, explain=True)
    except UnknownPage:
        raise NotFound(f"page {data['page']!r} does not exist", {"page": ["unknown page"]}) from None
    return {
        "page": decision.page_id,
        "ruleset_version": decision.ruleset_version,
        "personalized": decision.personalized and profile is not None,
        "view": policy.view,
        "total_expected_micro_fen": decision.total_expected_micro_fen,
        "slots": [
            {**dataclasses.asdict(slot), "product": serving.cards[slot.product_id]} for slot in decision.slots
        ],
        "explanation": [dataclasses.asdict(e) for e in decision.explanations],
    }


def _jsonable(user: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(user)
    decision = dict(out.get("in_house_decision") or {})
    if decision.get("decided_at") is not None and not isinstance(decision["decided_at"], str):
        decision["decided_at"] = decision["decided_at"].isoformat()
    out["in_house_decision"] = decision
    return out


