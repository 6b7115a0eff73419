"""The data-share log: every send of a user's data to a partner (DESIGN §6 guard 5, §7).

One Redis stream per user, ``keys.data_shares(user)``, under the user's hash
tag beside the profile. A send is recorded *before* it leaves, in the same
optimistic transaction that checks consent: ``WATCH`` the profile, check that
the user shares with that partner, ``XADD`` the record, ``EXEC``. A profile
update in between (a revoked consent) aborts the transaction and the check runs
again, so nothing is sent — or recorded — without the consent in force at that
instant. What came of the send is appended later as a second entry naming the
first (a stream entry cannot be changed).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import orjson
import redis

from ..domain.users import UserProfile
from .connection import RedisClient
from .keys import Keys
from .replies import stream_entries

log = logging.getLogger(__name__)

PURPOSES = ("prescreen", "joint_login")
SEND = "send"
OUTCOME = "outcome"
WATCH_ATTEMPTS = 5
READ_BATCH = 200


@dataclass(frozen=True, slots=True)
class ConsentedSend:
    """A send that may go ahead: its log entry id, the profile it relied on, the fields it carries."""

    share_id: str
    profile: UserProfile
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DataShare:
    """One recorded send of user data to a partner, with what came of it."""

    share_id: str
    user_id: str
    partner_id: str
    purpose: str
    fields: tuple[str, ...]
    at: str
    consent: str
    consents: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""
    product_id: str = ""
    outcome: str | None = None
    outcome_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "share_id": self.share_id,
            "user_id": self.user_id,
            "partner_id": self.partner_id,
            "purpose": self.purpose,
            "fields": list(self.fields),
            "at": self.at,
            "consent": self.consent,
            "consents": self.consents,
            "request_id": self.request_id,
            "product_id": self.product_id,
            "outcome": self.outcome,
            "outcome_at": self.outcome_at,
        }


def _iso(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DataShareStore:
    def __init__(self, client: RedisClient, keys: Keys, max_entries_per_user: int = 10_000):
        self.client = client
        self.keys = keys
        self.max_entries_per_user = max_entries_per_user

    def record_send(
        self,
        user_id: str,
        partner_id: str,
        purpose: str,
        *,
        request_id: str,
        product_id: str,
        fields_for: Callable[[UserProfile], Sequence[str]],
        now: float | None = None,
    ) -> ConsentedSend | None:
        """Record a send about to leave, if the user consents to share with ``partner_id`` now.

        ``fields_for`` names the fields of the user's data the send will carry,
        given the current profile (empty: nothing worth sending). Returns
        ``None`` — and records nothing — without a profile, without consent, or
        with nothing to send; the caller must then not send.
        """
        assert purpose in PURPOSES, purpose
        profile_key = self.keys.profile(user_id)
        with self.client.pipeline(transaction=True) as pipe:
            for _ in range(WATCH_ATTEMPTS):
                try:
                    pipe.watch(profile_key)
                    raw = pipe.get(profile_key)
                    if not raw:
                        return None
                    profile = UserProfile.from_dict(orjson.loads(raw), user_id=user_id)
                    if not profile.consents_to_share_with(partner_id):
                        return None
                    fields = tuple(fields_for(profile))
                    if not fields:
                        return None
                    at = time.time() if now is None else now
                    consents = profile.to_dict()["consents"]
                    pipe.multi()
                    pipe.xadd(
                        self.keys.data_shares(user_id),
                        {
                            "kind": SEND,
                            "partner_id": partner_id,
                            "purpose": purpose,
                            "fields": orjson.dumps(list(fields)),
                            "at": _iso(at),
                            "consent": f"share_with_partners:{partner_id}",
                            "consents": orjson.dumps(consents, option=orjson.OPT_SORT_KEYS),
                            "request_id": request_id,
                            "product_id": product_id,
                        },
                        maxlen=self.max_entries_per_user,
                        approximate=True,
                    )
                    (share_id,) = pipe.execute()
                    if isinstance(share_id, bytes):
                        share_id = share_id.decode()
                    return ConsentedSend(share_id, profile, fields)
                except redis.WatchError:
                    continue
        log.warning("data share to %s not recorded: the profile kept changing", partner_id)
        return None

    def mark_outcome(self, user_id: str, share_id: str, outcome: str, now: float | None = None) -> None:
        """Append what came of send ``share_id`` (the partner's answer, a timeout, …)."""
        at = _iso(time.time() if now is None else now)
        self.client.xadd(
            self.keys.data_shares(user_id),
            {"kind": OUTCOME, "share_id": share_id, "outcome": outcome, "at": at},
            maxlen=self.max_entries_per_user,
            approximate=True,
        )

    def list(self, user_id: str, limit: int = 100) -> list[DataShare]:
        """The user's newest ``limit`` sends, newest first, each with its outcome when known."""
        stream = self.keys.data_shares(user_id)
        outcomes: dict[str, tuple[str, str]] = {}
        shares: list[DataShare] = []
        upper = "+"
        while len(shares) < limit:
            entries = stream_entries(self.client.xrevrange(stream, max=upper, min="-", count=READ_BATCH))
            if not entries:
                break
            for entry, record in entries:
                # Reading newest first, a send's outcome (appended after it) is always met before the send.
                if record.get("kind") == OUTCOME:
                    outcomes.setdefault(record["share_id"], (record["outcome"], record["at"]))
                    continue
                outcome = outcomes.get(entry)
                shares.append(
                    DataShare(
                        share_id=entry,
                        user_id=user_id,
                        partner_id=record["partner_id"],
                        purpose=record["purpose"],
                        fields=tuple(orjson.loads(record["fields"])),
                        at=record["at"],
                        consent=record["consent"],
                        consents=orjson.loads(record.get("consents") or "{}"),
                        request_id=record.get("request_id", ""),
                        product_id=record.get("product_id", ""),
                        outcome=outcome[0] if outcome else None,
                        outcome_at=outcome[1] if outcome else None,
                    )
                )
                if len(shares) >= limit:
                    break
            if len(entries) < READ_BATCH:
                break
            upper = "(" + entries[-1][0]
        return shares
