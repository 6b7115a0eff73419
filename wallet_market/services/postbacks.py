"""Partner postbacks (``POST /partner/v1/postbacks``): applied, approved, rejected, disbursed, reversed.

A postback is authenticated by the partner's HMAC (``X-Partner-Id``,
``X-Timestamp``, ``X-Signature`` over ``timestamp + "." + body``) within the
replay window, and is idempotent on the partner's ``event_id`` (guard 9). It
carries the impression token of the layout that led to it, which attributes it
to a product, slot, risk tier and rule-set version; only the product's owner may
report on it. A reversal names the event it undoes (``reverses``) and takes back
exactly what that event added, once — even when it arrives first.

The in-house lender reports the same way, as partner ``in_house``, with the
secret stored for ``in_house`` (``wallet-market postback-secret in_house``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from .. import metrics
from ..domain.funnel import DISBURSED, REVERSED, LedgerEvent
from ..domain import signing
from ..store.ledger import CatalogueVersions, Ledger
from .access import RateLimited, Unauthorized
from .errors import Conflict, Invalid
from .tokens import Impression, ImpressionTokens, InvalidToken

# A conversion may follow its impression by weeks; the token's signature still proves the attribution.
ATTRIBUTION_WINDOW_SECONDS = 90 * 86_400
CLOCK_SKEW_SECONDS = 300


@dataclass(frozen=True, slots=True)
class PostbackAnswer:
    status: str  # "accepted" | "duplicate"
    event_id: str

    @property
    def http_status(self) -> int:
        return 202 if self.status == "accepted" else 200

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "event_id": self.event_id}


class PostbackService:
    def __init__(
        self,
        secret_of: Callable[[str], str | None],
        ledger: Ledger,
        impression_tokens: ImpressionTokens,
        versions: CatalogueVersions,
        replay_window_seconds: int,
        clock: Callable[[], float] = time.time,
        rate_limit: Callable[[str], None] | None = None,
    ):
        self.secret_of = secret_of
        # Counts a signed call of a partner; raises RateLimited past the partner's allowance.
        self.rate_limit = rate_limit
        self.ledger = ledger
        self.tokens = impression_tokens
        self.versions = versions
        self.replay_window_seconds = replay_window_seconds
        self.clock = clock

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> str:
        """The posting partner's id, once its signature and timestamp check out; 401 otherwise."""
        try:
            partner_id, timestamp, sig = signing.read_headers(headers)
        except signing.SignatureError as exc:
            self._refused(exc.reason)
            raise Unauthorized(
                "postbacks must be signed",
                {h: ["required"] for h in (signing.PARTNER_HEADER, signing.TIMESTAMP_HEADER, signing.SIGNATURE_HEADER)},
            ) from None
        secret = self.secret_of(partner_id)
        if secret is None:
            self._refused("unknown_partner")
            raise Unauthorized("unknown partner", {signing.PARTNER_HEADER: ["unknown partner"]})
        try:
            signing.verify(secret, timestamp, sig, body, self.replay_window_seconds, now=self.clock())
        except signing.SignatureError as exc:
            self._refused(exc.reason)
            field = signing.TIMESTAMP_HEADER if exc.reason in ("stale_timestamp", "bad_timestamp") else signing.SIGNATURE_HEADER
            message = {
                "stale_timestamp": f"the timestamp is outside the {self.replay_window_seconds} s replay window",
                "bad_timestamp": "the timestamp is not epoch seconds",
            }.get(exc.reason, "the signature does not match")
            raise Unauthorized(message, {field: [exc.reason]}) from None
        if self.rate_limit is not None:
            try:
                self.rate_limit(partner_id)
            except RateLimited:
                self._refused("rate_limited")
                raise
        return partner_id

    @staticmethod
    def _refused(reason: str) -> None:
        metrics.EVENTS.labels("partner", "rejected", reason).inc()

    def accept(self, partner_id: str, data: Mapping[str, Any]) -> PostbackAnswer:
        """Record a validated postback once (see :class:`PostbackSchema` for the shape)."""
        now = self.clock()
        event_id = data["event_id"]
        kind = data["type"]
        occurred_at = data.get("occurred_at")
        occurred_at = now if occurred_at is None else occurred_at
        if occurred_at > now + CLOCK_SKEW_SECONDS:
            raise Invalid("occurred_at is in the future", {"occurred_at": ["must not be in the future"]})
        reverses = data.get("reverses") or ""
        if kind == REVERSED:
            if not reverses:
                raise Invalid("a reversal names the event it undoes", {"reverses": ["required for a reversal"]})
            if reverses == event_id:
                raise Invalid("an event cannot reverse itself", {"reverses": ["must name another event"]})
        elif reverses:
            raise Invalid("only a reversal names an event it undoes", {"reverses": ["only for type reversed"]})
        amount = data.get("amount")
        if kind == DISBURSED and not amount:
            raise Invalid("a disbursal carries the amount lent", {"amount": ["required: the amount disbursed, in fen"]})

        token = data.get("impression_token")
        impression = None
        if token:
            impression = self._impression(token, partner_id, now)
        elif kind != REVERSED:
            raise Invalid("the postback must carry its impression token", {"impression_token": ["required"]})
        occurred = int(occurred_at if impression is None else max(occurred_at, impression.issued_at))
        event = LedgerEvent(
            type=kind,
            occurred_at=occurred,
            source=partner_id,
            event_id=event_id,
            amount_fen=int(amount or 0),
            reverses=reverses,
        )
        if impression is not None:
            event = replace(
                event,
                **impression.ledger_fields(),
            )
        outcome = self.ledger.append_postback(event)
        if outcome == "already_reversed":
            self._refused("already_reversed")
            raise Conflict(f"event {reverses!r} was already reversed by another event", {"reverses": ["already reversed"]})
        if outcome == "reverses_a_reversal":
            self._refused("reverses_a_reversal")
            raise Invalid(f"event {reverses!r} is itself a reversal", {"reverses": ["a reversal cannot be reversed"]})
        if outcome == "reversed_before_arrival":
            self._refused("reversed_before_arrival")
            raise Conflict(
                f"event {event_id!r} was named as reversed by another reversal", {"event_id": ["already reversed"]}
            )
        metrics.EVENTS.labels("partner", outcome, "").inc()
        return PostbackAnswer(outcome, event_id)

    def _impression(self, token: str, partner_id: str, now: float) -> Impression:
        try:
            # The token's own expiry is for the app's events; a conversion may come weeks later.
            impression = self.tokens.verify(token, now=now - ATTRIBUTION_WINDOW_SECONDS)
        except InvalidToken as exc:
            self._refused(f"token_{exc.reason}")
            raise Invalid(f"impression token rejected: {exc.reason}", {"impression_token": [exc.reason]}) from None
        catalogue = self.versions.get(impression.ruleset_version)
        product = catalogue.products.get(impression.product_id) if catalogue is not None else None
        if product is None or product.owner != partner_id:
            self._refused("not_owner")
            raise Invalid(
                f"the impression is of a product {partner_id!r} does not own",
                {"impression_token": [f"product {impression.product_id!r} is not {partner_id!r}'s"]},
            )
        return impression

