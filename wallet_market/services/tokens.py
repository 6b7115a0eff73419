"""Signed tokens: user tokens (who is logged in) and impression tokens (what was shown).

Both are HMAC-signed with the configured secret (itsdangerous ``Signer`` with
SHA-256) over a compact base64url JSON payload that carries its own expiry, so
each token may have its own lifetime.
"""
from __future__ import annotations

import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from itsdangerous import Signer

from ..domain.ids import USER_ID_RULE, is_user_id

if TYPE_CHECKING:
    from _hashlib import HASH


class InvalidToken(ValueError):
    """A token is malformed, forged or expired; ``reason`` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# base64.urlsafe_b64encode and urlsafe_b64decode without their Python layers:
# every layout checks a user token and signs one impression token per slot.
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _b64(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def _unb64(data: bytes) -> bytes:
    return binascii.a2b_base64((data + b"=" * (-len(data) % 4)).translate(_FROM_URLSAFE))


class TokenSigner:
    """Signs and verifies compact JSON payloads with an expiry (``exp``, epoch seconds)."""

    def __init__(self, secret: str, salt: str):
        self._signer = Signer(secret, salt=salt, digest_method=_sha256, key_derivation="hmac")
        # itsdangerous's Signer derives its key on every call; a layout signs one token per
        # slot, so derive once and copy a keyed HMAC. Tokens are exactly what ``Signer`` makes
        # (``Signer.unsign`` accepts them), only cheaper to make and check.
        self._mac = hmac.new(self._signer.derive_key(), digestmod=hashlib.sha256)
        self._sep = self._signer.sep

    def sign(self, payload: dict[str, Any], ttl_seconds: int, now: float | None = None) -> str:
        body = dict(payload)
        body["exp"] = int((now if now is not None else time.time()) + ttl_seconds)
        value = _b64(orjson.dumps(body))
        mac = self._mac.copy()
        mac.update(value)
        return (value + self._sep + _b64(mac.digest())).decode()

    def sign_json(self, payload_json: bytes) -> str:
        """Sign an already serialised JSON object (it must carry its own ``exp``)."""
        value = _b64(payload_json)
        mac = self._mac.copy()
        mac.update(value)
        return (value + self._sep + _b64(mac.digest())).decode()

    def verify(self, token: str, now: float | None = None) -> dict[str, Any]:
        """The payload of a genuine, unexpired token; :class:`InvalidToken` otherwise."""
        if not token or len(token) > 4096:
            raise InvalidToken("malformed")
        value, sep, signature = token.encode().rpartition(self._sep)
        if not sep:
            raise InvalidToken("bad_signature")
        mac = self._mac.copy()
        mac.update(value)
        try:
            genuine = hmac.compare_digest(mac.digest(), _unb64(signature))
        except (ValueError, TypeError):
            genuine = False
        if not genuine:
            raise InvalidToken("bad_signature")
        try:
            body = orjson.loads(_unb64(value))
        except (ValueError, orjson.JSONDecodeError):
            raise InvalidToken("malformed") from None
        if not isinstance(body, dict) or "exp" not in body:
            raise InvalidToken("malformed")
        if body["exp"] < (now if now is not None else time.time()):
            raise InvalidToken("expired")
        return body


def _sha256(data: bytes = b"") -> HASH:
    return hashlib.sha256(data)


_sha256.__name__ = "sha256"


# A logged-in user's app sends the same token with every layout for as long as it lives, so a
# process keeps the tokens it has verified (token -> user id and expiry) and checks only the expiry
# of one it has seen. Only genuine tokens are kept, keyed by their exact text; the memo is emptied
# when it reaches its bound.
USER_TOKEN_MEMO_SIZE = 10_000  # about 3 MiB when full, the tokens themselves included


class UserTokens:
    """User tokens: what the wallet account system issues for a logged-in user."""

    def __init__(self, secret: str, default_ttl_seconds: int):
        self._signer = TokenSigner(secret, salt="wallet-market.user")
        self.default_ttl_seconds = default_ttl_seconds
        self._verified: dict[str, tuple[str, float]] = {}

    def mint(self, user_id: str, ttl_seconds: int | None = None) -> str:
        """A token naming ``user_id``; ``ValueError`` when it is not a well-formed user id."""
        if not is_user_id(user_id):
            raise ValueError(f"user id {user_id!r} {USER_ID_RULE}")
        return self._signer.sign({"u": user_id}, ttl_seconds or self.default_ttl_seconds)

    def user_id(self, token: str, now: float | None = None) -> str:
        """The user a genuine, unexpired token names; :class:`InvalidToken` otherwise."""
        now = time.time() if now is None else now
        known = self._verified.get(token)
        if known is not None and known[1] >= now:
            return known[0]
        body = self._signer.verify(token, now=now)  # an expired token seen before is refused here
        user_id = body.get("u")
        if not isinstance(user_id, str) or not is_user_id(user_id):
            raise InvalidToken("malformed")
        if len(self._verified) >= USER_TOKEN_MEMO_SIZE:
            self._verified.clear()
        self._verified[token] = (user_id, body["exp"])
        return user_id


@dataclass(frozen=True, slots=True)
class Impression:
    """What an impression token names: the decision, slot, product, rule-set version and user."""

    decision_id: str
    page_id: str
    slot_id: str
    position: int
    product_id: str
    ruleset_version: int
    user_id: str | None
    risk_tier: str | None
    propensity_bps: int
    issued_at: int
    experiment_id: str | None = None  # the experiment the decision took part in, with the unit's arm
    arm: str | None = None
    unit: str | None = None  # the unit's pseudonym, for the experiment's per-unit results

    @classmethod
    def from_payload(cls, body: dict[str, Any]) -> "Impression":
        try:
            return cls(
                decision_id=str(body["d"]),
                page_id=str(body["pg"]),
                slot_id=str(body["s"]),
                position=int(body["i"]),
                product_id=str(body["p"]),
                ruleset_version=int(body["v"]),
                user_id=body.get("u"),
                risk_tier=body.get("t"),
                propensity_bps=int(body.get("pr", 10000)),
                issued_at=int(body.get("at", 0)),
                experiment_id=body.get("x"),
                arm=body.get("a"),
                unit=body.get("n"),
            )
        except (KeyError, TypeError, ValueError):
            raise InvalidToken("malformed") from None

    def ledger_fields(self) -> dict[str, Any]:
        """What a ledger event about this impression carries of it (the decision, slot, product, user, arm)."""
        return {
            "decision_id": self.decision_id,
            "page_id": self.page_id,
            "slot_id": self.slot_id,
            "position": self.position,
            "product_id": self.product_id,
            "ruleset_version": self.ruleset_version,
            "user_id": self.user_id,
            "risk_tier": self.risk_tier,
            "propensity_bps": self.propensity_bps,
            "experiment_id": self.experiment_id or "",
            "arm": self.arm or "",
            "unit": self.unit or "",
        }


class ImpressionTokens:
    def __init__(self, secret: str, ttl_seconds: int):
        self._signer = TokenSigner(secret, salt="wallet-market.impression")
        self.ttl_seconds = ttl_seconds

    def sign(self, impression: Impression) -> str:
        i = impression
        return self.sign_decision(
            i.decision_id, i.page_id, i.ruleset_version, i.user_id, i.risk_tier, i.issued_at,
            [(i.slot_id, i.position, i.product_id, i.propensity_bps)],
            experiment=(i.experiment_id, i.arm, i.unit) if i.experiment_id and i.arm else None,
        )[0]

    def sign_decision(
        self,
        decision_id: str,
        page_id: str,
        ruleset_version: int,
        user_id: str | None,
        risk_tier: str | None,
        issued_at: int,
        slots: list[tuple[str, int, str, int]],
        experiment: tuple[str, str, str | None] | None = None,
    ) -> list[str]:
        """One token per ``(slot_id, position, product_id, propensity_bps)`` of one decision.

        The same tokens :meth:`sign` makes, with the decision's common fields
        serialised once rather than once per slot. ``experiment`` is the
        experiment id, arm and unit pseudonym of a decision taking part in one.
        """
        header = {"d": decision_id, "pg": page_id, "v": ruleset_version, "u": user_id, "t": risk_tier, "at": issued_at,
                  "exp": issued_at + self.ttl_seconds}
        if experiment is not None:
            header["x"], header["a"], header["n"] = experiment
        common = orjson.dumps(header)[:-1]
        dumps = orjson.dumps
        return [
            self._signer.sign_json(
                b"%s,\"s\":%s,\"i\":%d,\"p\":%s,\"pr\":%d}" % (common, dumps(slot_id), position, dumps(product_id), propensity)
            )
            for slot_id, position, product_id, propensity in slots
        ]

    def verify(self, token: str, now: float | None = None) -> Impression:
        return Impression.from_payload(self._signer.verify(token, now=now))
